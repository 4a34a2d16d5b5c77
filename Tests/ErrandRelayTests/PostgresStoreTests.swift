import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandTestSupport
import ErrandTransparency
import Foundation
import Logging
import Synchronization
import Testing

/// What only a store shared by several relay nodes must do: two `PostgresRelayStore`s on one
/// database stand for two nodes.
@Suite("PostgreSQL store shared by several nodes",
       .enabled(if: TestPostgres.unavailableReason == nil, "needs the PostgreSQL server scripts/test starts (ERRAND_TEST_POSTGRES_URL)"))
struct PostgresStoreTests {
    static let roomy = MailboxQuota(maximumEnvelopes: 100_000, maximumBytes: 100_000_000)

    /// Two nodes on a fresh database.
    func withNodes(_ body: (PostgresRelayStore, PostgresRelayStore, String) async throws -> Void) async throws {
        let url = try await TestPostgres.freshDatabase()
        var logger = Logger(label: "test-postgres")
        logger.logLevel = .error
        let first = try await PostgresRelayStore.open(PostgresLocation(url: url), logger: logger)
        let second = try await PostgresRelayStore.open(PostgresLocation(url: url), logger: logger)
        do {
            try await body(first, second, url)
        } catch {
            try? await first.close()
            try? await second.close()
            await TestPostgres.drop(url)
            throw error
        }
        try await first.close()
        try await second.close()
        await TestPostgres.drop(url)
    }

