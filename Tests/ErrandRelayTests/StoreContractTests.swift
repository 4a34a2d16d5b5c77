import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandTestSupport
import Foundation
import Logging
import Testing

/// The contract every ``RelayStore`` must keep. Each test runs against every store factory:
/// SQLite in a scratch folder, and PostgreSQL in a fresh database on the server `scripts/test`
/// starts (left out, with the reason printed, when there is none).
@Suite("Relay store contract")
struct StoreContractTests {
    struct Factory: Sendable, CustomTestStringConvertible {
        let name: String
        let make: @Sendable (ScratchFolder) async throws -> (store: any RelayStore, cleanUp: @Sendable () async -> Void)
        var testDescription: String { name }
    }

    static let factories: [Factory] = {
        var factories = [Factory(name: "SQLite") { folder in (try SQLiteRelayStore(directory: folder.path), {}) }]
        if let reason = TestPostgres.unavailableReason {
            print("PostgreSQL store contract tests skipped: \(reason)")
        } else {
            factories.append(Factory(name: "PostgreSQL") { _ in
                let url = try await TestPostgres.freshDatabase()
                var logger = Logger(label: "test-postgres")
                logger.logLevel = .warning
                let store = try await PostgresRelayStore.open(PostgresLocation(url: url), logger: logger)
                return (store, { await TestPostgres.drop(url) })
            })
        }
        return factories
    }()

    static let quota = MailboxQuota(maximumEnvelopes: 3, maximumBytes: 10_000)

    func withStore(_ factory: Factory, _ body: (any RelayStore) async throws -> Void) async throws {
        let folder = try ScratchFolder()
        let (store, cleanUp) = try await factory.make(folder)
        do {
            try await body(store)
            try await store.close()
            await cleanUp()
        } catch {
            try? await store.close()
            await cleanUp()
            throw error
        }
    }

