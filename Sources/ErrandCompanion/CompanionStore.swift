public import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

/// A host this companion is paired with.
public struct PairedHost: Sendable, Equatable {
    public let id: Int64
    /// Local name, unique on this companion ("studio").
    public let name: String
    /// Where to reach its relay.
    public let relayURL: String
    public let hostSigningKey: Ed25519.PublicKey
    public let pairedAt: Int64
    public let lastHeardAt: Int64?

    public var fingerprint: String { Fingerprint.of(hostSigningKey) }
    /// The host's mailbox.
    public var mailbox: MailboxID { MailboxID(owner: hostSigningKey) }
}

/// What a finished pairing saves, with the first session state.
public struct NewHost: Sendable {
    public let name: String
    public let relayURL: String
    public let hostSigningKey: Ed25519.PublicKey
    public let hostAgreementKey: X25519.PublicKey
    public let auditVerifierKey: String?
    public let transcriptHash: [UInt8]
    /// Token for posting to the host's mailbox.
    public let sendToken: SendToken
    /// This device's keys for this host (they own this device's mailbox).
    public let signing: Ed25519.SecretKey
    public let agreement: X25519.SecretKey
    public let pairedAt: Int64
}

/// Credentials and session for talking to one host.
public struct HostChannel: Sendable {
    public let host: PairedHost
    public let sendToken: SendToken
    public let signing: Ed25519.SecretKey
    public var session: SecureSession
}

/// The companion's SQLite state (`companion.sqlite`): its name, paired hosts, sessions,
/// received messages and the outbox.
public final class CompanionStore: Sendable {
    static let fileName = "companion.sqlite"
    let queue: DatabaseQueue

    public init(directory: StateDirectory) throws(PeerError) {
        queue = try StateDatabase.open(Self.fileName, in: directory, migrator: Self.migrator)
    }

    /// Whether `directory` holds a companion.
    public static func exists(in directory: StateDirectory) -> Bool { directory.contains(fileName) }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: companion settings, hosts, sessions, inbox, outbox") { db in
            try db.execute(sql: """
                CREATE TABLE companion_settings (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    device_name TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE host (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    relay_url TEXT NOT NULL,
                    host_signing_key BLOB NOT NULL UNIQUE,
                    host_agreement_key BLOB NOT NULL,
                    audit_verifier_key TEXT,
                    transcript_hash BLOB NOT NULL,
                    send_token BLOB NOT NULL,
                    signing_seed BLOB NOT NULL,
                    agreement_secret BLOB NOT NULL,
                    paired_at INTEGER NOT NULL,
                    last_heard_at INTEGER
                );
                CREATE TABLE session (
                    host_id INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,
                    ratchet BLOB NOT NULL
                );
                CREATE TABLE inbox (
                    envelope_id BLOB PRIMARY KEY,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    payload BLOB NOT NULL,
                    received_at INTEGER NOT NULL
                );
                CREATE TABLE outbox (
                    envelope_id BLOB PRIMARY KEY,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    envelope BLOB NOT NULL,
                    created_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2: task cache, replies") { db in
            try db.execute(sql: """
                CREATE TABLE task (
                    id TEXT PRIMARY KEY,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    request TEXT NOT NULL,
                    device TEXT,
                    position INTEGER,
                    status TEXT NOT NULL,
                    exit_code INTEGER,
                    output BLOB NOT NULL DEFAULT x'',
                    truncated INTEGER NOT NULL DEFAULT 0,
                    reason TEXT,
                    output_bytes INTEGER,
                    output_digest TEXT,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                CREATE TABLE reply (
                    request TEXT PRIMARY KEY,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    body TEXT NOT NULL,
                    complete INTEGER NOT NULL,
                    received_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3: audit records and checkpoints") { db in
            try db.execute(sql: """
                CREATE TABLE audit_record (
                    envelope_id BLOB NOT NULL,
                    event INTEGER NOT NULL,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    mailbox BLOB NOT NULL,
                    digest BLOB NOT NULL,
                    time INTEGER NOT NULL,
                    leaf_index INTEGER,
                    PRIMARY KEY (envelope_id, event)
                );
                CREATE TABLE audit_checkpoint (
                    host_id INTEGER PRIMARY KEY REFERENCES host(id) ON DELETE CASCADE,
                    note TEXT NOT NULL
                );
                """)
        }
        migrator.registerMigration("v4: approval requests") { db in
            try db.execute(sql: """
                CREATE TABLE approval (
                    id TEXT PRIMARY KEY,
                    host_id INTEGER NOT NULL REFERENCES host(id) ON DELETE CASCADE,
                    task TEXT NOT NULL,
                    tool TEXT NOT NULL,
                    summary TEXT NOT NULL,
                    input TEXT NOT NULL,
                    input_bytes INTEGER,
                    expires_at INTEGER NOT NULL,
                    status TEXT NOT NULL DEFAULT 'pending',
                    answered_by TEXT,
                    reason TEXT,
                    refusal TEXT,
                    received_at INTEGER NOT NULL
                );
                """)
        }
        return migrator
    }

    // MARK: Settings

    /// This device's name, set at its first pairing.
    public func deviceName() throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT device_name FROM companion_settings WHERE id = 1") }
    }