    func post(_ store: any RelayStore, _ mailbox: MailboxID, _ token: SendToken, expiresAt: Int64 = 10_000) async throws -> Envelope {
        let envelope = sampleEnvelope(size: 64)
        let outcome = try await store.storeEnvelope(
            IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: 100, expiresAt: expiresAt),
            sendToken: token.hash, quota: Self.roomy)
        guard case .stored = outcome else { throw TestSupportError("not stored: \(outcome)") }
        return envelope
    }

    @Test("A reader's cursor never skips an envelope, however posts through two nodes interleave")
    func cursorSeesEveryEnvelope() async throws {
        try await withNodes { first, second, _ in
            let (mailbox, token) = try await makeMailbox(first)
            enum Report: Sendable { case posted([EnvelopeID]), seen([EnvelopeID]) }
            let reports = try await withThrowingTaskGroup(of: Report.self) { group in
                for writer in 0..<8 {
                    let store = writer % 2 == 0 ? first : second
                    group.addTask {
                        var ids: [EnvelopeID] = []
                        for _ in 0..<50 { ids.append(try await post(store, mailbox, token).id) }
                        return .posted(ids)
                    }
                }
                // Follows the mailbox by cursor while the writers run, as a live connection does.
                group.addTask {
                    var cursor: Int64 = 0
                    var ids: [EnvelopeID] = []
                    let deadline = Date().addingTimeInterval(60)
                    while ids.count < 400, Date() < deadline {
                        let page = try await second.envelopes(in: mailbox, after: cursor, limit: 7)
                        for stored in page { ids.append(try Envelope(parsing: stored.encoded).id) }
                        cursor = page.last?.sequence ?? cursor
                        if page.isEmpty { try await Task.sleep(for: .milliseconds(2)) }
                    }
                    return .seen(ids)
                }
                return try await group.reduce(into: [Report]()) { $0.append($1) }
            }
            var posted = Set<EnvelopeID>()
            var seen: [EnvelopeID] = []
            for report in reports {
                switch report {
                case .posted(let ids): posted.formUnion(ids)
                case .seen(let ids): seen += ids
                }
            }
            #expect(seen.count == 400)
            #expect(posted.subtracting(seen).count == 0, "envelopes a cursor skipped")
        }
    }

    @Test("Batches naming the same mailboxes in opposite orders, through two nodes at once, never deadlock")
    func batchesDoNotDeadlock() async throws {
        try await withNodes { first, second, _ in
            let (a, tokenA) = try await makeMailbox(first)
            let (b, tokenB) = try await makeMailbox(first)
            func batch(_ order: [(MailboxID, SendToken)]) -> [EnvelopePost] {
                order.map { mailbox, token in
                    let envelope = sampleEnvelope(size: 64)
                    return EnvelopePost(IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: 100, expiresAt: 10_000),
                                        sendToken: token.hash)
                }
            }
            // Without the batch's up-front locks in one order, these transactions lock A then B
            // and B then A, and PostgreSQL aborts one of them as a deadlock.
            let stored = try await withThrowingTaskGroup(of: Int.self) { group in
                for worker in 0..<4 {
                    let store = worker % 2 == 0 ? first : second
                    let order = worker % 2 == 0 ? [(a, tokenA), (b, tokenB)] : [(b, tokenB), (a, tokenA)]
                    group.addTask {
                        var stored = 0
                        for _ in 0..<25 {
                            let outcomes = try await store.storeEnvelopes(batch(order + order), quota: Self.roomy)
                            stored += outcomes.count { if case .stored? = $0 { true } else { false } }
                        }
                        return stored
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(stored == 4 * 25 * 4)
            #expect(try await first.envelopes(in: a, after: 0, limit: 1000).count == 200)
        }
    }

    @Test("An envelope stored through one node wakes the other node's listeners")
    func arrivalsCrossNodes() async throws {
        try await withNodes { first, second, _ in
            let (mailbox, token) = try await makeMailbox(first)
            let heard = Heard()
            let watcher = Task { try await second.watchArrivals { heard.add($0) } }
            defer { watcher.cancel() }
            // The first call (nil) says the listener is in place.
            #expect(try await heard.wait { $0.contains(nil) })
            _ = try await post(first, mailbox, token)
            #expect(try await heard.wait { $0.contains(mailbox) })
        }
    }

    @Test("One node at a time integrates the audit log, and another takes over when it goes")
    func sequencerFailover() async throws {
        try await withNodes { first, second, _ in
            #expect(try await first.claimAuditSequencer())
            #expect(try await !second.claimAuditSequencer())
            #expect(try await first.claimAuditSequencer())
            try await first.close()
            var tookOver = false
            for _ in 0..<50 where !tookOver {
                tookOver = try await second.claimAuditSequencer()
                if !tookOver { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(tookOver)
        }
    }

    @Test("Integrations racing from two nodes give one tree: the loser changes nothing")
    func integrationsRace() async throws {
        try await withNodes { first, second, _ in
            let signer = try NoteSigner(name: "errand-relay/test", secretKey: Ed25519.SecretKey())
            let logs = [AuditLog(store: first, signer: signer), AuditLog(store: second, signer: signer)]
            let (mailbox, token) = try await makeMailbox(first)
            var rounds = 0
            var posted = 0
            while rounds < 6 {
                for index in 0..<40 { _ = try await post(index % 2 == 0 ? first : second, mailbox, token); posted += 1 }
                // Both integrate at once, skipping the sequencer lock: only the store's check stops the second.
                await withTaskGroup(of: Void.self) { group in
                    for log in logs { group.addTask { _ = try? await log.integrate() } }
                }
                rounds += 1
            }
            _ = try await logs[0].integrate()
            let checkpoint = try #require(try await first.latestAuditCheckpoint())
            #expect(checkpoint.size == Int64(posted))
            let parsed = try Checkpoint(text: SignedNote(parsing: checkpoint.note).text)
            var tree = MerkleTree()
            let leaves = try await second.auditLeaves(from: 0, count: posted + 10)
            #expect(leaves.count == posted)
            for leaf in leaves { tree.append(leafHash: MerkleHash.leaf(leaf)) }
            #expect(tree.root(size: posted) == parsed.rootHash)
            #expect(try await first.pendingAuditLeaves(after: checkpoint.size, limit: 10).isEmpty)
            // A stale integration is refused and changes nothing.
            _ = try await post(first, mailbox, token)
            let pending = try await first.pendingAuditLeaves(after: 0, limit: 10)
            await #expect(throws: AuditLogError.self) {
                try await second.saveAuditIntegration(previousSize: checkpoint.size - 1, leaves: pending, nodes: [:], checkpoint: AuditCheckpoint(size: 1, note: "forged"))
            }
            #expect(try await first.latestAuditCheckpoint() == checkpoint)
            #expect(try await first.pendingAuditLeaves(after: checkpoint.size, limit: 10) == pending)
        }
    }

    @Test("Expiry through two nodes at once deletes and logs each envelope once")
    func expiryOnce() async throws {
        try await withNodes { first, second, _ in
            let (mailbox, token) = try await makeMailbox(first)
            for _ in 0..<30 { _ = try await post(first, mailbox, token, expiresAt: 150) }
            let reports = try await withThrowingTaskGroup(of: ExpiryReport.self) { group in
                for _ in 0..<3 {
                    group.addTask { try await first.expire(now: 200) }
                    group.addTask { try await second.expire(now: 200) }
                }
                return try await group.reduce(into: [ExpiryReport]()) { $0.append($1) }
            }
            #expect(reports.map(\.envelopes).reduce(0, +) == 30)
            let leaves = try await first.pendingAuditLeaves(after: 0, limit: 1000).map { try AuditLeaf(bytes: $0.bytes) }
            #expect(leaves.filter { $0.event == .expired }.count == 30)
            #expect(leaves.filter { $0.event == .stored }.count == 30)
            let statistics = try await second.statistics()
            #expect(statistics.envelopes == 0 && statistics.envelopeBytes == 0)
        }
    }

    @Test("Rate limits are one bucket across nodes")
    func sharedRateLimits() async throws {
        try await withNodes { first, second, _ in
            let key = Array("client".utf8)
            // One token per 100 s: a loaded machine cannot refill the bucket between the calls.
            #expect(try await first.takeRateToken(key, rate: 0.01, burst: 3, cost: 1) == nil)
            #expect(try await second.takeRateToken(key, rate: 0.01, burst: 3, cost: 1) == nil)
            #expect(try await first.takeRateToken(key, rate: 0.01, burst: 3, cost: 1) == nil)
            let wait = try #require(try await second.takeRateToken(key, rate: 0.01, burst: 3, cost: 1))
            #expect(wait >= 1 && wait <= 100)
            #expect(try await second.takeRateToken(Array("someone else".utf8), rate: 0.01, burst: 3, cost: 1) == nil)
            // A request worth 10 passes while a token is left, and the debt makes the next one wait.
            let batch = Array("batch".utf8)
            #expect(try await first.takeRateToken(batch, rate: 0.01, burst: 3, cost: 10) == nil)
            let debt = try #require(try await second.takeRateToken(batch, rate: 0.01, burst: 3, cost: 1))
            #expect(debt > 100)
        }
    }

    @Test("Every node must sign the audit log with the same key")
    func verifierKeyPinned() async throws {
        try await withNodes { first, second, _ in
            try await first.pinAuditVerifierKey("errand-relay/a+00000000+AAAA", dataDirectory: "/nowhere", createdNow: false)
            try await second.pinAuditVerifierKey("errand-relay/a+00000000+AAAA", dataDirectory: "/nowhere", createdNow: false)
            await #expect(throws: RelayStartupError.self) { try await second.pinAuditVerifierKey("errand-relay/b+11111111+BBBB", dataDirectory: "/nowhere", createdNow: false) }
        }
    }

    @Test("A wrong PostgreSQL address fails with a message that names it, without the password")
    func unreachable() async throws {
        let error = await #expect(throws: RelayStartupError.self) {
            _ = try await PostgresRelayStore.open(PostgresLocation(url: "postgres://errand:hunter2@127.0.0.1:1/errand?sslmode=disable"),
                                                  logger: Logger(label: "test"))
        }
        let text = error?.description ?? ""
        #expect(text.contains("postgres://errand@127.0.0.1:1/errand"))
        #expect(!text.contains("hunter2"))
    }
}

/// What a watcher heard, for polling with a deadline.
final class Heard: Sendable {
    private let mailboxes = Mutex<[MailboxID?]>([])

    func add(_ mailbox: MailboxID?) { mailboxes.withLock { $0.append(mailbox) } }

    /// Whether `condition` holds within 5 s.
    func wait(_ condition: ([MailboxID?]) -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if mailboxes.withLock({ condition($0) }) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}
