import ErrandCrypto
import ErrandTransparency
public import ErrandProtocol
import Foundation
import GRDB
public import Logging
import Synchronization

/// The embedded store: one SQLite file in WAL mode, written through a group-commit writer.
///
/// With ``Durability/full`` (the default) a write is on disk when the call returns (the WAL is
/// synced after its group commit, beside the writer), so an envelope acknowledged to its sender
/// survives a crash of the relay or of the machine.
public final class SQLiteRelayStore: RelayStore, AuditableStore {
    /// How hard the store works to keep commits on disk.
    public enum Durability: String, Sendable, CaseIterable {
        /// The WAL is synced after every commit, before any caller hears back: survives power
        /// loss (default).
        case full
        /// Synced at checkpoints only: survives a crash of the relay, not of the machine.
        case normal
    }

    let pool: DatabasePool
    let writer: GroupCommitWriter
    /// Syncs the WAL after commits (``Durability/full``).
    private let syncer: WALSyncer?
    /// Copies the WAL into the database file off the writer.
    private let checkpointer: WALCheckpointer
    /// The size of the audit checkpoint last known to be on disk: none larger is served.
    /// Readers can see a commit before its sync ends, and a signed checkpoint that a crash could
    /// take back would look like a fork to the peers that saw it.
    private let durableCheckpointSize = Mutex<Int64>(0)
    /// Told of every envelope stored, once it is durable (see ``publishArrivals(to:)``).
    private let arrivalListener = Mutex<ArrivalListener?>(nil)
    /// A struct around the closure: a closure kept directly in a `Mutex` is wrapped in one more
    /// reabstraction thunk at every `withLock` (each call then runs through all of them).
    private struct ArrivalListener: Sendable {
        let call: @Sendable (ArrivalEvent) -> Void
    }
    /// Leaf hash → leaf index, in a file of its own (see ``LeafHashIndex``).
    private let leafIndex: LeafHashIndex

    /// Whether envelope events append audit leaves.
    let auditLog: Bool

