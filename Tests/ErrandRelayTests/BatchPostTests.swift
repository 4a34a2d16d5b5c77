import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import Foundation
import Testing

/// `POST /v1/envelopes`: several envelopes, each with its own mailbox and send token, in one
/// request and one commit.
@Suite("Batch posts")
struct BatchPostTests {
    @Test("Each item gets its own answer: stored, duplicate, refused, not attempted; other mailboxes are unaffected")
    func mixedBatch() async throws {
        try await TestRelay.with({ $0.mailboxQuota = MailboxQuota(maximumEnvelopes: 3, maximumBytes: 1 << 20) }) { relay in
            let alice = try await Owner.register(on: relay)
            let bob = try await Owner.register(on: relay)
            let earlier = sampleEnvelope()
            let earlierReceipt = try await relay.client.post(earlier, to: alice.mailbox, token: alice.token)
            let a1 = sampleEnvelope(), a2 = sampleEnvelope(), a3 = sampleEnvelope(), b1 = sampleEnvelope(), b2 = sampleEnvelope()
            let items: [EnvelopeBatch.Item] = [
                .init(mailbox: alice.mailbox, token: alice.token, envelope: a1.encoded),
                .init(mailbox: bob.mailbox, token: alice.token, envelope: b1.encoded),      // alice's token is not bob's
                .init(mailbox: alice.mailbox, token: alice.token, envelope: earlier.encoded), // a retry
                .init(mailbox: bob.mailbox, token: bob.token, envelope: b2.encoded),         // after bob's refusal
                .init(mailbox: alice.mailbox, token: alice.token, envelope: a2.encoded),     // alice's third: quota full now
                .init(mailbox: alice.mailbox, token: alice.token, envelope: a3.encoded),     // over quota
            ]
            let results = try await relay.client.post(batch: items)
            #expect(results.count == items.count)
            let first = try results[0].get()
            #expect(!first.duplicate && first.sequence > earlierReceipt.sequence)
            #expect(try results[2].get() == RelayClient.Receipt(sequence: earlierReceipt.sequence, duplicate: true))
            #expect(try !results[4].get().duplicate)
            #expect(refusal(results[1]) == .forbidden)
            #expect(refusal(results[3]) == .notAttempted)
            #expect(refusal(results[5]) == .quotaExceeded)
            if case .failure(let error) = results[3] { #expect(error.status == 424 && error.isTransient) }

            #expect(try await relay.client.fetch(owner: alice.key).envelopes.map(\.envelope) == [earlier, a1, a2])
            #expect(try await relay.client.fetch(owner: bob.key).envelopes.isEmpty)
            // Bob's own token still works: the refusal concerned one item only.
            _ = try await relay.client.post(b2, to: bob.mailbox, token: bob.token)
        }
    }

    @Test("A bad envelope or an oversized one inside a batch is refused alone, and the rest of its mailbox waits")
    func invalidItems() async throws {
        try await TestRelay.with({ $0.maximumEnvelopeBytes = 2_000 }) { relay in
            let alice = try await Owner.register(on: relay)
            let bob = try await Owner.register(on: relay)
            let fine = sampleEnvelope()
            let results = try await relay.client.post(batch: [
                .init(mailbox: alice.mailbox, token: alice.token, envelope: [1, 2, 3]),
                .init(mailbox: alice.mailbox, token: alice.token, envelope: sampleEnvelope().encoded),
                .init(mailbox: bob.mailbox, token: bob.token, envelope: sampleEnvelope(size: 5_000).encoded),
                .init(mailbox: bob.mailbox, token: bob.token, envelope: fine.encoded),
            ])
            #expect(refusal(results[0]) == .invalidEnvelope)
            #expect(refusal(results[1]) == .notAttempted)
            #expect(refusal(results[2]) == .tooLarge)
            #expect(refusal(results[3]) == .notAttempted)
            #expect(try await relay.client.fetch(owner: alice.key).envelopes.isEmpty)
            #expect(try await relay.client.fetch(owner: bob.key).envelopes.isEmpty)
        }
    }

    @Test("Malformed, empty, overlong and oversized batch bodies are refused whole with 400/413; nothing is stored")
    func malformedBodies() async throws {
        try await TestRelay.with { relay in
            let alice = try await Owner.register(on: relay)
            let url = "\(relay.url)/v1/envelopes"
            let one = EnvelopeBatch(items: [.init(mailbox: alice.mailbox, token: alice.token, envelope: sampleEnvelope().encoded)]).encoded
            let cases: [(String, [UInt8], Int, String)] = [
                ("empty", [], 400, "empty"),
                ("cut in the header", Array(one.prefix(30)), 400, "cut short"),
                ("cut in the envelope", Array(one.dropLast()), 400, "only"),
                ("a valid item then garbage", one + [0, 1, 2], 400, "item 2"),
                ("a length over 64 KiB", Array(one.prefix(48)) + [0, 1, 0, 1] + [UInt8](repeating: 0, count: 10), 400, "at most"),
                ("257 items", (0...EnvelopeBatch.maximumItems).flatMap { _ in one }, 400, "more than 256"),
            ]
            for (name, body, status, text) in cases {
                let response = try await raw("POST", url, headers: [("Content-Type", EnvelopeBatch.contentType)], body: body)
                #expect(response.status == status, "\(name)")
                #expect(response.body.contains(text), "\(name): \(response.body)")
            }
            let huge = (0..<17).flatMap { _ in
                EnvelopeBatch(items: [.init(mailbox: alice.mailbox, token: alice.token, envelope: sampleEnvelope(size: 65_000).encoded)]).encoded
            }
            let tooLarge = try await raw("POST", url, headers: [("Content-Type", EnvelopeBatch.contentType)], body: huge)
            #expect(tooLarge.status == 413)
            #expect(tooLarge.body.contains("too_large"))
            #expect(try await relay.client.fetch(owner: alice.key).envelopes.isEmpty)
        }
    }

    @Test("Each item counts against its mailbox's rate limit: 429 with a retry time, then not attempted")
    func rateLimitedItems() async throws {
        // One token per 20 s after a burst of 2: a loaded machine cannot refill in between.
        try await TestRelay.with({ $0.postsPerSecondPerMailbox = 0.05; $0.postBurstPerMailbox = 2 }) { relay in
            let alice = try await Owner.register(on: relay)
            let bob = try await Owner.register(on: relay)
            let items = (0..<4).map { _ in EnvelopeBatch.Item(mailbox: alice.mailbox, token: alice.token, envelope: sampleEnvelope().encoded) }
                + [EnvelopeBatch.Item(mailbox: bob.mailbox, token: bob.token, envelope: sampleEnvelope().encoded)]
            let results = try await relay.client.post(batch: items)
            #expect(results.prefix(2).allSatisfy { if case .success = $0 { true } else { false } })
            #expect(refusal(results[2]) == .rateLimited)
            if case .failure(let error) = results[2] { #expect((error.retryAfterSeconds ?? 0) >= 1) }
            #expect(refusal(results[3]) == .notAttempted)
            #expect(try results[4].get().duplicate == false)
            #expect(try await relay.client.fetch(owner: alice.key).envelopes.count == 2)
        }
    }

    @Test("Each envelope of a batch counts against the per-address limit: a batch passes while allowance is left, then the address waits")
    func addressLimitCountsEnvelopes() async throws {
        // 3 requests at once, then one per 20 s.
        try await TestRelay.with({ $0.requestsPerSecondPerIP = 0.05; $0.requestBurstPerIP = 3 }) { relay in
            let mailbox = MailboxID(owner: Ed25519.SecretKey().publicKey)
            let items = (0..<10).map { _ in EnvelopeBatch.Item(mailbox: mailbox, token: SendToken(), envelope: sampleEnvelope().encoded) }
            let url = "\(relay.url)/v1/envelopes"
            let first = try await raw("POST", url, headers: [("Content-Type", EnvelopeBatch.contentType)], body: EnvelopeBatch(items: items).encoded)
            #expect(first.status == 200)
            // Without the charge per envelope, two more requests would be allowed now.
            let second = try await raw("POST", url, headers: [("Content-Type", EnvelopeBatch.contentType)], body: EnvelopeBatch(items: items).encoded)
            #expect(second.status == 429)
            #expect(second.body.contains("rate_limited"))
            #expect((second.headers["retry-after"].flatMap(Int.init) ?? 0) > 20)
        }
    }

    @Test("The client splits a batch larger than a request may be, and keeps a refused mailbox's later envelopes back")
    func clientSplitsLargeBatches() async throws {
        try await TestRelay.with { relay in
            let alice = try await Owner.register(on: relay)
            let bob = try await Owner.register(on: relay)
            let large = (0..<18).map { _ in sampleEnvelope(size: 60_000) }
            let items = [EnvelopeBatch.Item(mailbox: alice.mailbox, token: SendToken(), envelope: sampleEnvelope().encoded)]
                + large.map { EnvelopeBatch.Item(mailbox: bob.mailbox, token: bob.token, envelope: $0.encoded) }
                + [EnvelopeBatch.Item(mailbox: alice.mailbox, token: alice.token, envelope: sampleEnvelope().encoded)]
            #expect(EnvelopeBatch(items: items).encoded.count > EnvelopeBatch.maximumBodyBytes)
            let results = try await relay.client.post(batch: items)
            #expect(results.count == items.count)
            #expect(refusal(results[0]) == .forbidden)
            #expect(results[1...18].allSatisfy { if case .success = $0 { true } else { false } })
            // Alice's second envelope went in another request; it is held back all the same.
            #expect(refusal(results[19]) == .notAttempted)
            var stored = 0
            var after: Int64 = 0
            while true {
                let page = try await relay.client.fetch(owner: bob.key, after: after)
                stored += page.envelopes.count
                guard page.more, let last = page.envelopes.last else { break }
                after = last.sequence
            }
            #expect(stored == 18)
            #expect(try await relay.client.fetch(owner: alice.key).envelopes.isEmpty)
        }
    }

    @Test("A batch wakes the live connections of every mailbox it stored into")
    func liveDelivery() async throws {
        try await TestRelay.with { relay in
            let owners = [try await Owner.register(on: relay), try await Owner.register(on: relay)]
            let subscriptions = owners.map { relay.client.subscribe(owner: $0.key) }
            defer { for subscription in subscriptions { subscription.cancel() } }
            var iterators = subscriptions.map { $0.events.makeAsyncIterator() }
            for index in iterators.indices {
                guard case .caughtUp? = try await iterators[index].next() else { Issue.record("no caught-up marker"); return }
            }
            let envelopes = owners.map { _ in sampleEnvelope() }
            _ = try await relay.client.post(batch: zip(owners, envelopes).map { .init(mailbox: $0.mailbox, token: $0.token, envelope: $1.encoded) })
            for index in iterators.indices {
                let event = try await iterators[index].next()
                guard case .envelope(_, let received)? = event else { Issue.record("expected an envelope, got \(String(describing: event))"); return }
                #expect(received == envelopes[index])
            }
        }
    }

    private func refusal(_ result: Result<RelayClient.Receipt, RelayClientError>) -> RelayErrorCode? {
        if case .failure(let error) = result { return error.code }
        return nil
    }
}
