public import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

/// What `errand host init` recorded.
public struct HostSettings: Sendable, Equatable {
    /// The relay the host's mailbox lives on.
    public let relayURL: String
    /// The name companions see ("studio-mac").
    public let name: String
    /// Unix seconds.
    public let createdAt: Int64
}

/// A paired device as the host knows it.
public struct Device: Sendable, Equatable {
    public let id: Int64
    public let name: String
    public let signingKey: Ed25519.PublicKey
    /// Which executors the device may use, comma-separated ("agent,action").
    public let policy: String
    public let pairedAt: Int64
    public let lastSeenAt: Int64?
    public let revokedAt: Int64?
    /// Hash of the token the device posts to the host's mailbox with (removed at the relay on revoke).
    public let inboundTokenHash: TokenHash
    /// Whether the relay confirmed that token is gone.
    public let relayTokenRemoved: Bool

    public var fingerprint: String { Fingerprint.of(signingKey) }
    public var isRevoked: Bool { revokedAt != nil }
}

/// Everything a new device brings, saved with its first session state in one transaction.
public struct NewDevice: Sendable {
    public let name: String
    public let signingKey: Ed25519.PublicKey
    public let agreementKey: X25519.PublicKey
    public let transcriptHash: [UInt8]
    public let inboundTokenHash: TokenHash
    public let outboundToken: SendToken
    public let pairedAt: Int64
}

/// A device's live session, loaded for trial decryption.
public struct DeviceSession: Sendable {
    public let device: Device
    public var session: SecureSession
}

/// The host's SQLite state (`host.sqlite`): settings, devices, sessions, received messages.
public final class HostStore: Sendable {
    static let fileName = "host.sqlite"
    let queue: DatabaseQueue

    /// Opens the store in `directory` (creating it, 0600).
    public init(directory: StateDirectory) throws(PeerError) {
        queue = try StateDatabase.open(Self.fileName, in: directory, migrator: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: host settings, devices, sessions, inbox") { db in
            try db.execute(sql: """
                CREATE TABLE host_settings (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    relay_url TEXT NOT NULL,
                    name TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE device (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL,
                    signing_key BLOB NOT NULL UNIQUE,
                    agreement_key BLOB NOT NULL,
                    transcript_hash BLOB NOT NULL,
                    inbound_token_hash BLOB NOT NULL,
                    outbound_token BLOB,
                    policy TEXT NOT NULL,
                    paired_at INTEGER NOT NULL,
                    last_seen_at INTEGER,
                    revoked_at INTEGER,
                    relay_token_removed INTEGER NOT NULL DEFAULT 0
                );
                CREATE UNIQUE INDEX device_active_name ON device (name) WHERE revoked_at IS NULL;
                CREATE TABLE session (
                    device_id INTEGER PRIMARY KEY REFERENCES device(id) ON DELETE CASCADE,
                    ratchet BLOB NOT NULL
                );
                CREATE TABLE inbox (
                    envelope_id BLOB PRIMARY KEY,
                    device_id INTEGER NOT NULL REFERENCES device(id),
                    payload BLOB NOT NULL,
                    received_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2: tasks, execution log, outbox, action policy") { db in
            try db.execute(sql: """
                ALTER TABLE device ADD COLUMN actions TEXT NOT NULL DEFAULT '*';
                CREATE TABLE task (
                    position INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    device_id INTEGER NOT NULL REFERENCES device(id),
                    request TEXT NOT NULL,
                    status TEXT NOT NULL,
                    exit_code INTEGER,
                    output BLOB NOT NULL DEFAULT x'',
                    truncated INTEGER NOT NULL DEFAULT 0,
                    reason TEXT,
                    created_at INTEGER NOT NULL,
                    started_at INTEGER,
                    finished_at INTEGER
                );
                CREATE INDEX task_by_status ON task (status);
                CREATE TABLE execution_log (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at INTEGER NOT NULL,
                    device TEXT NOT NULL,
                    task TEXT NOT NULL,
                    executor TEXT NOT NULL,
                    what TEXT NOT NULL,
                    status TEXT NOT NULL,
                    exit_code INTEGER,
                    output_bytes INTEGER NOT NULL,
                    output_digest TEXT NOT NULL
                );
                CREATE TABLE outbox (
                    envelope_id BLOB PRIMARY KEY,
                    device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,
                    envelope BLOB NOT NULL,
                    created_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3: audit key, records and checkpoint") { db in
            try db.execute(sql: """
                ALTER TABLE host_settings ADD COLUMN audit_key TEXT;
                CREATE TABLE audit_record (
                    envelope_id BLOB NOT NULL,
                    event INTEGER NOT NULL,
                    mailbox BLOB NOT NULL,
                    digest BLOB NOT NULL,
                    time INTEGER NOT NULL,
                    leaf_index INTEGER,
                    PRIMARY KEY (envelope_id, event)
                );
                CREATE TABLE audit_checkpoint (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    note TEXT NOT NULL
                );
                """)
        }
        migrator.registerMigration("v4: urgent outbox messages") { db in
            // Urgent messages (a task's end) ring the device's doorbells when it is offline.
            try db.execute(sql: "ALTER TABLE outbox ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v5: a running task's process") { db in
            // What a host that did not stop cleanly left running is ended by the next one.
            try db.execute(sql: "ALTER TABLE task ADD COLUMN process_id INTEGER; ALTER TABLE task ADD COLUMN process_start INTEGER")
        }
        migrator.registerMigration("v6: the agent's conversation and its sessions") { db in
            // The conversation agent tasks continue (a task may start a new one), and per
            // conversation the session each adapter's agent named, to resume it.
            try db.execute(sql: """
                ALTER TABLE host_settings ADD COLUMN conversation INTEGER NOT NULL DEFAULT 1;
                CREATE TABLE agent_session (
                    conversation INTEGER NOT NULL,
                    adapter TEXT NOT NULL,
                    session TEXT NOT NULL,
                    PRIMARY KEY (conversation, adapter)
                );
                """)
        }
        migrator.registerMigration("v7: approval requests") { db in
            // An agent's requests to use a tool, and how each was answered (first answer wins).
            try db.execute(sql: """
                ALTER TABLE device ADD COLUMN approve INTEGER NOT NULL DEFAULT 0;
                UPDATE device SET approve = 1 WHERE ',' || policy || ',' LIKE '%,agent,%' OR ',' || policy || ',' LIKE '%,shell,%';
                CREATE TABLE approval (
                    id TEXT PRIMARY KEY,
                    task TEXT NOT NULL,
                    tool TEXT NOT NULL,
                    input TEXT NOT NULL,
                    status TEXT NOT NULL DEFAULT 'pending',
                    answered_by TEXT,
                    reason TEXT,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    answered_at INTEGER
                );
                """)
        }
        migrator.registerMigration("v8: acknowledgements the relay has not confirmed") { db in
            // Every envelope taken from the mailbox, until the relay answers its acknowledgement
            // (after its commit): a restarted host or a new connection sends it again.
            try db.execute(sql: """
                CREATE TABLE pending_ack (
                    envelope_id BLOB PRIMARY KEY,
                    digest BLOB NOT NULL,
                    queued_at INTEGER NOT NULL
                );
                """)
        }
        return migrator
    }

    // MARK: Settings

    public func settings() throws -> HostSettings? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT relay_url, name, created_at FROM host_settings WHERE id = 1").map {
                HostSettings(relayURL: $0[0], name: $0[1], createdAt: $0[2])
            }
        }
    }

