import ErrandCrypto
public import ErrandProtocol
import Foundation
public import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The store for several relay nodes: one PostgreSQL database that every node shares.
///
/// Every mutating call is one transaction, committed before it returns (PostgreSQL's default
/// `synchronous_commit = on` makes that durable). Envelopes of one mailbox are written while
/// holding that mailbox's row lock, so their sequence numbers are assigned in commit order and
/// a reader's cursor never skips an envelope that commits late. Nodes learn of each other's
/// envelopes through `LISTEN`/`NOTIFY`; one node at a time integrates the audit log, chosen by
/// an advisory lock that PostgreSQL releases when that node's connection goes.
public final class PostgresRelayStore: RelayStore, AuditableStore {
    let client: PostgresClient
    let location: PostgresLocation
    let logger: Logger
    let auditLog: Bool
    private let runner: Task<Void, Never>
    private let sequencer: PostgresSessionLock

    private init(location: PostgresLocation, maximumConnections: Int, auditLog: Bool, logger: Logger) {
        self.location = location
        self.logger = logger
        self.auditLog = auditLog
        let client = PostgresClient(configuration: location.clientConfiguration(maximumConnections: maximumConnections), backgroundLogger: logger)
        self.client = client
        runner = Task { await client.run() }
        sequencer = PostgresSessionLock(location: location, key: PostgresSchema.LockKey.auditSequencer.rawValue, logger: logger)
    }

    /// Connects (a pool of up to `maximumConnections`) and applies missing migrations.
    /// - Throws: ``RelayStartupError`` saying what failed, without the password.
    public static func open(_ location: PostgresLocation, maximumConnections: Int = 20, auditLog: Bool = true,
                            logger: Logger) async throws -> PostgresRelayStore {
        let store = PostgresRelayStore(location: location, maximumConnections: maximumConnections, auditLog: auditLog, logger: logger)
        do {
            // On a connection of its own: a wrong address or password fails here, clearly.
            let connection = try await PostgresConnection.connect(configuration: location.connectionConfiguration(), id: 0, logger: logger)
            do {
                try await PostgresSchema.migrate(connection, logger: logger)
                // A 2xx promises the envelope is committed; with this off a crash of the
                // database can take back what was acknowledged.
                let commit = try await connection.query("SHOW synchronous_commit", logger: logger).collect().first?.decode(String.self)
                if commit == "off" {
                    logger.warning("PostgreSQL has synchronous_commit = off: a crash of the database can lose envelopes the relay acknowledged; set it to on")
                }
                try await connection.close()
            } catch {
                try? await connection.close()
                throw error
            }
        } catch {
            try? await store.close()
            throw RelayStartupError("cannot open the PostgreSQL store at \(location.redacted): \(PostgresProblem.describe(error))")
        }
        return store
    }

