import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import Foundation
import Testing

@Suite("Live delivery over WebSocket")
struct LiveDeliveryTests {
    @Test("Backlog, caught-up marker, live push, acknowledgement and resume after reconnect")
    func liveDelivery() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let stored = sampleEnvelope()
            _ = try await relay.client.post(stored, to: owner.mailbox, token: owner.token)

            let subscription = relay.client.subscribe(owner: owner.key)
            var events = subscription.events.makeAsyncIterator()
            guard case .envelope(let firstSequence, let first)? = try await events.next() else {
                Issue.record("expected the stored envelope first"); return
            }
            #expect(first == stored)
            guard case .caughtUp(let mark)? = try await events.next() else { Issue.record("expected caught-up"); return }
            #expect(mark == firstSequence)

            let live = sampleEnvelope(size: 4000)
            _ = try await relay.client.post(live, to: owner.mailbox, token: owner.token)
            guard case .envelope(_, let pushed)? = try await events.next() else { Issue.record("expected a live envelope"); return }
            #expect(pushed == live)

            try await subscription.acknowledge([stored.id, live.id])
            // Acknowledged envelopes are deleted at the relay.
            var remaining = 2
            for _ in 0..<50 where remaining > 0 {
                remaining = try await relay.client.fetch(owner: owner.key).envelopes.count
                if remaining > 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(remaining == 0)
            subscription.cancel()

            // A new subscription resumes after a cursor and gets only what is newer.
            let later = sampleEnvelope()
            let older = sampleEnvelope()
            let olderReceipt = try await relay.client.post(older, to: owner.mailbox, token: owner.token)
            _ = try await relay.client.post(later, to: owner.mailbox, token: owner.token)
            let resumed = relay.client.subscribe(owner: owner.key, after: olderReceipt.sequence)
            var resumedEvents = resumed.events.makeAsyncIterator()
            guard case .envelope(_, let next)? = try await resumedEvents.next() else { Issue.record("expected an envelope"); return }
            #expect(next == later)
            resumed.cancel()
        }
    }

    @Test("Envelopes posted concurrently (alone and in batches) while live arrive once each, in sequence order")
    func concurrentPostsWhileLive() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let subscription = relay.client.subscribe(owner: owner.key)
            var events = subscription.events.makeAsyncIterator()
            guard case .caughtUp? = try await events.next() else { Issue.record("expected caught-up"); return }
            let posters = 8, rounds = 10
            let expected = try await withThrowingTaskGroup(of: [EnvelopeID].self) { group in
                for poster in 0..<posters {
                    group.addTask {
                        var sent: [EnvelopeID] = []
                        for round in 0..<rounds {
                            if (poster + round) % 2 == 0 {
                                let envelope = sampleEnvelope()
                                _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
                                sent.append(envelope.id)
                            } else {
                                let envelopes = (0..<3).map { _ in sampleEnvelope() }
                                _ = try await relay.client.post(batch: envelopes.map {
                                    EnvelopeBatch.Item(mailbox: owner.mailbox, token: owner.token, envelope: $0.encoded)
                                })
                                sent += envelopes.map(\.id)
                            }
                        }
                        return sent
                    }
                }
                return try await group.reduce(into: Set<EnvelopeID>()) { $0.formUnion($1) }
            }
            var received: [EnvelopeID] = []
            var lastSequence: Int64 = 0
            // A missed envelope would leave this waiting: the subscription is cancelled after 30 s.
            let deadline = Task {
                try await Task.sleep(for: .seconds(30))
                subscription.cancel()
            }
            while received.count < expected.count, let event = try? await events.next() {
                guard case .envelope(let sequence, let envelope) = event else { continue }
                #expect(sequence > lastSequence, "sequence \(sequence) after \(lastSequence)")
                lastSequence = sequence
                received.append(envelope.id)
            }
            deadline.cancel()
            #expect(received.count == expected.count)
            #expect(expected.subtracting(received).count == 0, "missed")
            #expect(Set(received).count == received.count, "delivered twice")
            subscription.cancel()
        }
    }

    @Test("A mailbox's live connections are capped; the one over the cap is told why")
    func liveConnectionCap() async throws {
        try await TestRelay.with({ $0.maximumLiveConnectionsPerMailbox = 1 }) { relay in
            let owner = try await Owner.register(on: relay)
            let first = relay.client.subscribe(owner: owner.key)
            var firstEvents = first.events.makeAsyncIterator()
            guard case .caughtUp? = try await firstEvents.next() else { Issue.record("expected caught-up"); return }
            let second = relay.client.subscribe(owner: owner.key)
            var secondEvents = second.events.makeAsyncIterator()
            guard case .reconnecting(let error)? = try await secondEvents.next() else { Issue.record("expected a refusal"); return }
            #expect(error.code == .rateLimited)
            #expect(error.message.contains("live connections"))
            first.cancel()
            second.cancel()
        }
    }

    @Test("A live connection for someone else's mailbox is refused with a reason")
    func foreignOwnerRefused() async throws {
        try await TestRelay.with { relay in
            _ = try await Owner.register(on: relay)
            let stranger = Ed25519.SecretKey()
            let subscription = relay.client.subscribe(owner: stranger)
            do {
                for try await _ in subscription.events {}
                Issue.record("the subscription should have failed")
            } catch let error as RelayClientError {
                #expect(error.code == .notFound)
            }
        }
    }
}