    func saveSettings(_ settings: HostSettings) throws {
        try queue.write { db in
            try db.execute(sql: "INSERT INTO host_settings (id, relay_url, name, created_at) VALUES (1, ?, ?, ?)",
                           arguments: [settings.relayURL, settings.name, settings.createdAt])
        }
    }

    // MARK: Devices

    static let deviceColumns = "id, name, signing_key, policy, paired_at, last_seen_at, revoked_at, inbound_token_hash, relay_token_removed"

    static func device(_ row: Row) throws -> Device {
        Device(id: row[0], name: row[1], signingKey: try Ed25519.PublicKey(bytes: [UInt8](row[2] as Data)), policy: row[3],
               pairedAt: row[4], lastSeenAt: row[5], revokedAt: row[6],
               inboundTokenHash: try TokenHash(bytes: [UInt8](row[7] as Data)), relayTokenRemoved: row[8])
    }

    /// Paired devices, oldest first; revoked ones too when `includeRevoked`.
    public func devices(includeRevoked: Bool = false) throws -> [Device] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.deviceColumns) FROM device \(includeRevoked ? "" : "WHERE revoked_at IS NULL") ORDER BY id")
                .map(Self.device)
        }
    }

    /// The device a person means by `reference`: its exact name, or a prefix (4+ hex digits, spaces
    /// ignored) of its fingerprint. Revoked devices match too, so a revocation can be retried.
    /// - Throws: ``PeerError`` when nothing or more than one device matches.
    public func device(matching reference: String) throws -> Device {
        let all = try devices(includeRevoked: true)
        let byName = all.filter { $0.name == reference }
        let active = byName.filter { !$0.isRevoked }
        if active.count == 1 { return active[0] }
        if byName.count == 1 { return byName[0] }
        let compact = reference.lowercased().filter { !$0.isWhitespace }
        if compact.count >= 4, compact.allSatisfy(\.isHexDigit) {
            let matches = all.filter { $0.fingerprint.filter { !$0.isWhitespace }.hasPrefix(compact) }
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 {
                throw PeerError("more than one device has a fingerprint starting with \(reference)", hint: "give more digits of the fingerprint")
            }
        }
        if byName.count > 1 {
            throw PeerError("several revoked devices are called \(reference)", hint: "name the device by its fingerprint instead")
        }
        throw PeerError("no paired device is called \(reference) or has that fingerprint",
                        hint: "list devices with 'errand host devices'")
    }

    /// Registers a device and its first session state together; a name already in use gets a
    /// number ("phone-2").
    public func addDevice(_ device: NewDevice, session: DoubleRatchet, executors: [Executor] = [.agent, .action]) throws -> Device {
        try queue.write { db in
            let name = try DeviceName.unique(device.name) { candidate in
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM device WHERE name = ? AND revoked_at IS NULL)", arguments: [candidate]) == true
            }
            try db.execute(sql: """
                INSERT INTO device (name, signing_key, agreement_key, transcript_hash, inbound_token_hash, outbound_token, policy, paired_at, approve)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [name, Data(device.signingKey.bytes), Data(device.agreementKey.bytes), Data(device.transcriptHash),
                                 Data(device.inboundTokenHash.bytes), nil, DevicePolicy(executors: Set(executors), actions: nil).executorsText,
                                 device.pairedAt, executors.contains(.agent) || executors.contains(.shell)])
            try device.outboundToken.secret.withWipedData { token in
                try db.execute(sql: "UPDATE device SET outbound_token = ? WHERE id = ?", arguments: [token, db.lastInsertedRowID])
            }
            let id = db.lastInsertedRowID
            try session.serialized.withWipedData { state in
                try db.execute(sql: "INSERT INTO session (device_id, ratchet) VALUES (?, ?)", arguments: [id, state])
            }
            return try Self.device(Row.fetchOne(db, sql: "SELECT \(Self.deviceColumns) FROM device WHERE id = ?", arguments: [id])!)
        }
    }

    /// Deletes a device that never finished pairing.
    public func forgetDevice(_ id: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM inbox WHERE device_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM task WHERE device_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM device WHERE id = ?", arguments: [id])
        }
    }

    /// Marks a device revoked: its session and the token for posting to it are deleted, so
    /// nothing from it can be opened any more.
    public func revoke(_ id: Int64, at time: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM session WHERE device_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM outbox WHERE device_id = ?", arguments: [id])
            // Queued tasks of a revoked device never run.
            try db.execute(sql: "UPDATE task SET status = 'refused', reason = 'the device was revoked before the task started', finished_at = ? WHERE device_id = ? AND status = 'queued'",
                           arguments: [time, id])
            try db.execute(sql: "UPDATE device SET revoked_at = COALESCE(revoked_at, ?), outbound_token = NULL WHERE id = ?", arguments: [time, id])
        }
    }

    /// Records that the relay no longer accepts the device's token.
    public func markRelayTokenRemoved(_ id: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE device SET relay_token_removed = 1 WHERE id = ?", arguments: [id])
        }
    }

    // MARK: Sessions and received messages

    /// Sessions of all devices that are not revoked.
    public func activeSessions() throws -> [DeviceSession] {
        try queue.read { db in try Self.activeSessions(db) }
    }

    static func activeSessions(_ db: Database) throws -> [DeviceSession] {
        let columns = deviceColumns.split(separator: ",").map { "d.\($0.trimmingCharacters(in: .whitespaces))" }.joined(separator: ", ")
        let rows = try Row.fetchCursor(db, sql: """
            SELECT \(columns), s.ratchet, d.transcript_hash
            FROM device d JOIN session s ON s.device_id = d.id WHERE d.revoked_at IS NULL ORDER BY d.id
            """)
        var sessions: [DeviceSession] = []
        while let row = try rows.next() {
            let ratchet = try DoubleRatchet(serialized: row.secret(at: 9))
            let transcriptHash = [UInt8](row[10] as Data)
            sessions.append(DeviceSession(device: try device(row), session: SecureSession(
                ratchet: ratchet, associatedData: PairingSessionKeys.associatedData(transcriptHash: transcriptHash))))
        }
        return sessions
    }

    /// Runs `body` in one write transaction (taken with the write lock at once).
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        try queue.write(body)
    }

    static func hasReceived(_ db: Database, _ id: EnvelopeID) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM inbox WHERE envelope_id = ?)", arguments: [Data(id.bytes)]) ?? false
    }

    /// Stores a received payload with the session state that opened it (inside the caller's transaction).
    static func storeReceived(_ db: Database, _ id: EnvelopeID, from device: Int64, payload: [UInt8], session: DoubleRatchet, at time: Int64) throws {
        try db.execute(sql: "INSERT INTO inbox (envelope_id, device_id, payload, received_at) VALUES (?, ?, ?, ?)",
                       arguments: [Data(id.bytes), device, Data(payload), time])
        try session.serialized.withWipedData { state in
            try db.execute(sql: "UPDATE session SET ratchet = ? WHERE device_id = ?", arguments: [state, device])
        }
        guard db.changesCount == 1 else { throw PeerError("the device's session was deleted while a message was being processed") }
        try db.execute(sql: "UPDATE device SET last_seen_at = ? WHERE id = ?", arguments: [time, device])
    }

    /// Received payloads, oldest first.
    public func inbox() throws -> [(envelope: EnvelopeID, device: Int64, payload: [UInt8])] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT envelope_id, device_id, payload FROM inbox ORDER BY rowid").map {
                (try EnvelopeID(bytes: [UInt8]($0[0] as Data)), $0[1], [UInt8]($0[2] as Data))
            }
        }
    }
}