    func incoming(_ mailbox: MailboxID, _ envelope: Envelope = sampleEnvelope(), now: Int64 = 100, ttl: Int64 = 1000) -> IncomingEnvelope {
        IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: now, expiresAt: now + ttl)
    }

    @Test("Invites are used once and expire", arguments: factories)
    func invites(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let hash = TokenHash(of: SecretBytes.random(count: 32))
            try await store.addInvite(hash, expiresAt: 200)
            #expect(try await store.consumeInvite(hash, now: 100))
            #expect(try await !store.consumeInvite(hash, now: 100))
            let late = TokenHash(of: SecretBytes.random(count: 32))
            try await store.addInvite(late, expiresAt: 200)
            #expect(try await !store.consumeInvite(late, now: 200))
            #expect(try await !store.consumeInvite(TokenHash(of: SecretBytes.random(count: 32)), now: 100))
        }
    }

    @Test("Mailboxes: create once, sponsor rules, delete cascades", arguments: factories)
    func mailboxes(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (host, token) = try await makeMailbox(store)
            func create(sponsor: MailboxID?, limit: Int = 2) async throws -> (MailboxID, MailboxCreation) {
                let key = Ed25519.SecretKey()
                let id = MailboxID(owner: key.publicKey)
                return (id, try await store.createMailbox(id, ownerKey: key.publicKey.bytes, sponsor: sponsor, maximumSponsored: limit, now: 1))
            }
            let (device, created) = try await create(sponsor: host)
            #expect(created == .created)
            #expect(try await store.createMailbox(device, ownerKey: [], sponsor: host, maximumSponsored: 2, now: 1) == .existed)
            // A device cannot sponsor; an unknown sponsor cannot either; the limit holds.
            #expect(try await create(sponsor: device).1 == .sponsorIsDevice)
            #expect(try await create(sponsor: MailboxID(owner: Ed25519.SecretKey().publicKey)).1 == .sponsorUnknown)
            #expect(try await create(sponsor: host).1 == .created)
            #expect(try await create(sponsor: host).1 == .sponsorLimitReached)
            // Concurrent creations cannot overshoot the limit.
            let (busyHost, _) = try await makeMailbox(store)
            let outcomes = try await withThrowingTaskGroup(of: MailboxCreation.self) { group in
                for _ in 0..<20 { group.addTask { try await create(sponsor: busyHost, limit: 5).1 } }
                return try await group.reduce(into: [MailboxCreation]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .created }.count == 5)
            // Only its sponsor deletes a device's mailbox, which frees a place.
            #expect(try await store.deleteSponsoredMailbox(device, sponsor: busyHost) == false)
            #expect(try await store.deleteSponsoredMailbox(host, sponsor: host) == false)
            #expect(try await store.mailboxExists(device))
            #expect(try await store.deleteSponsoredMailbox(device, sponsor: host) == true)
            #expect(try await !store.mailboxExists(device))
            #expect(try await store.deleteSponsoredMailbox(device, sponsor: host) == nil)
            #expect(try await create(sponsor: host).1 == .created)
            guard case .stored = try await store.storeEnvelope(incoming(host), sendToken: token.hash, quota: Self.quota) else {
                Issue.record("expected the envelope to be stored"); return
            }
            #expect(try await store.deleteMailbox(host))
            #expect(try await !store.mailboxExists(host))
            #expect(try await store.envelopes(in: host, after: 0, limit: 10).isEmpty)
            #expect(try await store.sendTokens(of: host).isEmpty)
            #expect(try await !store.deleteMailbox(host))
        }
    }

    @Test("A nonce is accepted once per signer", arguments: factories)
    func nonces(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let alice: [UInt8] = [1]
            let bob: [UInt8] = [2]
            let first = try await store.recordNonce(signer: alice, nonce: "n1", expiresAt: 200)
            let replay = try await store.recordNonce(signer: alice, nonce: "n1", expiresAt: 200)
            let otherSigner = try await store.recordNonce(signer: bob, nonce: "n1", expiresAt: 200)
            #expect(first && !replay && otherSigner)
            #expect(try await store.expire(now: 200).nonces == 2)
            let afterExpiry = try await store.recordNonce(signer: alice, nonce: "n1", expiresAt: 400)
            #expect(afterExpiry)
        }
    }

    @Test("Envelopes: token checked, idempotent by id, ordered, acknowledged, quota kept", arguments: factories)
    func envelopes(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (mailbox, token) = try await makeMailbox(store)
            let first = sampleEnvelope()
            let firstOutcome = try await store.storeEnvelope(incoming(mailbox, first), sendToken: token.hash, quota: Self.quota)
            guard case .stored(let firstSequence) = firstOutcome else { Issue.record("not stored: \(firstOutcome)"); return }
            // The same id again is a duplicate with the same sequence; nothing changes.
            #expect(try await store.storeEnvelope(incoming(mailbox, first), sendToken: token.hash, quota: Self.quota) == .duplicate(sequence: firstSequence))
            // Unknown and revoked tokens are refused.
            #expect(try await store.storeEnvelope(incoming(mailbox), sendToken: SendToken().hash, quota: Self.quota) == .forbidden)
            let second = sampleEnvelope(size: 300)
            #expect(try await store.storeEnvelope(incoming(mailbox, second), sendToken: token.hash, quota: Self.quota) != .forbidden)
            let third = sampleEnvelope()
            _ = try await store.storeEnvelope(incoming(mailbox, third), sendToken: token.hash, quota: Self.quota)
            // Count quota: three stored, a fourth is refused; a duplicate of a stored one is still fine.
            #expect(try await store.storeEnvelope(incoming(mailbox), sendToken: token.hash, quota: Self.quota) == .quotaExceeded(.envelopes))
            #expect(try await store.storeEnvelope(incoming(mailbox, third), sendToken: token.hash, quota: Self.quota) != .quotaExceeded(.envelopes))

            let all = try await store.envelopes(in: mailbox, after: 0, limit: 10)
            #expect(all.map(\.encoded) == [first.encoded, second.encoded, third.encoded])
            #expect(all.map(\.sequence) == all.map(\.sequence).sorted())
            #expect(try await store.envelopes(in: mailbox, after: all[0].sequence, limit: 1).map(\.encoded) == [second.encoded])

            // Unknown and repeated ids are skipped, wherever they are in the list.
            #expect(try await store.acknowledge([EnvelopeID.random(), second.id, first.id, second.id], in: mailbox) == 2)
            #expect(try await store.envelopes(in: mailbox, after: 0, limit: 10).map(\.encoded) == [third.encoded])
            var statistics = try await store.statistics()
            #expect(statistics.envelopes == 1)
            #expect(statistics.envelopeBytes == third.encoded.count)

            // Byte quota.
            let tight = MailboxQuota(maximumEnvelopes: 100, maximumBytes: third.encoded.count + 100)
            #expect(try await store.storeEnvelope(incoming(mailbox, sampleEnvelope(size: 200)), sendToken: token.hash, quota: tight) == .quotaExceeded(.bytes))

            // Revocation takes effect for the next post.
            #expect(try await store.removeSendToken(token.hash, from: mailbox))
            #expect(try await store.storeEnvelope(incoming(mailbox), sendToken: token.hash, quota: Self.quota) == .forbidden)
            #expect(try await !store.removeSendToken(token.hash, from: mailbox))

            // Expiry.
            #expect(try await store.expire(now: 100 + 1000).envelopes == 1)
            statistics = try await store.statistics()
            #expect(statistics.envelopes == 0 && statistics.envelopeBytes == 0)
        }
    }

    @Test("A batch stores in order, skips a mailbox after its first refusal, and leaves other mailboxes alone", arguments: factories)
    func batches(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (a, tokenA) = try await makeMailbox(store)
            let (b, tokenB) = try await makeMailbox(store)
            let (c, tokenC) = try await makeMailbox(store)
            let stored = sampleEnvelope()
            _ = try await store.storeEnvelope(incoming(a, stored), sendToken: tokenA.hash, quota: Self.quota)
            let a1 = sampleEnvelope(), a2 = sampleEnvelope(), a3 = sampleEnvelope()
            let b1 = sampleEnvelope(), b2 = sampleEnvelope()
            let c1 = sampleEnvelope(), c2 = sampleEnvelope()
            let posts = [
                EnvelopePost(incoming(a, a1), sendToken: tokenA.hash),
                EnvelopePost(incoming(b, b1), sendToken: SendToken().hash),   // refused: not b's token
                EnvelopePost(incoming(a, stored), sendToken: tokenA.hash),    // a retry: duplicate
                EnvelopePost(incoming(b, b2), sendToken: tokenB.hash),        // after b's refusal: not attempted
                EnvelopePost(incoming(c, c1), sendToken: tokenC.hash),
                EnvelopePost(incoming(a, a2), sendToken: tokenA.hash),        // a's third: fills the quota of 3
                EnvelopePost(incoming(a, a3), sendToken: tokenA.hash),        // over quota
                EnvelopePost(incoming(c, c2), sendToken: tokenC.hash),
            ]
            let outcomes = try await store.storeEnvelopes(posts, quota: Self.quota)
            #expect(outcomes.count == posts.count)
            guard case .stored(let a1Sequence)? = outcomes[0], case .duplicate? = outcomes[2], case .stored(let c1Sequence)? = outcomes[4],
                  case .stored(let a2Sequence)? = outcomes[5], case .stored(let c2Sequence)? = outcomes[7] else {
                Issue.record("unexpected outcomes: \(outcomes)")
                return
            }
            #expect(outcomes[1] == .forbidden)
            #expect(outcomes[3] == nil)
            #expect(outcomes[6] == .quotaExceeded(.envelopes))
            #expect(a1Sequence < c1Sequence && c1Sequence < a2Sequence && a2Sequence < c2Sequence)
            #expect(try await store.envelopes(in: a, after: 0, limit: 10).map(\.encoded) == [stored.encoded, a1.encoded, a2.encoded])
            #expect(try await store.envelopes(in: b, after: 0, limit: 10).isEmpty)
            #expect(try await store.envelopes(in: c, after: 0, limit: 10).map(\.encoded) == [c1.encoded, c2.encoded])
            // Usage follows what was stored, and each stored envelope got its audit leaf.
            #expect(try await store.statistics().envelopes == 5)
            #expect(try await store.pendingAuditLeaves(after: 0, limit: 100).count == 5)
        }
    }

    @Test("Pairing slots take one request, one receipt and one reply, then vanish", arguments: factories)
    func slots(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (host, _) = try await makeMailbox(store)
            let slot = PairingSlotID.random()
            let claim = TokenHash(of: SecretBytes.random(count: 32))
            #expect(try await store.createSlot(slot, owner: host, expiresAt: 400, maximumOpen: 3, now: 100) == .created)
            #expect(try await store.createSlot(slot, owner: host, expiresAt: 400, maximumOpen: 3, now: 100) == .exists)
            #expect(try await store.slotRequest(slot, owner: host, now: 100) == .empty)
            let early: [UInt8] = [1]
            #expect(try await store.putSlotPart(.reply, slot, owner: host, bytes: early, now: 100) == .notFound)
            #expect(try await store.putSlotPart(.receipt, slot, owner: host, bytes: early, now: 100) == .notFound)
            #expect(try await store.slotReceipt(slot, claim: claim, now: 100) == .forbidden, "no request, so no claim yet")
            #expect(try await store.putSlotRequest(slot, request: [7, 7], claim: claim, now: 100) == .accepted)
            // A second party is turned away.
            #expect(try await store.putSlotRequest(slot, request: [6], claim: TokenHash(of: SecretBytes.random(count: 32)), now: 100) == .alreadyUsed)
            #expect(try await store.slotRequest(slot, owner: host, now: 100) == .value([7, 7]))
            let (stranger, _) = try await makeMailbox(store)
            #expect(try await store.slotRequest(slot, owner: stranger, now: 100) == .notFound)
            #expect(try await store.takeSlotReply(slot, claim: claim, now: 100) == .empty)
            // The receipt: once, by the owner only, read with the claim (the slot stays).
            #expect(try await store.slotReceipt(slot, claim: claim, now: 100) == .empty)
            #expect(try await store.putSlotPart(.receipt, slot, owner: stranger, bytes: [8], now: 100) == .notFound)
            #expect(try await store.putSlotPart(.receipt, slot, owner: host, bytes: [8], now: 100) == .accepted)
            #expect(try await store.putSlotPart(.receipt, slot, owner: host, bytes: [5], now: 100) == .alreadyUsed)
            #expect(try await store.slotReceipt(slot, claim: TokenHash(of: SecretBytes.random(count: 32)), now: 100) == .forbidden)
            #expect(try await store.slotReceipt(slot, claim: claim, now: 100) == .value([8]))
            #expect(try await store.slotReceipt(slot, claim: claim, now: 100) == .value([8]))
            #expect(try await store.slotReceipt(slot, claim: claim, now: 400) == .notFound, "expired")
            #expect(try await store.putSlotPart(.reply, slot, owner: host, bytes: [9], now: 100) == .accepted)
            #expect(try await store.putSlotPart(.reply, slot, owner: host, bytes: [9], now: 100) == .alreadyUsed)
            #expect(try await store.takeSlotReply(slot, claim: TokenHash(of: SecretBytes.random(count: 32)), now: 100) == .forbidden)
            #expect(try await store.takeSlotReply(slot, claim: claim, now: 100) == .value([9]))
            #expect(try await store.takeSlotReply(slot, claim: claim, now: 100) == .notFound)
            #expect(try await store.slotReceipt(slot, claim: claim, now: 100) == .notFound, "gone with the slot")

            // Expired slots are gone for everyone, then swept.
            let late = PairingSlotID.random()
            #expect(try await store.createSlot(late, owner: host, expiresAt: 150, maximumOpen: 3, now: 100) == .created)
            #expect(try await store.putSlotRequest(late, request: [1], claim: claim, now: 150) == .notFound)
            #expect(try await store.expire(now: 150).slots == 1)
            let cancelled = PairingSlotID.random()
            #expect(try await store.createSlot(cancelled, owner: host, expiresAt: 400, maximumOpen: 3, now: 100) == .created)
            #expect(try await !store.deleteSlot(cancelled, owner: stranger))
            #expect(try await store.deleteSlot(cancelled, owner: host))

            // At most `maximumOpen` open slots per owner, even when asked for at once; expired ones do not count.
            let (busy, _) = try await makeMailbox(store)
            _ = try await store.createSlot(PairingSlotID.random(), owner: busy, expiresAt: 150, maximumOpen: 3, now: 100)
            let outcomes = try await withThrowingTaskGroup(of: SlotCreation.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await store.createSlot(PairingSlotID.random(), owner: busy, expiresAt: 400, maximumOpen: 3, now: 160) }
                }
                return try await group.reduce(into: [SlotCreation]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .created }.count == 3)
            #expect(outcomes.filter { $0 == .tooMany }.count == 5)
        }
    }

    @Test("Concurrent posts are all stored exactly once (group commit)", arguments: factories)
    func concurrentPosts(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (mailbox, token) = try await makeMailbox(store)
            let envelopes = (0..<400).map { _ in sampleEnvelope(size: 64) }
            let quota = MailboxQuota(maximumEnvelopes: 10_000, maximumBytes: 10_000_000)
            let outcomes = try await withThrowingTaskGroup(of: StoreOutcome.self) { group in
                for envelope in envelopes + envelopes.prefix(50) {
                    group.addTask { try await store.storeEnvelope(incoming(mailbox, envelope), sendToken: token.hash, quota: quota) }
                }
                return try await group.reduce(into: [StoreOutcome]()) { $0.append($1) }
            }
            let stored = outcomes.filter { if case .stored = $0 { true } else { false } }.count
            let duplicates = outcomes.filter { if case .duplicate = $0 { true } else { false } }.count
            #expect(stored == 400)
            #expect(duplicates == 50)
            #expect(try await store.envelopes(in: mailbox, after: 0, limit: 1000).count == 400)
        }
    }

    @Test("A mailbox holds at most `maximum` send tokens; adding one it holds stays fine; removing one makes room", arguments: factories)
    func sendTokenCap(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (mailbox, first) = try await makeMailbox(store)
            let second = SendToken(), third = SendToken()
            #expect(try await store.addSendToken(second.hash, to: mailbox, maximum: 2, now: 100))
            #expect(try await !store.addSendToken(third.hash, to: mailbox, maximum: 2, now: 100))
            #expect(Set(try await store.sendTokens(of: mailbox)) == [first.hash, second.hash])
            // Idempotent at the cap: a token already held is still "registered".
            #expect(try await store.addSendToken(second.hash, to: mailbox, maximum: 2, now: 100))
            // The refused token cannot post.
            #expect(try await store.storeEnvelope(incoming(mailbox), sendToken: third.hash, quota: Self.quota) == .forbidden)
            #expect(try await store.removeSendToken(first.hash, from: mailbox))
            #expect(try await store.addSendToken(third.hash, to: mailbox, maximum: 2, now: 100))
            #expect(Set(try await store.sendTokens(of: mailbox)) == [second.hash, third.hash])
        }
    }

    @Test("Doorbells: one per URL (saved again, it is replaced), at most `maximum`, removed one by one and with their mailbox", arguments: factories)
    func doorbells(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (mailbox, _) = try await makeMailbox(store)
            let key = [UInt8](repeating: 4, count: 65), secret = [UInt8](repeating: 7, count: 16)
            let push = Doorbell(mailbox: mailbox, kind: .webPush, url: "https://fcm.googleapis.com/a", subscriberKey: key, authSecret: secret, createdAt: 10)
            let hook = Doorbell(mailbox: mailbox, kind: .webhook, url: "https://hooks.example/b", subscriberKey: nil, authSecret: nil, createdAt: 11)
            let third = Doorbell(mailbox: mailbox, kind: .ntfy, url: "https://ntfy.sh/c", subscriberKey: nil, authSecret: nil, createdAt: 12)
            #expect(try await store.saveDoorbell(push, maximum: 2) == .created)
            #expect(try await store.saveDoorbell(hook, maximum: 2) == .created)
            #expect(try await store.saveDoorbell(third, maximum: 2) == .full)
            #expect(try await store.doorbells(of: mailbox) == [push, hook])
            // The same URL again (a renewed subscription): replaced, even at the cap.
            let renewed = Doorbell(mailbox: mailbox, kind: .webPush, url: push.url, subscriberKey: [UInt8](repeating: 5, count: 65),
                                   authSecret: [UInt8](repeating: 8, count: 16), createdAt: 20)
            #expect(try await store.saveDoorbell(renewed, maximum: 2) == .replaced)
            let saved = try await store.doorbells(of: mailbox)
            #expect(saved.count == 2)
            #expect(saved.first?.subscriberKey == renewed.subscriberKey && saved.first?.authSecret == renewed.authSecret)
            #expect(try await store.removeDoorbell(hook.id, from: mailbox))
            #expect(try await !store.removeDoorbell(hook.id, from: mailbox))
            #expect(try await store.saveDoorbell(third, maximum: 2) == .created)
            #expect(try await store.deleteMailbox(mailbox))
            #expect(try await store.doorbells(of: mailbox).isEmpty)
        }
    }

    @Test("A backlog larger than one expiry chunk is expired completely, each envelope logged once", arguments: factories)
    func largeExpiry(_ factory: Factory) async throws {
        try await withStore(factory) { store in
            let (mailbox, token) = try await makeMailbox(store)
            let quota = MailboxQuota(maximumEnvelopes: 10_000, maximumBytes: 100_000_000)
            let count = 2_345
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<count {
                    group.addTask { _ = try await store.storeEnvelope(incoming(mailbox, sampleEnvelope(size: 32), ttl: 50), sendToken: token.hash, quota: quota) }
                }
                try await group.waitForAll()
            }
            #expect(try await store.expire(now: 200).envelopes == count)
            #expect(try await store.statistics().envelopes == 0)
            let leaves = try await store.pendingAuditLeaves(after: 0, limit: 10 * count).map { try AuditLeaf(bytes: $0.bytes) }
            #expect(leaves.filter { $0.event == .expired }.count == count)
        }
    }

    @Test("SQLite with full durability syncs the WAL after each commit, before answering; normal durability never does")
    func durability() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        // SQLite itself commits without syncing: the store's syncer does it, off the writer.
        #expect(try await store.synchronousMode() == 1)
        let (mailbox, token) = try await makeMailbox(store)
        let before = store.walSyncCount
        _ = try await store.storeEnvelope(incoming(mailbox, sampleEnvelope(size: 32)), sendToken: token.hash, quota: Self.quota)
        #expect(store.walSyncCount > before)
        try await store.close()
        let relaxed = try SQLiteRelayStore(directory: folder.path, durability: .normal)
        #expect(try await relaxed.synchronousMode() == 1)
        _ = try await relaxed.storeEnvelope(incoming(mailbox, sampleEnvelope(size: 32)), sendToken: token.hash, quota: Self.quota)
        #expect(relaxed.walSyncCount == 0)
        try await relaxed.close()
    }
}

/// A new mailbox in `store` with one registered send token (for the store tests).
func makeMailbox(_ store: any RelayStore, token: SendToken = SendToken()) async throws -> (MailboxID, SendToken) {
    let key = Ed25519.SecretKey()
    let id = MailboxID(owner: key.publicKey)
    #expect(try await store.createMailbox(id, ownerKey: key.publicKey.bytes, sponsor: nil, maximumSponsored: 1, now: 100) == .created)
    #expect(try await store.addSendToken(token.hash, to: id, maximum: 8, now: 100))
    return (id, token)
}
