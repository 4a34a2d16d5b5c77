import ErrandProtocol
import Foundation
import Synchronization

/// Tells the live connections of a mailbox when something is stored for it.
///
/// Two ways, both bounded: a wake-up (the connection reads what is new from the store after its
/// own cursor, so a slow connection never accumulates a queue in memory), and, when the store
/// reports its commits in order (``RelayStore/publishArrivals(to:)``), the stored envelopes
/// themselves with the sequence number of the mailbox's envelope before them, so a connection
/// that has delivered up to that one can send them on without reading them back. Whatever a
/// connection misses is still in the store (at-least-once).
final class LiveHub: Sendable {
    /// Called when the mailbox may have something new; must return quickly (it hops to the
    /// connection's event loop).
    typealias Wake = @Sendable () -> Void
    /// Called with envelopes just committed for the mailbox, and the sequence number of the
    /// mailbox's envelope committed before them (nil when the hub does not know it).
    typealias Delivery = @Sendable (_ previous: Int64?, _ envelopes: [StoredEnvelope]) -> Void

    private struct Subscriber {
        let wake: Wake
        let deliver: Delivery
    }

    private struct Mailbox {
        var subscribers: [UInt64: Subscriber] = [:]
        /// The last sequence number published for the mailbox since it had subscribers.
        var lastPublished: Int64?
    }

    private struct State {
        var mailboxes: [MailboxID: Mailbox] = [:]
        var nextID: UInt64 = 0
        /// Set by ``forgetPublished()``, cleared by the next publish: one failure wakes once.
        var forgotten = false
    }

    private let state = Mutex(State())

    /// Adds a subscriber for `mailbox`, unless the mailbox already has `limit` of them.
    /// - Returns: the subscription's id for ``unsubscribe(_:_:)``, or nil when over the limit.
    func subscribe(_ mailbox: MailboxID, limit: Int = .max, wake: @escaping Wake,
                   deliver: @escaping Delivery) -> UInt64? {
        state.withLock { state in
            guard state.mailboxes[mailbox, default: Mailbox()].subscribers.count < limit else { return nil }
            state.nextID += 1
            state.mailboxes[mailbox, default: Mailbox()].subscribers[state.nextID] = Subscriber(wake: wake, deliver: deliver)
            return state.nextID
        }
    }

    func unsubscribe(_ mailbox: MailboxID, _ id: UInt64) {
        state.withLock { state in
            state.mailboxes[mailbox]?.subscribers[id] = nil
            if state.mailboxes[mailbox]?.subscribers.isEmpty == true { state.mailboxes[mailbox] = nil }
        }
    }

    /// Wakes every connection of `mailbox`.
    func notify(_ mailbox: MailboxID) {
        let subscribers = state.withLock { $0.mailboxes[mailbox].map { Array($0.subscribers.values) } ?? [] }
        for subscriber in subscribers { subscriber.wake() }
    }

    /// Wakes every connection (after a gap in what the node heard from other nodes).
    func notifyEveryone() {
        let subscribers = state.withLock { $0.mailboxes.values.flatMap(\.subscribers.values) }
        for subscriber in subscribers { subscriber.wake() }
    }

    /// Hands `envelopes`, just committed for `mailbox`, to its connections. Must be called for
    /// every commit, in commit order (the store's writer does), or the `previous` it passes on
    /// would be wrong.
    func publish(_ mailbox: MailboxID, _ envelopes: [StoredEnvelope]) {
        guard let last = envelopes.last?.sequence else { return }
        let (subscribers, previous) = state.withLock { state -> ([Subscriber], Int64?) in
            state.forgotten = false
            guard var entry = state.mailboxes[mailbox] else { return ([], nil) }
            let previous = entry.lastPublished
            entry.lastPublished = last
            state.mailboxes[mailbox] = entry
            return (Array(entry.subscribers.values), previous)
        }
        for subscriber in subscribers { subscriber.deliver(previous, envelopes) }
    }

    /// Something may have been stored without being published: forgets what was published (so
    /// the next publish of each mailbox only wakes) and wakes every connection — once, however
    /// many writes of a failed commit report it.
    func forgetPublished() {
        let subscribers = state.withLock { state -> [Subscriber] in
            guard !state.forgotten else { return [] }
            state.forgotten = true
            for mailbox in state.mailboxes.keys { state.mailboxes[mailbox]?.lastPublished = nil }
            return state.mailboxes.values.flatMap(\.subscribers.values)
        }
        for subscriber in subscribers { subscriber.wake() }
    }

    /// Live connections right now.
    var connectionCount: Int {
        state.withLock { $0.mailboxes.values.reduce(0) { $0 + $1.subscribers.count } }
    }

    /// Live connections of one mailbox.
    func connectionCount(of mailbox: MailboxID) -> Int {
        state.withLock { $0.mailboxes[mailbox]?.subscribers.count ?? 0 }
    }
}