    public func setDeviceName(_ name: String) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO companion_settings (id, device_name, created_at) VALUES (1, ?, ?)
                ON CONFLICT (id) DO UPDATE SET device_name = excluded.device_name
                """, arguments: [name, Int64(Date().timeIntervalSince1970)])
        }
    }

    // MARK: Hosts

    static let hostColumns = "id, name, relay_url, host_signing_key, paired_at, last_heard_at"

    static func host(_ row: Row) throws -> PairedHost {
        PairedHost(id: row[0], name: row[1], relayURL: row[2], hostSigningKey: try Ed25519.PublicKey(bytes: [UInt8](row[3] as Data)),
                   pairedAt: row[4], lastHeardAt: row[5])
    }

    /// Paired hosts, by name.
    public func hosts() throws -> [PairedHost] {
        try queue.read { db in try Row.fetchAll(db, sql: "SELECT \(Self.hostColumns) FROM host ORDER BY name").map(Self.host) }
    }

    /// Saves a new pairing with its first session state. Pairing again with a host already paired
    /// (same host key) replaces the old pairing; a name taken by another host gets a number.
    public func addHost(_ new: NewHost, session: DoubleRatchet) throws -> PairedHost {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM host WHERE host_signing_key = ?", arguments: [Data(new.hostSigningKey.bytes)])
            let name = try DeviceName.unique(new.name) { candidate in
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM host WHERE name = ?)", arguments: [candidate]) == true
            }
            try db.execute(sql: """
                INSERT INTO host (name, relay_url, host_signing_key, host_agreement_key, audit_verifier_key, transcript_hash,
                                  send_token, signing_seed, agreement_secret, paired_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [name, new.relayURL, Data(new.hostSigningKey.bytes), Data(new.hostAgreementKey.bytes), new.auditVerifierKey,
                                 Data(new.transcriptHash), Data(), Data(), Data(), new.pairedAt])
            let id = db.lastInsertedRowID
            try new.sendToken.secret.withWipedData { token in
                try new.signing.seed.withWipedData { seed in
                    try new.agreement.secret.withWipedData { agreement in
                        try db.execute(sql: "UPDATE host SET send_token = ?, signing_seed = ?, agreement_secret = ? WHERE id = ?",
                                       arguments: [token, seed, agreement, id])
                    }
                }
            }
            try session.serialized.withWipedData { state in
                try db.execute(sql: "INSERT INTO session (host_id, ratchet) VALUES (?, ?)", arguments: [id, state])
            }
            return try Self.host(Row.fetchOne(db, sql: "SELECT \(Self.hostColumns) FROM host WHERE id = ?", arguments: [id])!)
        }
    }

    /// The host called `name`, or the only host when `name` is nil.
    /// - Throws: ``PeerError`` when there is no such host, or several and no name.
    public func host(named name: String?) throws -> PairedHost {
        let hosts = try hosts()
        if let name {
            guard let match = hosts.first(where: { $0.name == name }) else {
                throw PeerError("no paired host is called \(name)", hint: hosts.isEmpty ? "pair with 'errand pair' first" : "paired hosts: \(hosts.map(\.name).joined(separator: ", "))")
            }
            return match
        }
        guard let only = hosts.first else { throw PeerError("this device is not paired with any host", hint: "pair with 'errand pair' first") }
        guard hosts.count == 1 else {
            throw PeerError("this device is paired with several hosts", hint: "choose one with --host (\(hosts.map(\.name).joined(separator: ", ")))")
        }
        return only
    }

    /// Credentials and session for the host called `name` (see ``host(named:)``).
    public func channel(named name: String?) throws -> HostChannel {
        let host = try host(named: name)
        return try queue.read { db in try Self.channel(db, host) }
    }

    static func channel(_ db: Database, _ host: PairedHost) throws -> HostChannel {
        let rows = try Row.fetchCursor(db, sql: """
            SELECT h.send_token, h.signing_seed, h.transcript_hash, s.ratchet FROM host h JOIN session s ON s.host_id = h.id WHERE h.id = ?
            """, arguments: [host.id])
        guard let row = try rows.next() else { throw PeerError("the pairing with \(host.name) has no session", hint: "pair again with 'errand pair'") }
        return HostChannel(
            host: host, sendToken: try SendToken(secret: row.secret(at: 0)), signing: try Ed25519.SecretKey(seed: row.secret(at: 1)),
            session: SecureSession(ratchet: try DoubleRatchet(serialized: row.secret(at: 3)),
                                   associatedData: PairingSessionKeys.associatedData(transcriptHash: [UInt8](row[2] as Data))))
    }

    // MARK: Outbox

    /// Seals `payload` for `host` and queues the envelope, reading and saving the session in one
    /// write transaction so that two senders never seal with the same message key.
    public func sealAndEnqueue(_ payload: [UInt8], to host: PairedHost) throws -> Envelope {
        try queue.write { db in try Self.sealAndEnqueue(db, payload, to: host) }
    }

    static func sealAndEnqueue(_ db: Database, _ payload: [UInt8], to host: PairedHost) throws -> Envelope {
        var channel = try Self.channel(db, host)
        let envelope = try channel.session.seal(payload)
        try channel.session.ratchet.serialized.withWipedData { state in
            try db.execute(sql: "UPDATE session SET ratchet = ? WHERE host_id = ?", arguments: [state, host.id])
        }
        try db.execute(sql: "INSERT INTO outbox (envelope_id, host_id, envelope, created_at) VALUES (?, ?, ?, ?)",
                       arguments: [Data(envelope.id.bytes), host.id, Data(envelope.encoded), Int64(Date().timeIntervalSince1970)])
        return envelope
    }

    /// Envelopes not yet accepted by the relay, oldest first.
    public func pending(for host: Int64) throws -> [Envelope] {
        try queue.read { db in
            try Data.fetchAll(db, sql: "SELECT envelope FROM outbox WHERE host_id = ? ORDER BY rowid", arguments: [host]).map {
                try Envelope(parsing: [UInt8]($0))
            }
        }
    }

    /// Removes an envelope the relay accepted.
    public func sent(_ id: EnvelopeID) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM outbox WHERE envelope_id = ?", arguments: [Data(id.bytes)]) }
    }
}