    /// Opens (creating and migrating if needed) the store in `directory/relay.sqlite`.
    /// - Parameter logger: where failures of background work (checkpoints) are reported.
    public init(directory: String, durability: Durability = .full, auditLog: Bool = true, logger: Logger? = nil) throws {
        self.auditLog = auditLog
        var configuration = Configuration()
        configuration.label = "errand-relay"
        configuration.busyMode = .timeout(TimeInterval(Self.busyTimeoutSeconds))
        // Every write runs in a savepoint of a group transaction (GroupCommitWriter); SQLite keeps
        // a savepoint's undo pages in a temporary file unless told to keep them in memory, and
        // writing that file cost the single writer about a fifth of its time.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192") }
        let path = URL(fileURLWithPath: directory).appendingPathComponent("relay.sqlite").path
        pool = try DatabasePool(path: path, configuration: configuration)
        // SQLite commits without syncing (NORMAL); with full durability the syncer syncs the WAL
        // after each group commit, off the writer, and only then are the callers answered. That
        // is the same guarantee as SQLite's FULL, without the writer idling through every sync.
        // A larger page cache keeps the writer from re-reading index pages it just wrote.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536")
        }
        try Self.migrator.migrate(pool)
        try pool.write { db in try Self.skipSequenceNumbers(db) }
        syncer = durability == .full ? WALSyncer(walPath: path + "-wal") : nil
        // Whatever an earlier run committed without a sync (with `full`), and the sequence skip
        // (with either), are made durable before anything is served.
        try WALSyncer.syncFile(at: path + "-wal")
        try WALSyncer.syncFile(at: directory)
        // Checkpoints run beside the writer, not on it.
        let checkpointer = try WALCheckpointer(path: path, writerBusyTimeout: Int32(Self.busyTimeoutSeconds * 1000), logger: logger)
        do {
            try pool.writeWithoutTransaction { db in checkpointer.install(on: db) }
            writer = GroupCommitWriter(pool: pool, syncer: syncer, checkpointer: checkpointer)
            let size = try pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoint") ?? 0 }
            durableCheckpointSize.withLock { $0 = size }
            leafIndex = try LeafHashIndex(directory: directory) { [pool] start, count in
                try pool.read { db in try Self.leafHashes(db, start: start, count: Int64(count)) }
            }
            leafIndex.catchUp(to: size)
        } catch {
            checkpointer.stop()
            throw error
        }
        self.checkpointer = checkpointer
    }

    /// Sequence numbers skipped at every start.
    static let sequenceNumbersSkippedAtStart: Int64 = 1_000_000

    /// Moves the envelope sequence well past any number issued before. Readers can see a commit
    /// a moment before it is synced; if the machine then lost power, that commit is gone and
    /// SQLite would hand its numbers out again, and a reader that saw one would skip the new
    /// envelope that gets it. Far more than one sync's worth (or, with `normal`, a whole log's
    /// worth) of envelopes is skipped.
    private static func skipSequenceNumbers(_ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO sqlite_sequence (name, seq)
            SELECT 'envelope', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'envelope')
            """, arguments: [0])
        try db.execute(sql: "UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'envelope'",
                       arguments: [sequenceNumbersSkippedAtStart])
    }

    /// How long a connection waits for a lock another holds.
    static let busyTimeoutSeconds = 10

    /// Named, append-only schema migrations.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: mailboxes, envelopes, tokens, slots") { db in
            try db.execute(sql: """
                CREATE TABLE invite (
                    hash BLOB PRIMARY KEY,
                    expires_at INTEGER NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE mailbox (
                    id BLOB PRIMARY KEY,
                    owner_key BLOB NOT NULL,
                    sponsor BLOB,
                    created_at INTEGER NOT NULL,
                    envelope_count INTEGER NOT NULL DEFAULT 0,
                    envelope_bytes INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                CREATE INDEX mailbox_by_sponsor ON mailbox (sponsor) WHERE sponsor IS NOT NULL;

                CREATE TABLE send_token (
                    mailbox BLOB NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                    hash BLOB NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (mailbox, hash)
                ) WITHOUT ROWID;

                CREATE TABLE envelope (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    mailbox BLOB NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                    envelope_id BLOB NOT NULL,
                    body BLOB NOT NULL,
                    stored_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    UNIQUE (mailbox, envelope_id)
                );
                CREATE INDEX envelope_by_mailbox ON envelope (mailbox, seq);
                CREATE INDEX envelope_by_expiry ON envelope (expires_at);

                -- Keep each mailbox's usage current, whatever deletes an envelope (ack, expiry).
                CREATE TRIGGER envelope_added AFTER INSERT ON envelope BEGIN
                    UPDATE mailbox SET envelope_count = envelope_count + 1,
                                       envelope_bytes = envelope_bytes + length(NEW.body)
                    WHERE id = NEW.mailbox;
                END;
                CREATE TRIGGER envelope_removed AFTER DELETE ON envelope BEGIN
                    UPDATE mailbox SET envelope_count = envelope_count - 1,
                                       envelope_bytes = envelope_bytes - length(OLD.body)
                    WHERE id = OLD.mailbox;
                END;

                CREATE TABLE request_nonce (
                    signer BLOB NOT NULL,
                    nonce TEXT NOT NULL,
                    expires_at INTEGER NOT NULL,
                    PRIMARY KEY (signer, nonce)
                ) WITHOUT ROWID;
                CREATE INDEX request_nonce_by_expiry ON request_nonce (expires_at);

                CREATE TABLE pairing_slot (
                    id BLOB PRIMARY KEY,
                    owner BLOB NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                    expires_at INTEGER NOT NULL,
                    request BLOB,
                    claim BLOB,
                    reply BLOB
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2: audit log") { db in
            try db.execute(sql: """
                ALTER TABLE envelope ADD COLUMN digest BLOB;
                CREATE TABLE audit_leaf (
                    idx INTEGER PRIMARY KEY,
                    leaf BLOB NOT NULL
                );
                CREATE TABLE audit_node (
                    level INTEGER NOT NULL,
                    idx INTEGER NOT NULL,
                    hash BLOB NOT NULL,
                    PRIMARY KEY (level, idx)
                ) WITHOUT ROWID;
                CREATE INDEX audit_leaf_hash ON audit_node (hash) WHERE level = 0;
                CREATE TABLE audit_checkpoint (
                    size INTEGER PRIMARY KEY,
                    note TEXT NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3: usage kept by the writer") { db in
            // The writer updates a mailbox's usage once per write, not once per envelope.
            try db.execute(sql: """
                DROP TRIGGER envelope_added;
                DROP TRIGGER envelope_removed;
                """)
        }
        migrator.registerMigration("v4: leaf hashes computed from leaves, looked up in audit-index.sqlite") { db in
            // Level-0 nodes are the leaves' hashes: computed from audit_leaf when read, and
            // looked up by a separate file (LeafHashIndex), off the writer.
            try db.execute(sql: """
                DROP INDEX audit_leaf_hash;
                DELETE FROM audit_node WHERE level = 0;
                """)
        }
        migrator.registerMigration("v5: doorbells") { db in
            try db.execute(sql: """
                CREATE TABLE doorbell (
                    mailbox BLOB NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                    id BLOB NOT NULL,
                    kind TEXT NOT NULL,
                    url TEXT NOT NULL,
                    p256dh BLOB,
                    auth BLOB,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (mailbox, id)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v6: pairing receipts") { db in
            try db.execute(sql: "ALTER TABLE pairing_slot ADD COLUMN receipt BLOB")
        }
        return migrator
    }

    /// The leaf of an envelope event.
    private static func leaf(_ event: AuditLeaf.Event, mailbox: [UInt8], envelopeID: [UInt8], digest: [UInt8], time: Int64) -> Data? {
        guard let mailboxID = try? MailboxID(bytes: mailbox), let id = try? EnvelopeID(bytes: envelopeID) else { return nil }
        return Data(AuditLeaf(event: event, mailbox: mailboxID, envelopeID: id, envelopeDigest: digest, time: time).bytes)
    }

    /// Appends leaves, in order, inside the events' transaction. Leaf index = rowid − 1: rows are
    /// never deleted, so indices are dense and assigned in commit order.
    private static func appendLeaves(_ db: Database, _ leaves: [Data]) throws {
        guard !leaves.isEmpty else { return }
        let insert = try RawStatement(db, "INSERT INTO audit_leaf (leaf) VALUES (?)")
        for leaf in leaves {
            try insert.bind(1, leaf)
            try insert.run()
        }
    }

    /// Adds `count` envelopes of `bytes` bytes in all (negative to remove) to a mailbox's usage.
    private static func addUsage(_ db: Database, mailbox: Data, count: Int, bytes: Int) throws {
        guard count != 0 || bytes != 0 else { return }
        let update = try RawStatement(db, "UPDATE mailbox SET envelope_count = envelope_count + ?, envelope_bytes = envelope_bytes + ? WHERE id = ?")
        try update.bind(1, Int64(count))
        try update.bind(2, Int64(bytes))
        try update.bind(3, mailbox)
        try update.run()
    }

    // MARK: Registration

    public func addInvite(_ hash: TokenHash, expiresAt: Int64) async throws {
        try await writer.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO invite (hash, expires_at) VALUES (?, ?)",
                           arguments: [Data(hash.bytes), expiresAt])
        }
    }

    public func consumeInvite(_ hash: TokenHash, now: Int64) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM invite WHERE hash = ? AND expires_at > ?", arguments: [Data(hash.bytes), now])
            return db.changesCount == 1
        }
    }

    // MARK: Mailboxes

    public func createMailbox(_ id: MailboxID, ownerKey: [UInt8], sponsor: MailboxID?, maximumSponsored: Int, now: Int64) async throws -> MailboxCreation {
        try await writer.write { db in
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM mailbox WHERE id = ?)", arguments: [Data(id.bytes)]) == true {
                return .existed
            }
            if let sponsor {
                guard let row = try Row.fetchOne(db, sql: "SELECT sponsor IS NOT NULL AS sponsored FROM mailbox WHERE id = ?",
                                                 arguments: [Data(sponsor.bytes)]) else { return .sponsorUnknown }
                if row["sponsored"] as Bool { return .sponsorIsDevice }
                let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM mailbox WHERE sponsor = ?", arguments: [Data(sponsor.bytes)]) ?? 0
                if count >= maximumSponsored { return .sponsorLimitReached }
            }
            try db.execute(
                sql: "INSERT INTO mailbox (id, owner_key, sponsor, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                arguments: [Data(id.bytes), Data(ownerKey), sponsor.map { Data($0.bytes) }, now])
            return db.changesCount == 1 ? .created : .existed
        }
    }

    public func mailboxExists(_ id: MailboxID) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM mailbox WHERE id = ?)"), arguments: [Data(id.bytes)]) ?? false
        }
    }

    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func deleteMailbox(_ id: MailboxID) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM mailbox WHERE id = ?", arguments: [Data(id.bytes)])
            return db.changesCount == 1
        }
    }

    public func deleteSponsoredMailbox(_ id: MailboxID, sponsor: MailboxID) async throws -> Bool? {
        try await writer.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT sponsor FROM mailbox WHERE id = ?", arguments: [Data(id.bytes)]) else { return nil }
            guard (row["sponsor"] as Data?) == Data(sponsor.bytes) else { return false }
            try db.execute(sql: "DELETE FROM mailbox WHERE id = ?", arguments: [Data(id.bytes)])
            return true
        }
    }

    // MARK: Replay protection

    public func recordNonce(signer: [UInt8], nonce: String, expiresAt: Int64) async throws -> Bool {
        try await writer.write { db in
            try db.cachedStatement(sql: "INSERT INTO request_nonce (signer, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                .execute(arguments: [Data(signer), nonce, expiresAt])
            return db.changesCount == 1
        }
    }

    // MARK: Send tokens

    public func addSendToken(_ hash: TokenHash, to mailbox: MailboxID, maximum: Int, now: Int64) async throws -> Bool {
        try await writer.write { db in
            // A token already there is fine (idempotent); a new one only below the cap.
            try db.execute(
                sql: """
                    INSERT INTO send_token (mailbox, hash, created_at)
                    SELECT ?1, ?2, ?3 WHERE (SELECT count(*) FROM send_token WHERE mailbox = ?1) < ?4
                    ON CONFLICT DO NOTHING
                    """,
                arguments: [Data(mailbox.bytes), Data(hash.bytes), now, maximum])
            if db.changesCount == 1 { return true }
            return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM send_token WHERE mailbox = ? AND hash = ?)",
                                     arguments: [Data(mailbox.bytes), Data(hash.bytes)]) ?? false
        }
    }

    public func removeSendToken(_ hash: TokenHash, from mailbox: MailboxID) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM send_token WHERE mailbox = ? AND hash = ?", arguments: [Data(mailbox.bytes), Data(hash.bytes)])
            return db.changesCount == 1
        }
    }

    public func sendTokens(of mailbox: MailboxID) async throws -> [TokenHash] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT hash FROM send_token WHERE mailbox = ? ORDER BY created_at, hash",
                              arguments: [Data(mailbox.bytes)])
        }.map { try TokenHash(bytes: [UInt8]($0)) }
    }

    // MARK: Envelopes

    public func storeEnvelope(_ envelope: IncomingEnvelope, sendToken: TokenHash, quota: MailboxQuota) async throws -> StoreOutcome {
        let prepared = [PreparedEnvelope(envelope, sendToken: sendToken, auditLog: auditLog)]
        return try await writer.write({ db in
            guard let outcome = try Self.insertEnvelopes(db, prepared, quota: quota).first ?? nil else {
                throw DatabaseError(message: "the store answered no outcome for an envelope")
            }
            return outcome
        }, committed: { [self] outcome in publish([envelope], outcome.map { [$0] }) })
    }

    public func storeEnvelopes(_ posts: [EnvelopePost], quota: MailboxQuota) async throws -> [StoreOutcome?] {
        let prepared = posts.map { PreparedEnvelope($0.envelope, sendToken: $0.sendToken, auditLog: auditLog) }
        return try await writer.write(turn: .prompt(rows: posts.count), { db in try Self.insertEnvelopes(db, prepared, quota: quota) },
                                      committed: { [self] outcomes in publish(posts.map(\.envelope), outcomes) })
    }

    /// An envelope's columns, digest and audit leaf, computed before it reaches the one writer
    /// (whose time bounds the relay's throughput).
    private struct PreparedEnvelope: Sendable {
        let mailbox: Data
        let id: Data
        let body: Data
        let token: Data
        let digest: Data
        let leaf: Data?
        let storedAt: Int64
        let expiresAt: Int64

        init(_ envelope: IncomingEnvelope, sendToken: TokenHash, auditLog: Bool) {
            let digest = SHA256.hash(envelope.encoded)
            mailbox = Data(envelope.mailbox.bytes)
            id = Data(envelope.id.bytes)
            body = Data(envelope.encoded)
            token = Data(sendToken.bytes)
            self.digest = Data(digest)
            leaf = auditLog
                ? Data(AuditLeaf(event: .stored, mailbox: envelope.mailbox, envelopeID: envelope.id, envelopeDigest: digest, time: envelope.storedAt).bytes)
                : nil
            storedAt = envelope.storedAt
            expiresAt = envelope.expiresAt
        }
    }

    /// What one write knows of a mailbox it stores into.
    private struct MailboxUsage {
        var count: Int
        var bytes: Int
        var added = 0
        var addedBytes = 0
    }

    /// Checks and inserts envelopes, in order, in the current transaction, then appends their
    /// audit leaves and updates each mailbox's usage once. A refusal changes nothing; after a
    /// refusal for a mailbox its later envelopes are not attempted (`nil`), so it keeps its order.
    ///
    /// The token is checked in the same transaction as the insert: once a revocation has
    /// returned, no post with that token can be stored. Each (mailbox, token) is looked up once
    /// per write.
    private static func insertEnvelopes(_ db: Database, _ envelopes: [PreparedEnvelope], quota: MailboxQuota) throws -> [StoreOutcome?] {
        var usage: [Data: MailboxUsage] = [:]
        var tokens: [Data: Bool] = [:]
        var refused: Set<Data> = []
        var leaves: [Data] = []
        var outcomes: [StoreOutcome?] = []
        outcomes.reserveCapacity(envelopes.count)
        let lookUp = try RawStatement(db, "SELECT envelope_count, envelope_bytes, EXISTS (SELECT 1 FROM send_token WHERE mailbox = ?1 AND hash = ?2) FROM mailbox WHERE id = ?1")
        let insert = try RawStatement(db, """
            INSERT INTO envelope (mailbox, envelope_id, body, stored_at, expires_at, digest) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (mailbox, envelope_id) DO NOTHING
            """)
        let existing = try RawStatement(db, "SELECT seq FROM envelope WHERE mailbox = ? AND envelope_id = ?")
        func duplicate(_ envelope: PreparedEnvelope) throws -> Int64? {
            try existing.bind(1, envelope.mailbox)
            try existing.bind(2, envelope.id)
            defer { existing.finish() }
            return try existing.step() ? existing.int64(0) : nil
        }
        for envelope in envelopes {
            guard !refused.contains(envelope.mailbox) else {
                outcomes.append(nil)
                continue
            }
            let tokenKey = envelope.mailbox + envelope.token
            if tokens[tokenKey] == nil || usage[envelope.mailbox] == nil {
                try lookUp.bind(1, envelope.mailbox)
                try lookUp.bind(2, envelope.token)
                if try lookUp.step() {
                    if usage[envelope.mailbox] == nil { usage[envelope.mailbox] = MailboxUsage(count: Int(lookUp.int64(0)), bytes: Int(lookUp.int64(1))) }
                    tokens[tokenKey] = lookUp.int64(2) != 0
                } else {
                    tokens[tokenKey] = false
                }
                lookUp.finish()
            }
            guard tokens[tokenKey] == true, var mailbox = usage[envelope.mailbox] else {
                refused.insert(envelope.mailbox)
                outcomes.append(.forbidden)
                continue
            }
            let full: QuotaKind? = mailbox.count + mailbox.added + 1 > quota.maximumEnvelopes ? .envelopes
                : mailbox.bytes + mailbox.addedBytes + envelope.body.count > quota.maximumBytes ? .bytes : nil
            if let full {
                // A retry of an envelope already stored is still answered as a duplicate.
                if let sequence = try duplicate(envelope) {
                    outcomes.append(.duplicate(sequence: sequence))
                } else {
                    refused.insert(envelope.mailbox)
                    outcomes.append(.quotaExceeded(full))
                }
                continue
            }
            try insert.bind(1, envelope.mailbox)
            try insert.bind(2, envelope.id)
            try insert.bind(3, envelope.body)
            try insert.bind(4, envelope.storedAt)
            try insert.bind(5, envelope.expiresAt)
            try insert.bind(6, envelope.digest)
            try insert.run()
            guard db.changesCount == 1 else {
                guard let sequence = try duplicate(envelope) else { throw DatabaseError(message: "an envelope insert was ignored, yet no such envelope is stored") }
                outcomes.append(.duplicate(sequence: sequence))
                continue
            }
            mailbox.added += 1
            mailbox.addedBytes += envelope.body.count
            usage[envelope.mailbox] = mailbox
            if let leaf = envelope.leaf { leaves.append(leaf) }
            outcomes.append(.stored(sequence: db.lastInsertedRowID))
        }
        for (mailbox, change) in usage where change.added > 0 {
            try addUsage(db, mailbox: mailbox, count: change.added, bytes: change.addedBytes)
        }
        try appendLeaves(db, leaves)
        return outcomes
    }

    public func envelopes(in mailbox: MailboxID, after sequence: Int64, limit: Int) async throws -> [StoredEnvelope] {
        let mailbox = Data(mailbox.bytes)
        return try await pool.read { db in
            let select = try RawStatement(db, "SELECT seq, body FROM envelope WHERE mailbox = ? AND seq > ? ORDER BY seq LIMIT ?")
            try select.bind(1, mailbox)
            try select.bind(2, sequence)
            try select.bind(3, Int64(limit))
            defer { select.finish() }
            var page: [StoredEnvelope] = []
            while try select.step() { page.append(StoredEnvelope(sequence: select.int64(0), encoded: select.bytes(1))) }
            return page
        }
    }

    public func acknowledge(_ ids: [EnvelopeID], in mailbox: MailboxID) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        let now = Int64(Date().timeIntervalSince1970)
        let auditLog = self.auditLog
        let mailboxData = Data(mailbox.bytes)
        // Deferrable: posts do not wait behind a large acknowledgement (see GroupCommitWriter).
        return try await writer.write(turn: .deferrable(rows: ids.count)) { db in
            // Cached statements, a look-up and a delete by sequence number per id: an `IN (…)` list
            // is compiled anew for each length, and `RETURNING` builds a temporary table per run.
            let find = try RawStatement(db, """
                SELECT seq, digest IS NULL, CASE WHEN digest IS NULL THEN body ELSE digest END, length(body)
                FROM envelope WHERE mailbox = ? AND envelope_id = ?
                """)
            let delete = try RawStatement(db, "DELETE FROM envelope WHERE seq = ?")
            var deleted: [(sequence: Int64, id: EnvelopeID, digest: [UInt8])] = []
            var bytes = 0
            for id in ids {
                try find.bind(1, mailboxData)
                try find.bind(2, id.bytes)
                // An id not (or no longer) stored finds nothing.
                guard try find.step() else {
                    find.finish()
                    continue
                }
                let sequence = find.int64(0)
                // Rows stored before digests were kept carry their body instead.
                let digest = find.int64(1) != 0 ? SHA256.hash(find.bytes(2)) : find.bytes(2)
                bytes += Int(find.int64(3))
                find.finish()
                try delete.bind(1, sequence)
                try delete.run()
                deleted.append((sequence, id, digest))
            }
            try Self.addUsage(db, mailbox: mailboxData, count: -deleted.count, bytes: -bytes)
            guard auditLog else { return deleted.count }
            // Leaves go in sequence order, whatever the order of `ids`.
            let leaves = deleted.sorted { $0.sequence < $1.sequence }.map { row in
                Data(AuditLeaf(event: .delivered, mailbox: mailbox, envelopeID: row.id, envelopeDigest: row.digest, time: now).bytes)
            }
            try Self.appendLeaves(db, leaves)
            return deleted.count
        }
    }

    public func expire(now: Int64) async throws -> ExpiryReport {
        // In small deferrable chunks: posts commit between them without waiting (see
        // GroupCommitWriter). A backlog of 100,000 envelopes takes some 1,600 transactions.
        let auditLog = self.auditLog
        let chunk = GroupCommitWriter.deferredRowsPerTransaction
        var report = ExpiryReport()
        while true {
            let deleted = try await writer.write(turn: .deferrable(rows: chunk)) { db in
                let expiring = try Row.fetchAll(
                    db, sql: "DELETE FROM envelope WHERE seq IN (SELECT seq FROM envelope WHERE expires_at <= ? ORDER BY seq LIMIT ?) RETURNING seq, mailbox, envelope_id, digest, CASE WHEN digest IS NULL THEN body END, length(body)",
                    arguments: [now, chunk])
                var removed: [Data: (count: Int, bytes: Int)] = [:]
                for row in expiring {
                    removed[row[1] as Data, default: (0, 0)].count += 1
                    removed[row[1] as Data, default: (0, 0)].bytes += row[5] as Int
                }
                for (mailbox, change) in removed { try Self.addUsage(db, mailbox: mailbox, count: -change.count, bytes: -change.bytes) }
                // RETURNING gives no order: leaves go in sequence order.
                if auditLog {
                    try Self.appendLeaves(db, expiring.sorted { ($0[0] as Int64) < ($1[0] as Int64) }.compactMap { row in
                        let digest = (row[3] as Data?).map { [UInt8]($0) } ?? SHA256.hash([UInt8](row[4] as Data))
                        return Self.leaf(.expired, mailbox: [UInt8](row[1] as Data), envelopeID: [UInt8](row[2] as Data), digest: digest, time: now)
                    })
                }
                return expiring.count
            }
            report.envelopes += deleted
            if deleted < chunk { break }
        }
        let envelopes = report.envelopes
        return try await writer.write(turn: .deferrable(rows: 1)) { db in
            var report = ExpiryReport(envelopes: envelopes)
            try db.execute(sql: "DELETE FROM pairing_slot WHERE expires_at <= ?", arguments: [now])
            report.slots = db.changesCount
            try db.execute(sql: "DELETE FROM request_nonce WHERE expires_at <= ?", arguments: [now])
            report.nonces = db.changesCount
            try db.execute(sql: "DELETE FROM invite WHERE expires_at <= ?", arguments: [now])
            report.invites = db.changesCount
            return report
        }
    }

    // MARK: Audit log

    public func pendingAuditLeaves(after size: Int64, limit: Int) async throws -> [PendingAuditLeaf] {
        // Rows are leaves in commit order already (index = rowid − 1): pending means past the checkpoint.
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT idx, leaf FROM audit_leaf WHERE idx > ? ORDER BY idx LIMIT ?", arguments: [size, limit])
                .map { PendingAuditLeaf(key: $0[0], bytes: [UInt8]($0[1] as Data)) }
        }
    }

    public func auditLeaves(from start: Int64, count: Int) async throws -> [[UInt8]] {
        try await pool.read { db in
            try Data.fetchAll(db, sql: "SELECT leaf FROM audit_leaf WHERE idx > ? AND idx <= ? ORDER BY idx",
                              arguments: [start, start + Int64(count)]).map { [UInt8]($0) }
        }
    }

    public func auditNodes(_ coordinates: [AuditNodeID]) async throws -> [AuditNodeID: [UInt8]] {
        try await pool.read { db in
            var found: [AuditNodeID: [UInt8]] = [:]
            let node = try db.cachedStatement(sql: "SELECT hash FROM audit_node WHERE level = ? AND idx = ?")
            for coordinate in Set(coordinates) {
                if coordinate.level == 0 {
                    // Level 0 is the leaves' hashes, not stored.
                    if let hash = try Self.leafHash(db, index: coordinate.index) { found[coordinate] = hash }
                } else if let hash = try Data.fetchOne(node, arguments: [coordinate.level, coordinate.index]) {
                    found[coordinate] = [UInt8](hash)
                }
            }
            return found
        }
    }

    /// The hashes of up to `count` leaves from leaf index `start` on (leaf index = rowid − 1).
    private static func leafHashes(_ db: Database, start: Int64, count: Int64) throws -> [[UInt8]] {
        try Data.fetchAll(db.cachedStatement(sql: "SELECT leaf FROM audit_leaf WHERE idx > ? AND idx <= ? ORDER BY idx"), arguments: [start, start + count])
            .map { MerkleHash.leaf([UInt8]($0)) }
    }

    /// The hash of leaf `index`, if there is such a leaf.
    private static func leafHash(_ db: Database, index: Int64) throws -> [UInt8]? {
        try Data.fetchOne(db.cachedStatement(sql: "SELECT leaf FROM audit_leaf WHERE idx = ?"), arguments: [index + 1]).map { MerkleHash.leaf([UInt8]($0)) }
    }

    public func saveAuditIntegration(previousSize: Int64, leaves: [PendingAuditLeaf], nodes: [AuditNodeID: [UInt8]], checkpoint: AuditCheckpoint) async throws {
        try await writer.write { db in
            let latest = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoint") ?? 0
            guard latest == previousSize else {
                throw AuditLogError("the audit log moved on to \(latest) leaves while \(previousSize) + \(leaves.count) were being integrated")
            }
            // In key order, so each level's new nodes go to the end of its part of the tree.
            // Level 0 (the leaves' hashes) is not stored: see auditNodes.
            let insert = try RawStatement(db, "INSERT OR IGNORE INTO audit_node (level, idx, hash) VALUES (?, ?, ?)")
            for (coordinate, hash) in nodes.filter({ $0.key.level > 0 }).sorted(by: { ($0.key.level, $0.key.index) < ($1.key.level, $1.key.index) }) {
                try insert.bind(1, Int64(coordinate.level))
                try insert.bind(2, coordinate.index)
                try insert.bind(3, hash)
                try insert.run()
            }
            try db.execute(sql: "INSERT OR REPLACE INTO audit_checkpoint (size, note) VALUES (?, ?)", arguments: [checkpoint.size, checkpoint.note])
        }
        // The write returns once it is durable: from now on the checkpoint may be served.
        durableCheckpointSize.withLock { $0 = checkpoint.size }
        leafIndex.add(start: previousSize, hashes: leaves.indices.map { offset in
            nodes[AuditNodeID(level: 0, index: previousSize + Int64(offset))] ?? MerkleHash.leaf(leaves[offset].bytes)
        })
    }

    /// One node writes this file: it is always the sequencer.
    public func claimAuditSequencer() async throws -> Bool { true }

    public func latestAuditCheckpoint() async throws -> AuditCheckpoint? {
        let durable = durableCheckpointSize.withLock { $0 }
        return try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT size, note FROM audit_checkpoint WHERE size <= ? ORDER BY size DESC LIMIT 1", arguments: [durable])
                .map { AuditCheckpoint(size: $0[0], note: $0[1]) }
        }
    }

    public func auditLeafIndex(leafHash: [UInt8]) async throws -> Int64? {
        // Read the index's size first: whatever it has not taken in yet is searched directly.
        let indexed = leafIndex.size
        let integrated = durableCheckpointSize.withLock { $0 }
        let candidates = try await leafIndex.candidates(for: leafHash)
        return try await pool.read { db in
            // The index keys 8 bytes of the hash: the leaf itself confirms the match.
            for index in candidates where try Self.leafHash(db, index: index) == leafHash { return index }
            // The index trails the log by moments (at most an integration or two): the leaves
            // integrated since are hashed here, so a lookup is never behind the checkpoint.
            guard indexed < integrated else { return nil }
            let tail = try Self.leafHashes(db, start: indexed, count: min(integrated - indexed, Self.leafIndexLagLimit))
            if let found = tail.firstIndex(of: leafHash) { return indexed + Int64(found) }
            // Rebuilding after a lost index: "not in the log" cannot be told yet.
            guard integrated - indexed <= Self.leafIndexLagLimit else {
                throw RelayError(.unavailable, "the relay is rebuilding its index of the audit log (\(indexed) of \(integrated) leaves); try again in a minute",
                                 retryAfterSeconds: 30)
            }
            return nil
        }
    }

    /// Leaves past the leaf-hash index a lookup searches directly, at most.
    static let leafIndexLagLimit: Int64 = 65_536

    /// Waits until the leaf-hash index has taken in every integration so far (for tests).
    func settleLeafIndex() { leafIndex.settle() }

    /// Everything the operator's audit reads, from one consistent snapshot.
    func auditSnapshot() throws -> AuditSnapshot {
        try pool.read { db in
            var snapshot = AuditSnapshot()
            snapshot.leaves = try Data.fetchAll(db, sql: "SELECT leaf FROM audit_leaf ORDER BY idx").map { [UInt8]($0) }
            // No leaf hashes are stored: they are computed from these leaves wherever they are read.
            snapshot.checkpoint = try Row.fetchOne(db, sql: "SELECT size, note FROM audit_checkpoint ORDER BY size DESC LIMIT 1").map { AuditCheckpoint(size: $0[0], note: $0[1]) }
            let rows = try Row.fetchCursor(db, sql: "SELECT seq, envelope_id, body FROM envelope ORDER BY seq")
            while let row = try rows.next() {
                snapshot.envelopes.append((row[0], [UInt8](row[1] as Data), [UInt8](row[2] as Data)))
            }
            return snapshot
        }
    }

    // MARK: Several nodes

    /// Only this node stores here, and it wakes its own connections.
    public func watchArrivals(_ arrived: @escaping @Sendable (MailboxID?) -> Void) async throws {}

    /// The one writer commits in order: each commit's stored envelopes go to `listener` from it,
    /// once synced. One listener only.
    public func publishArrivals(to listener: @escaping @Sendable (ArrivalEvent) -> Void) -> Bool {
        arrivalListener.withLock { current in
            guard current == nil else { return false }
            current = ArrivalListener(call: listener)
            return true
        }
    }

    /// Hands what a commit stored to the arrival listener, by mailbox, in order (`outcomes` nil:
    /// committed, but the sync failed).
    private func publish(_ envelopes: [IncomingEnvelope], _ outcomes: [StoreOutcome?]?) {
        guard let listener = arrivalListener.withLock({ $0 }) else { return }
        guard let outcomes else { return listener.call(.unknown) }
        var byMailbox: [(MailboxID, [StoredEnvelope])] = []
        for (envelope, outcome) in zip(envelopes, outcomes) {
            guard case .stored(let sequence)? = outcome else { continue }
            let stored = StoredEnvelope(sequence: sequence, encoded: envelope.encoded)
            if let index = byMailbox.firstIndex(where: { $0.0 == envelope.mailbox }) {
                byMailbox[index].1.append(stored)
            } else {
                byMailbox.append((envelope.mailbox, [stored]))
            }
        }
        for (mailbox, stored) in byMailbox { listener.call(.stored(mailbox, stored)) }
    }

    /// Rate limits stay in the node's memory.
    public var sharesRateLimits: Bool { false }

    public func takeRateToken(_ key: [UInt8], rate: Double, burst: Double, cost: Double) async throws -> Int? { nil }

    // MARK: Pairing slots

    public func createSlot(_ slot: PairingSlotID, owner: MailboxID, expiresAt: Int64, maximumOpen: Int, now: Int64) async throws -> SlotCreation {
        try await writer.write { db in
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM pairing_slot WHERE id = ?)", arguments: [Data(slot.bytes)]) == true {
                return .exists
            }
            let open = try Int.fetchOne(db, sql: "SELECT count(*) FROM pairing_slot WHERE owner = ? AND expires_at > ?",
                                        arguments: [Data(owner.bytes), now]) ?? 0
            if open >= maximumOpen { return .tooMany }
            try db.execute(sql: "INSERT INTO pairing_slot (id, owner, expires_at) VALUES (?, ?, ?)",
                           arguments: [Data(slot.bytes), Data(owner.bytes), expiresAt])
            return .created
        }
    }

    public func putSlotRequest(_ slot: PairingSlotID, request: [UInt8], claim: TokenHash, now: Int64) async throws -> SlotWrite {
        try await writer.write { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT request IS NOT NULL AS used FROM pairing_slot WHERE id = ? AND expires_at > ?",
                arguments: [Data(slot.bytes), now]) else { return .notFound }
            if row["used"] as Bool { return .alreadyUsed }
            try db.execute(sql: "UPDATE pairing_slot SET request = ?, claim = ? WHERE id = ?",
                           arguments: [Data(request), Data(claim.bytes), Data(slot.bytes)])
            return .accepted
        }
    }

    public func slotRequest(_ slot: PairingSlotID, owner: MailboxID, now: Int64) async throws -> SlotRead {
        try await pool.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT request FROM pairing_slot WHERE id = ? AND owner = ? AND expires_at > ?",
                arguments: [Data(slot.bytes), Data(owner.bytes), now]) else { return .notFound }
            guard let request = row["request"] as Data? else { return .empty }
            return .value([UInt8](request))
        }
    }

    public func putSlotPart(_ part: SlotHostPart, _ slot: PairingSlotID, owner: MailboxID, bytes: [UInt8], now: Int64) async throws -> SlotWrite {
        let column = part.rawValue  // a fixed column name, never input
        return try await writer.write { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT request IS NOT NULL AS requested, \(column) IS NOT NULL AS written FROM pairing_slot WHERE id = ? AND owner = ? AND expires_at > ?",
                arguments: [Data(slot.bytes), Data(owner.bytes), now]) else { return .notFound }
            guard row["requested"] as Bool else { return .notFound }
            if row["written"] as Bool { return .alreadyUsed }
            try db.execute(sql: "UPDATE pairing_slot SET \(column) = ? WHERE id = ?", arguments: [Data(bytes), Data(slot.bytes)])
            return .accepted
        }
    }

    public func slotReceipt(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead {
        try await pool.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT claim, receipt FROM pairing_slot WHERE id = ? AND expires_at > ?",
                arguments: [Data(slot.bytes), now]) else { return .notFound }
            guard let storedClaim = row["claim"] as Data?,
                  ConstantTime.equals([UInt8](storedClaim), claim.bytes) else { return .forbidden }
            guard let receipt = row["receipt"] as Data? else { return .empty }
            return .value([UInt8](receipt))
        }
    }

    public func takeSlotReply(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead {
        try await writer.write { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT claim, reply FROM pairing_slot WHERE id = ? AND expires_at > ?",
                arguments: [Data(slot.bytes), now]) else { return .notFound }
            guard let storedClaim = row["claim"] as Data?,
                  ConstantTime.equals([UInt8](storedClaim), claim.bytes) else { return .forbidden }
            guard let reply = row["reply"] as Data? else { return .empty }
            // Delivered: the slot has done its job and vanishes.
            try db.execute(sql: "DELETE FROM pairing_slot WHERE id = ?", arguments: [Data(slot.bytes)])
            return .value([UInt8](reply))
        }
    }

    public func deleteSlot(_ slot: PairingSlotID, owner: MailboxID) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM pairing_slot WHERE id = ? AND owner = ?", arguments: [Data(slot.bytes), Data(owner.bytes)])
            return db.changesCount == 1
        }
    }

    // MARK: Operations

    public func statistics() async throws -> StoreStatistics {
        try await pool.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT (SELECT count(*) FROM mailbox) AS mailboxes,
                       (SELECT coalesce(sum(envelope_count), 0) FROM mailbox) AS envelopes,
                       (SELECT coalesce(sum(envelope_bytes), 0) FROM mailbox) AS bytes,
                       (SELECT count(*) FROM pairing_slot) AS slots
                """)!
            return StoreStatistics(mailboxes: row["mailboxes"], envelopes: row["envelopes"], envelopeBytes: row["bytes"], slots: row["slots"])
        }
    }

    /// The writer's `PRAGMA synchronous` (1 = NORMAL: the store syncs the WAL itself), for checks and tests.
    public func synchronousMode() async throws -> Int {
        try await pool.write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// WAL syncs made after commits so far (0 with ``Durability/normal``), for checks and tests.
    public var walSyncCount: Int { syncer?.syncCount ?? 0 }

    public var writeAheadLog: WriteAheadLogStatus? { checkpointer.status }

    public func close() async throws {
        try leafIndex.close()
        var uninstallError: (any Error)?
        do {
            try await pool.writeWithoutTransaction { [checkpointer] db in checkpointer.uninstall(from: db) }
        } catch {
            uninstallError = error
        }
        checkpointer.stop()
        if let uninstallError { throw uninstallError }
        try pool.close()
    }
}