    /// Runs `body` in one transaction on a pooled connection.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            // Errors of our own (an audit conflict) come back as they were thrown.
            if let inner = error.closureError, !(inner is PSQLError) { throw inner }
            throw error
        }
    }

    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await client.query(query, logger: logger).collect()
    }

    // MARK: Registration

    public func addInvite(_ hash: TokenHash, expiresAt: Int64) async throws {
        try await client.query("""
            INSERT INTO invite (hash, expires_at) VALUES (\(bytea(hash.bytes)), \(expiresAt))
            ON CONFLICT (hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
            """, logger: logger)
    }

    public func consumeInvite(_ hash: TokenHash, now: Int64) async throws -> Bool {
        try await rows("DELETE FROM invite WHERE hash = \(bytea(hash.bytes)) AND expires_at > \(now) RETURNING 1").count == 1
    }

    // MARK: Mailboxes

    public func createMailbox(_ id: MailboxID, ownerKey: [UInt8], sponsor: MailboxID?, maximumSponsored: Int, now: Int64) async throws -> MailboxCreation {
        let logger = self.logger
        return try await transaction { connection in
            if try await !connection.query("SELECT 1 FROM mailbox WHERE id = \(bytea(id.bytes))", logger: logger).collect().isEmpty {
                return .existed
            }
            if let sponsor {
                // Locking the sponsor's row makes "fewer than the limit" hold under concurrent creations.
                guard let row = try await connection.query(
                    "SELECT sponsor IS NOT NULL FROM mailbox WHERE id = \(bytea(sponsor.bytes)) FOR UPDATE", logger: logger).collect().first
                else { return .sponsorUnknown }
                if try row.decode(Bool.self) { return .sponsorIsDevice }
                let count = try await connection.query("SELECT count(*) FROM mailbox WHERE sponsor = \(bytea(sponsor.bytes))", logger: logger)
                    .collect().first?.decode(Int64.self) ?? 0
                if count >= Int64(maximumSponsored) { return .sponsorLimitReached }
            }
            let inserted = try await connection.query("""
                INSERT INTO mailbox (id, owner_key, sponsor, created_at)
                VALUES (\(bytea(id.bytes)), \(bytea(ownerKey)), \(sponsor.map { bytea($0.bytes) }), \(now))
                ON CONFLICT (id) DO NOTHING RETURNING 1
                """, logger: logger).collect()
            return inserted.isEmpty ? .existed : .created
        }
    }

    public func mailboxExists(_ id: MailboxID) async throws -> Bool {
        try await !rows("SELECT 1 FROM mailbox WHERE id = \(bytea(id.bytes))").isEmpty
    }

    public func ping() async throws {
        _ = try await rows("SELECT 1")
    }

    public func deleteMailbox(_ id: MailboxID) async throws -> Bool {
        let logger = self.logger
        return try await transaction { connection in
            guard try await !connection.query("SELECT 1 FROM mailbox WHERE id = \(bytea(id.bytes)) FOR UPDATE", logger: logger).collect().isEmpty else {
                return false
            }
            try await connection.query("DELETE FROM envelope WHERE mailbox = \(bytea(id.bytes))", logger: logger)
            try await connection.query("DELETE FROM mailbox WHERE id = \(bytea(id.bytes))", logger: logger)
            return true
        }
    }

    public func deleteSponsoredMailbox(_ id: MailboxID, sponsor: MailboxID) async throws -> Bool? {
        let logger = self.logger
        return try await transaction { connection in
            guard let row = try await connection.query(
                "SELECT sponsor FROM mailbox WHERE id = \(bytea(id.bytes)) FOR UPDATE", logger: logger).collect().first
            else { return nil }
            guard let current = try row.decode(ByteBuffer?.self), Array(current.readableBytesView) == sponsor.bytes else { return false }
            try await connection.query("DELETE FROM envelope WHERE mailbox = \(bytea(id.bytes))", logger: logger)
            try await connection.query("DELETE FROM mailbox WHERE id = \(bytea(id.bytes))", logger: logger)
            return true
        }
    }

    // MARK: Replay protection

    public func recordNonce(signer: [UInt8], nonce: String, expiresAt: Int64) async throws -> Bool {
        try await rows("""
            INSERT INTO request_nonce (signer, nonce, expires_at) VALUES (\(bytea(signer)), \(nonce), \(expiresAt))
            ON CONFLICT DO NOTHING RETURNING 1
            """).count == 1
    }

    // MARK: Send tokens

    public func addSendToken(_ hash: TokenHash, to mailbox: MailboxID, maximum: Int, now: Int64) async throws -> Bool {
        let logger = self.logger
        let mailboxBytes = bytea(mailbox.bytes), hashBytes = bytea(hash.bytes)
        return try await transaction { connection in
            // The mailbox's row lock makes the count and the insert one step across nodes.
            try await connection.query("SELECT 1 FROM mailbox WHERE id = \(mailboxBytes) FOR UPDATE", logger: logger)
            try await connection.query("""
                INSERT INTO send_token (mailbox, hash, created_at)
                SELECT \(mailboxBytes), \(hashBytes), \(now) WHERE (SELECT count(*) FROM send_token WHERE mailbox = \(mailboxBytes)) < \(Int64(maximum))
                ON CONFLICT DO NOTHING
                """, logger: logger)
            return try await connection.query("SELECT 1 FROM send_token WHERE mailbox = \(mailboxBytes) AND hash = \(hashBytes)",
                                              logger: logger).collect().count == 1
        }
    }

    public func removeSendToken(_ hash: TokenHash, from mailbox: MailboxID) async throws -> Bool {
        // The delete waits for any post holding this token's row (FOR KEY SHARE): once it has
        // returned, no post with the token can still commit.
        try await rows("DELETE FROM send_token WHERE mailbox = \(bytea(mailbox.bytes)) AND hash = \(bytea(hash.bytes)) RETURNING 1").count == 1
    }

    public func sendTokens(of mailbox: MailboxID) async throws -> [TokenHash] {
        let hashes = try await rows("SELECT hash FROM send_token WHERE mailbox = \(bytea(mailbox.bytes)) ORDER BY created_at, hash")
            .map { row in bytes(try row.decode(ByteBuffer.self)) }
        // A plain loop: the same typed-throwing initialiser inside the async map above crashes
        // the Swift 6.3 optimiser (coroutine splitting) in release builds.
        var tokens: [TokenHash] = []
        for hash in hashes { tokens.append(try TokenHash(bytes: hash)) }
        return tokens
    }

    // MARK: Envelopes

    public func storeEnvelope(_ envelope: IncomingEnvelope, sendToken: TokenHash, quota: MailboxQuota) async throws -> StoreOutcome {
        // One statement, so one transaction: see migration "v2: store_envelope function". The
        // mailbox's row lock inside it orders the mailbox's envelopes: sequence numbers are taken
        // in commit order. The notification reaches the other nodes when (and only if) it commits.
        guard let row = try await rows(storeQuery(envelope, sendToken: sendToken, quota: quota)).first else {
            throw PostgresStoreError("errand_store_envelope returned nothing")
        }
        return try Self.outcome(row)
    }

    public func storeEnvelopes(_ posts: [EnvelopePost], quota: MailboxQuota) async throws -> [StoreOutcome?] {
        guard !posts.isEmpty else { return [] }
        // One statement, so one round trip and one transaction: see migration "v3:
        // store_envelopes function" (it locks the batch's mailboxes in one order first).
        let envelopes = posts.map(\.envelope)
        let digests = envelopes.map { SHA256.hash($0.encoded) }
        let leaves: [ByteBuffer]? = auditLog ? zip(envelopes, digests).map { envelope, digest in
            bytea(AuditLeaf(event: .stored, mailbox: envelope.mailbox, envelopeID: envelope.id, envelopeDigest: digest, time: envelope.storedAt).bytes)
        } : nil
        let rows = try await rows("""
            SELECT result_index, result_outcome, result_seq FROM errand_store_envelopes(
                \(envelopes.map { bytea($0.mailbox.bytes) }), \(posts.map { bytea($0.sendToken.bytes) }),
                \(envelopes.map { bytea($0.id.bytes) }), \(envelopes.map { bytea($0.encoded) }), \(digests.map(bytea)),
                \(envelopes.map(\.storedAt)), \(envelopes.map(\.expiresAt)),
                \(Int64(quota.maximumEnvelopes)), \(Int64(quota.maximumBytes)), \(leaves))
            """)
        var outcomes = [StoreOutcome?](repeating: nil, count: posts.count)
        for row in rows {
            let (index, outcome, sequence) = try row.decode((Int32, String, Int64).self)
            guard (1...posts.count).contains(Int(index)) else { throw PostgresStoreError("errand_store_envelopes returned item \(index) of \(posts.count)") }
            if outcome != "not_attempted" { outcomes[Int(index) - 1] = try Self.outcome(outcome, sequence: sequence) }
        }
        return outcomes
    }

    /// The call of `errand_store_envelope` that stores one envelope with its audit leaf.
    private func storeQuery(_ envelope: IncomingEnvelope, sendToken: TokenHash, quota: MailboxQuota) -> PostgresQuery {
        let digest = SHA256.hash(envelope.encoded)
        let leaf = auditLog
            ? bytea(AuditLeaf(event: .stored, mailbox: envelope.mailbox, envelopeID: envelope.id, envelopeDigest: digest, time: envelope.storedAt).bytes)
            : nil
        return """
            SELECT result_outcome, result_seq FROM errand_store_envelope(
                \(bytea(envelope.mailbox.bytes)), \(bytea(sendToken.bytes)), \(bytea(envelope.id.bytes)), \(bytea(envelope.encoded)),
                \(bytea(digest)), \(envelope.storedAt), \(envelope.expiresAt), \(Int64(quota.maximumEnvelopes)), \(Int64(quota.maximumBytes)), \(leaf))
            """
    }

    private static func outcome(_ row: PostgresRow) throws -> StoreOutcome {
        let (outcome, sequence) = try row.decode((String, Int64).self)
        return try Self.outcome(outcome, sequence: sequence)
    }

    private static func outcome(_ outcome: String, sequence: Int64) throws -> StoreOutcome {
        switch outcome {
        case "stored": return .stored(sequence: sequence)
        case "duplicate": return .duplicate(sequence: sequence)
        case "forbidden": return .forbidden
        case "quota_envelopes": return .quotaExceeded(.envelopes)
        case "quota_bytes": return .quotaExceeded(.bytes)
        default: throw PostgresStoreError("errand_store_envelope returned '\(outcome)'")
        }
    }

    public func envelopes(in mailbox: MailboxID, after sequence: Int64, limit: Int) async throws -> [StoredEnvelope] {
        try await rows("""
            SELECT seq, body FROM envelope WHERE mailbox = \(bytea(mailbox.bytes)) AND seq > \(sequence) ORDER BY seq LIMIT \(Int64(limit))
            """).map { row in
            let (sequence, body) = try row.decode((Int64, ByteBuffer).self)
            return StoredEnvelope(sequence: sequence, encoded: bytes(body))
        }
    }

    public func acknowledge(_ ids: [EnvelopeID], in mailbox: MailboxID) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        let now = Int64(Date().timeIntervalSince1970)
        let logger = self.logger
        let auditLog = self.auditLog
        let mailboxBytes = bytea(mailbox.bytes)
        return try await transaction { connection in
            try await connection.query("SELECT 1 FROM mailbox WHERE id = \(mailboxBytes) FOR UPDATE", logger: logger)
            let deleted = try await connection.query("""
                DELETE FROM envelope WHERE mailbox = \(mailboxBytes) AND envelope_id = ANY(\(ids.map { bytea($0.bytes) }))
                RETURNING envelope_id, digest, length(body)
                """, logger: logger).collect()
            guard !deleted.isEmpty else { return 0 }
            var leaves: [ByteBuffer] = []
            var freed: Int64 = 0
            for row in deleted {
                let (id, digest, length) = try row.decode((ByteBuffer, ByteBuffer, Int32).self)
                freed += Int64(length)
                if auditLog, let envelopeID = try? EnvelopeID(bytes: bytes(id)) {
                    leaves.append(bytea(AuditLeaf(event: .delivered, mailbox: mailbox, envelopeID: envelopeID, envelopeDigest: bytes(digest), time: now).bytes))
                }
            }
            try await connection.query("""
                UPDATE mailbox SET envelope_count = envelope_count - \(Int64(deleted.count)), envelope_bytes = envelope_bytes - \(freed)
                WHERE id = \(mailboxBytes)
                """, logger: logger)
            if !leaves.isEmpty { try await Self.appendLeaves(leaves, connection: connection, logger: logger) }
            return deleted.count
        }
    }

    public func expire(now: Int64) async throws -> ExpiryReport {
        var report = ExpiryReport()
        // In chunks (see ``expiryChunkSize``); one node sweeps at a time, and a node that finds
        // the lock taken leaves the rest to the node holding it.
        while true {
            guard let chunk = try await expireChunk(now: now) else { return report }
            report.envelopes += chunk.deleted
            if !chunk.more { break }
        }
        let logger = self.logger
        let envelopes = report.envelopes
        return try await transaction { connection in
            var report = ExpiryReport(envelopes: envelopes)
            report.slots = try await connection.query("DELETE FROM pairing_slot WHERE expires_at <= \(now) RETURNING 1", logger: logger).collect().count
            report.nonces = try await connection.query("DELETE FROM request_nonce WHERE expires_at <= \(now) RETURNING 1", logger: logger).collect().count
            report.invites = try await connection.query("DELETE FROM invite WHERE expires_at <= \(now) RETURNING 1", logger: logger).collect().count
            // Buckets untouched for an hour have long refilled: forgetting them changes nothing.
            try await connection.query("DELETE FROM rate_bucket WHERE updated < extract(epoch FROM clock_timestamp()) - 3600", logger: logger)
            return report
        }
    }

    /// Deletes up to ``expiryChunkSize`` expired envelopes with their audit leaves in one
    /// transaction: how many, and whether there may be more; `nil` when another node is sweeping.
    private func expireChunk(now: Int64) async throws -> (deleted: Int, more: Bool)? {
        let logger = self.logger
        let auditLog = self.auditLog
        return try await transaction { connection in
            let sweeping = try await connection.query(
                "SELECT pg_try_advisory_xact_lock(\(PostgresSchema.LockKey.expiry.rawValue))", logger: logger).collect().first?.decode(Bool.self) ?? false
            guard sweeping else { return nil }
            // Lock the affected mailboxes in one order (as posts lock one each): no deadlock.
            let chosen = try await connection.query("""
                SELECT seq FROM envelope WHERE expires_at <= \(now) ORDER BY seq LIMIT \(Int64(expiryChunkSize))
                """, logger: logger).collect().map { try $0.decode(Int64.self) }
            guard !chosen.isEmpty else { return (0, false) }
            try await connection.query("""
                SELECT 1 FROM mailbox WHERE id IN (SELECT DISTINCT mailbox FROM envelope WHERE seq = ANY(\(chosen))) ORDER BY id FOR UPDATE
                """, logger: logger)
            let expired = try await connection.query("""
                DELETE FROM envelope WHERE seq = ANY(\(chosen)) AND expires_at <= \(now) RETURNING seq, mailbox, envelope_id, digest, length(body)
                """, logger: logger).collect()
            var freed: [[UInt8]: (count: Int64, bytes: Int64)] = [:]
            var leaves: [(Int64, ByteBuffer)] = []
            for row in expired {
                let (sequence, mailbox, id, digest, length) = try row.decode((Int64, ByteBuffer, ByteBuffer, ByteBuffer, Int32).self)
                let mailboxBytes = bytes(mailbox)
                freed[mailboxBytes, default: (0, 0)].count += 1
                freed[mailboxBytes, default: (0, 0)].bytes += Int64(length)
                if auditLog, let mailboxID = try? MailboxID(bytes: mailboxBytes), let envelopeID = try? EnvelopeID(bytes: bytes(id)) {
                    let leaf = AuditLeaf(event: .expired, mailbox: mailboxID, envelopeID: envelopeID, envelopeDigest: bytes(digest), time: now)
                    leaves.append((sequence, bytea(leaf.bytes)))
                }
            }
            for (mailbox, usage) in freed {
                try await connection.query("""
                    UPDATE mailbox SET envelope_count = envelope_count - \(usage.count), envelope_bytes = envelope_bytes - \(usage.bytes)
                    WHERE id = \(bytea(mailbox))
                    """, logger: logger)
            }
            if !leaves.isEmpty {
                try await Self.appendLeaves(leaves.sorted { $0.0 < $1.0 }.map(\.1), connection: connection, logger: logger)
            }
            return (expired.count, chosen.count == expiryChunkSize)
        }
    }

    /// Appends audit leaves in this order (inside the event's transaction).
    private static func appendLeaves(_ leaves: [ByteBuffer], connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("INSERT INTO audit_pending (leaf) SELECT leaf FROM unnest(\(leaves)) WITH ORDINALITY AS t(leaf, n) ORDER BY n",
                                   logger: logger)
    }

    // MARK: Audit log

    public func pendingAuditLeaves(after size: Int64, limit: Int) async throws -> [PendingAuditLeaf] {
        try await rows("SELECT id, leaf FROM audit_pending ORDER BY id LIMIT \(Int64(limit))").map { row in
            let (id, leaf) = try row.decode((Int64, ByteBuffer).self)
            return PendingAuditLeaf(key: id, bytes: bytes(leaf))
        }
    }

    public func auditLeaves(from start: Int64, count: Int) async throws -> [[UInt8]] {
        try await rows("SELECT leaf FROM audit_leaf WHERE idx >= \(start) AND idx < \(start + Int64(count)) ORDER BY idx")
            .map { bytes(try $0.decode(ByteBuffer.self)) }
    }

    public func auditNodes(_ coordinates: [AuditNodeID]) async throws -> [AuditNodeID: [UInt8]] {
        let unique = Array(Set(coordinates))
        guard !unique.isEmpty else { return [:] }
        var found: [AuditNodeID: [UInt8]] = [:]
        let rows = try await rows("""
            SELECT n.level, n.idx, n.hash FROM audit_node n
            JOIN unnest(\(unique.map { Int32($0.level) }), \(unique.map(\.index))) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx
            """)
        for row in rows {
            let (level, index, hash) = try row.decode((Int32, Int64, ByteBuffer).self)
            found[AuditNodeID(level: Int(level), index: index)] = bytes(hash)
        }
        return found
    }

    public func saveAuditIntegration(previousSize: Int64, leaves: [PendingAuditLeaf], nodes: [AuditNodeID: [UInt8]], checkpoint: AuditCheckpoint) async throws {
        let logger = self.logger
        try await transaction { connection in
            // Whoever holds the sequencer lock, two integrations can never both land: they are
            // serialised here and the second finds the log moved on.
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresSchema.LockKey.auditIntegration.rawValue))", logger: logger)
            let latest = try await connection.query("SELECT COALESCE(MAX(size), 0) FROM audit_checkpoint", logger: logger)
                .collect().first?.decode(Int64.self) ?? 0
            guard latest == previousSize else {
                throw AuditLogError("the audit log moved on to \(latest) leaves while \(previousSize) + \(leaves.count) were being integrated")
            }
            if !leaves.isEmpty {
                let moved = try await connection.query("""
                    DELETE FROM audit_pending WHERE id = ANY(\(leaves.map(\.key))) RETURNING id
                    """, logger: logger).collect().count
                guard moved == leaves.count else {
                    throw AuditLogError("\(leaves.count - moved) pending audit leaves were taken by another integration")
                }
                let indices = leaves.indices.map { previousSize + Int64($0) }
                try await connection.query("""
                    INSERT INTO audit_leaf (idx, leaf) SELECT * FROM unnest(\(indices), \(leaves.map { bytea($0.bytes) }))
                    """, logger: logger)
            }
            if !nodes.isEmpty {
                let entries = Array(nodes)
                try await connection.query("""
                    INSERT INTO audit_node (level, idx, hash)
                    SELECT * FROM unnest(\(entries.map { Int32($0.key.level) }), \(entries.map(\.key.index)), \(entries.map { bytea($0.value) }))
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            try await connection.query("""
                INSERT INTO audit_checkpoint (size, note) VALUES (\(checkpoint.size), \(checkpoint.note))
                ON CONFLICT (size) DO UPDATE SET note = EXCLUDED.note
                """, logger: logger)
        }
    }

    public func claimAuditSequencer() async throws -> Bool {
        await sequencer.holds()
    }

    public func latestAuditCheckpoint() async throws -> AuditCheckpoint? {
        try await rows("SELECT size, note FROM audit_checkpoint ORDER BY size DESC LIMIT 1").first.map { row in
            let (size, note) = try row.decode((Int64, String).self)
            return AuditCheckpoint(size: size, note: note)
        }
    }

    public func auditLeafIndex(leafHash: [UInt8]) async throws -> Int64? {
        try await rows("SELECT idx FROM audit_node WHERE level = 0 AND hash = \(bytea(leafHash)) LIMIT 1").first?.decode(Int64.self)
    }

    /// Everything the operator's audit reads, from one snapshot (a REPEATABLE READ transaction).
    func auditSnapshot() async throws -> AuditSnapshot {
        let logger = self.logger
        return try await transaction { connection in
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            var snapshot = AuditSnapshot()
            for try await leaf in try await connection.query("SELECT leaf FROM audit_leaf ORDER BY idx", logger: logger).decode(ByteBuffer.self) {
                snapshot.leaves.append(bytes(leaf))
            }
            for try await (index, hash) in try await connection.query(
                "SELECT idx, hash FROM audit_node WHERE level = 0 ORDER BY idx", logger: logger).decode((Int64, ByteBuffer).self) {
                snapshot.leafNodes.append((Int(index), bytes(hash)))
            }
            if let row = try await connection.query("SELECT size, note FROM audit_checkpoint ORDER BY size DESC LIMIT 1", logger: logger).collect().first {
                let (size, note) = try row.decode((Int64, String).self)
                snapshot.checkpoint = AuditCheckpoint(size: size, note: note)
            }
            for try await (sequence, id, body) in try await connection.query(
                "SELECT seq, envelope_id, body FROM envelope ORDER BY seq", logger: logger).decode((Int64, ByteBuffer, ByteBuffer).self) {
                snapshot.envelopes.append((sequence, bytes(id), bytes(body)))
            }
            return snapshot
        }
    }

    /// Records the audit log's verifier key on first start; every later node must sign with the
    /// same key, or one log would carry checkpoints under two keys.
    /// - Parameters:
    ///   - dataDirectory: this node's data folder, named in the refusal's hint.
    ///   - createdNow: this start created the key (the node had none).
    /// - Throws: ``RelayStartupError`` when this node's key is not the one already recorded.
    public func pinAuditVerifierKey(_ verifierKey: String, dataDirectory: String, createdNow: Bool) async throws {
        let recorded = try await rows("""
            WITH added AS (
                INSERT INTO relay_setting (name, value) VALUES ('audit_verifier_key', \(verifierKey)) ON CONFLICT (name) DO NOTHING RETURNING value
            )
            SELECT value FROM added UNION ALL SELECT value FROM relay_setting WHERE name = 'audit_verifier_key'
            """).first?.decode(String.self)
        guard recorded == verifierKey else {
            let problem = createdNow
                ? "\(dataDirectory) has no \(AuditLog.keyFileName), and the relay nodes already on this database sign their log with \(recorded ?? "another key")"
                : "this node's audit key (\(verifierKey)) is not the one the relay nodes already on this database sign with (\(recorded ?? "none"))"
            throw RelayStartupError(problem, hint: AuditKeyTransfer.copyHint(dataDirectory: dataDirectory, replace: !createdNow))
        }
    }

    // MARK: Several nodes

    /// Several nodes commit here: no one node sees every commit in order.
    public func publishArrivals(to listener: @escaping @Sendable (ArrivalEvent) -> Void) -> Bool { false }

    public func watchArrivals(_ arrived: @escaping @Sendable (MailboxID?) -> Void) async throws {
        var attempt = 0
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(configuration: location.connectionConfiguration(), id: 1, logger: logger)
                attempt = 0
                do {
                    try await connection.listen(on: PostgresSchema.arrivalChannel) { notifications in
                        // Anything may have arrived while nobody listened: wake every connection once.
                        arrived(nil)
                        for try await notification in notifications {
                            if let id = try? ByteEncoding.bytes(hex: notification.payload), let mailbox = try? MailboxID(bytes: id) { arrived(mailbox) }
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                logger.warning("lost the PostgreSQL arrival listener; reconnecting", metadata: ["error": "\(PostgresProblem.describe(error))"])
            }
            attempt += 1
            try? await Task.sleep(for: .milliseconds(min(5_000, 100 << min(attempt, 6))))
        }
    }

    public var sharesRateLimits: Bool { true }

    public func takeRateToken(_ key: [UInt8], rate: Double, burst: Double, cost: Double) async throws -> Int? {
        // One statement: refill by the time since the last use (the database's clock, so nodes'
        // clocks do not matter), then take a token if there is one.
        let row = try await rows("""
            WITH now AS (SELECT extract(epoch FROM clock_timestamp())::double precision AS t)
            INSERT INTO rate_bucket AS b (key, tokens, updated, allowed)
            SELECT \(bytea(key)), \(burst) - \(cost), now.t, true FROM now
            ON CONFLICT (key) DO UPDATE SET
                tokens = LEAST(\(burst), b.tokens + GREATEST(0, EXCLUDED.updated - b.updated) * \(rate))
                         - CASE WHEN LEAST(\(burst), b.tokens + GREATEST(0, EXCLUDED.updated - b.updated) * \(rate)) >= 1 THEN \(cost) ELSE 0 END,
                allowed = LEAST(\(burst), b.tokens + GREATEST(0, EXCLUDED.updated - b.updated) * \(rate)) >= 1,
                updated = EXCLUDED.updated
            RETURNING allowed, tokens
            """).first
        guard let row else { return nil }
        let (allowed, tokens) = try row.decode((Bool, Double).self)
        if allowed { return nil }
        return max(1, Int(((1 - tokens) / rate).rounded(.up)))
    }

    // MARK: Pairing slots

    public func createSlot(_ slot: PairingSlotID, owner: MailboxID, expiresAt: Int64, maximumOpen: Int, now: Int64) async throws -> SlotCreation {
        let logger = self.logger
        return try await transaction { connection in
            // The owner's row lock makes the count hold against concurrent openings on any node.
            try await connection.query("SELECT 1 FROM mailbox WHERE id = \(bytea(owner.bytes)) FOR UPDATE", logger: logger)
            let open = try await connection.query(
                "SELECT count(*) FROM pairing_slot WHERE owner = \(bytea(owner.bytes)) AND expires_at > \(now)", logger: logger)
                .collect().first?.decode(Int64.self) ?? 0
            let inserted = try await connection.query("""
                INSERT INTO pairing_slot (id, owner, expires_at)
                SELECT \(bytea(slot.bytes)), \(bytea(owner.bytes)), \(expiresAt) WHERE \(open) < \(Int64(maximumOpen))
                ON CONFLICT (id) DO NOTHING RETURNING 1
                """, logger: logger).collect()
            if !inserted.isEmpty { return .created }
            return open >= Int64(maximumOpen) ? .tooMany : .exists
        }
    }

    public func putSlotRequest(_ slot: PairingSlotID, request: [UInt8], claim: TokenHash, now: Int64) async throws -> SlotWrite {
        let updated = try await rows("""
            UPDATE pairing_slot SET request = \(bytea(request)), claim = \(bytea(claim.bytes))
            WHERE id = \(bytea(slot.bytes)) AND expires_at > \(now) AND request IS NULL RETURNING 1
            """)
        if updated.count == 1 { return .accepted }
        let open = try await rows("SELECT 1 FROM pairing_slot WHERE id = \(bytea(slot.bytes)) AND expires_at > \(now)")
        return open.isEmpty ? .notFound : .alreadyUsed
    }

    public func slotRequest(_ slot: PairingSlotID, owner: MailboxID, now: Int64) async throws -> SlotRead {
        guard let row = try await rows("""
            SELECT request FROM pairing_slot WHERE id = \(bytea(slot.bytes)) AND owner = \(bytea(owner.bytes)) AND expires_at > \(now)
            """).first else { return .notFound }
        guard let request = try row.decode(ByteBuffer?.self) else { return .empty }
        return .value(bytes(request))
    }

    public func putSlotPart(_ part: SlotHostPart, _ slot: PairingSlotID, owner: MailboxID, bytes: [UInt8], now: Int64) async throws -> SlotWrite {
        let column = part.rawValue  // a fixed column name, never input
        let updated = try await rows("""
            UPDATE pairing_slot SET \(unescaped: column) = \(bytea(bytes))
            WHERE id = \(bytea(slot.bytes)) AND owner = \(bytea(owner.bytes)) AND expires_at > \(now)
              AND request IS NOT NULL AND \(unescaped: column) IS NULL RETURNING 1
            """)
        if updated.count == 1 { return .accepted }
        guard let row = try await rows("""
            SELECT request IS NOT NULL, \(unescaped: column) IS NOT NULL FROM pairing_slot
            WHERE id = \(bytea(slot.bytes)) AND owner = \(bytea(owner.bytes)) AND expires_at > \(now)
            """).first else { return .notFound }
        let (requested, written) = try row.decode((Bool, Bool).self)
        guard requested else { return .notFound }
        return written ? .alreadyUsed : .notFound
    }

    public func slotReceipt(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead {
        guard let row = try await rows("""
            SELECT claim, receipt FROM pairing_slot WHERE id = \(bytea(slot.bytes)) AND expires_at > \(now)
            """).first else { return .notFound }
        let (storedClaim, receipt) = try row.decode((ByteBuffer?, ByteBuffer?).self)
        guard let storedClaim, ConstantTime.equals(bytes(storedClaim), claim.bytes) else { return .forbidden }
        guard let receipt else { return .empty }
        return .value(bytes(receipt))
    }

    public func takeSlotReply(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead {
        let logger = self.logger
        return try await transaction { connection in
            guard let row = try await connection.query("""
                SELECT claim, reply FROM pairing_slot WHERE id = \(bytea(slot.bytes)) AND expires_at > \(now) FOR UPDATE
                """, logger: logger).collect().first else { return .notFound }
            let (storedClaim, reply) = try row.decode((ByteBuffer?, ByteBuffer?).self)
            guard let storedClaim, ConstantTime.equals(bytes(storedClaim), claim.bytes) else { return .forbidden }
            guard let reply else { return .empty }
            // Delivered: the slot has done its job and vanishes.
            try await connection.query("DELETE FROM pairing_slot WHERE id = \(bytea(slot.bytes))", logger: logger)
            return .value(bytes(reply))
        }
    }

    public func deleteSlot(_ slot: PairingSlotID, owner: MailboxID) async throws -> Bool {
        try await rows("DELETE FROM pairing_slot WHERE id = \(bytea(slot.bytes)) AND owner = \(bytea(owner.bytes)) RETURNING 1").count == 1
    }

    // MARK: Operations

    public func statistics() async throws -> StoreStatistics {
        guard let row = try await rows("""
            SELECT (SELECT count(*) FROM mailbox),
                   (SELECT coalesce(sum(envelope_count), 0)::bigint FROM mailbox),
                   (SELECT coalesce(sum(envelope_bytes), 0)::bigint FROM mailbox),
                   (SELECT count(*) FROM pairing_slot)
            """).first else { return StoreStatistics(mailboxes: 0, envelopes: 0, envelopeBytes: 0, slots: 0) }
        let (mailboxes, envelopes, size, slots) = try row.decode((Int64, Int64, Int64, Int64).self)
        return StoreStatistics(mailboxes: Int(mailboxes), envelopes: Int(envelopes), envelopeBytes: Int(size), slots: Int(slots))
    }

    public func close() async throws {
        await sequencer.release()
        runner.cancel()
        _ = await runner.value
    }
}

/// A session-level advisory lock held on a connection of its own: PostgreSQL releases it when
/// the connection ends, so when the node holding it dies another node takes it over.
actor PostgresSessionLock {
    let location: PostgresLocation
    let key: Int64
    let logger: Logger
    private var connection: PostgresConnection?
    private var held = false

    init(location: PostgresLocation, key: Int64, logger: Logger) {
        self.location = location
        self.key = key
        self.logger = logger
    }

    /// Whether this node holds the lock, trying to take it if not.
    func holds() async -> Bool {
        if let connection, connection.isClosed {
            self.connection = nil
            held = false
        }
        if held { return true }
        do {
            if connection == nil {
                connection = try await PostgresConnection.connect(configuration: location.connectionConfiguration(), id: 2, logger: logger)
            }
            guard let connection else { return false }
            held = try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger).collect().first?.decode(Bool.self) ?? false
            if held { logger.info("this node now integrates the audit log") }
        } catch {
            logger.warning("cannot reach PostgreSQL for the audit sequencer lock", metadata: ["error": "\(PostgresProblem.describe(error))"])
            try? await connection?.close()
            connection = nil
            held = false
        }
        return held
    }

    /// Gives the lock up (closing its connection).
    func release() async {
        try? await connection?.close()
        connection = nil
        held = false
    }
}

/// The database answered something the store does not expect (a schema from another version?).
struct PostgresStoreError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// PostgreSQL errors in words: the server's message and SQLSTATE, or the connection problem —
/// never the query's parameters.
enum PostgresProblem {
    static func describe(_ error: any Error) -> String {
        if let transaction = error as? PostgresTransactionError {
            return describe(transaction.closureError ?? transaction.beginError ?? transaction.commitError ?? transaction.rollbackError ?? error)
        }
        guard let error = error as? PSQLError else { return "\(error)" }
        if let server = error.serverInfo {
            let message = server[.message] ?? "error"
            let state = server[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

/// bytea parameters: `[UInt8]` on its own would be sent as PostgreSQL's `char[]`.
@inline(__always) func bytea(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

@inline(__always) func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }
