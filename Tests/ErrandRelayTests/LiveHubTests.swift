@testable import ErrandRelay
import ErrandProtocol
import ErrandCrypto
import Synchronization
import Testing

@Suite("Live hub")
struct LiveHubTests {
    final class Calls: Sendable {
        let rings = Mutex(0)
        let deliveries = Mutex<[(Int64?, [Int64])]>([])
    }

    func subscribe(_ hub: LiveHub, _ mailbox: MailboxID, limit: Int = .max) -> (UInt64?, Calls) {
        let calls = Calls()
        let id = hub.subscribe(mailbox, limit: limit, wake: { calls.rings.withLock { $0 += 1 } },
                               deliver: { previous, envelopes in calls.deliveries.withLock { $0.append((previous, envelopes.map(\.sequence))) } })
        return (id, calls)
    }

    func stored(_ sequences: Int64...) -> [StoredEnvelope] { sequences.map { StoredEnvelope(sequence: $0, encoded: []) } }

    @Test("Publishes carry the mailbox's previous sequence once known; forgetting it makes the next one unknown and rings everyone")
    func previousSequence() {
        let hub = LiveHub()
        let mailbox = MailboxID(owner: Ed25519.SecretKey().publicKey)
        let other = MailboxID(owner: Ed25519.SecretKey().publicKey)
        // Nobody listens yet: nothing is tracked.
        hub.publish(mailbox, stored(1))
        let (_, calls) = subscribe(hub, mailbox)
        hub.publish(mailbox, stored(5, 6))
        hub.publish(other, stored(7))
        hub.publish(mailbox, stored(9))
        #expect(calls.deliveries.withLock { $0.map(\.0) } == [nil, 6])
        #expect(calls.deliveries.withLock { $0.map(\.1) } == [[5, 6], [9]])
        hub.forgetPublished()
        hub.forgetPublished()  // the same failed commit, reported by another of its writes
        #expect(calls.rings.withLock { $0 } == 1)
        hub.publish(mailbox, stored(12))
        #expect(calls.deliveries.withLock { $0.last?.0 } == nil)
    }

    @Test("The per-mailbox cap is checked and taken together; leaving frees the place and the tracking")
    func cap() {
        let hub = LiveHub()
        let mailbox = MailboxID(owner: Ed25519.SecretKey().publicKey)
        let (first, calls) = subscribe(hub, mailbox, limit: 1)
        #expect(first != nil)
        #expect(subscribe(hub, mailbox, limit: 1).0 == nil)
        hub.publish(mailbox, stored(3))
        hub.unsubscribe(mailbox, first!)
        #expect(hub.connectionCount(of: mailbox) == 0)
        let (again, _) = subscribe(hub, mailbox, limit: 1)
        #expect(again != nil)
        #expect(calls.deliveries.withLock { $0.count } == 1)
    }
}
