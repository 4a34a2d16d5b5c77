import ErrandProtocol
import Foundation
import Synchronization

/// Rings the live connections of a mailbox when something is stored for it.
///
/// A subscription is only a doorbell: each connection reads the envelopes themselves from the
/// store after its own cursor, so a slow connection never accumulates a queue in memory; whatever
/// it missed is still in the store (at-least-once).
final class LiveHub: Sendable {
    /// Called when the mailbox may have something new; must return quickly (it hops to the
    /// connection's event loop).
    typealias Doorbell = @Sendable () -> Void

    private struct State {
        var subscribers: [MailboxID: [UInt64: Doorbell]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Adds a doorbell for `mailbox`, unless the mailbox already has `limit` of them.
    /// - Returns: the subscription's id for ``unsubscribe(_:_:)``, or nil when over the limit.
    func subscribe(_ mailbox: MailboxID, limit: Int = .max, ring: @escaping Doorbell) -> UInt64? {
        state.withLock { state in
            guard state.subscribers[mailbox, default: [:]].count < limit else { return nil }
            state.nextID += 1
            state.subscribers[mailbox, default: [:]][state.nextID] = ring
            return state.nextID
        }
    }

    func unsubscribe(_ mailbox: MailboxID, _ id: UInt64) {
        state.withLock { state in
            state.subscribers[mailbox]?[id] = nil
            if state.subscribers[mailbox]?.isEmpty == true { state.subscribers[mailbox] = nil }
        }
    }

    /// Rings every connection of `mailbox`.
    func notify(_ mailbox: MailboxID) {
        let doorbells = state.withLock { $0.subscribers[mailbox].map { Array($0.values) } ?? [] }
        for ring in doorbells { ring() }
    }

    /// Rings every connection (after a gap in what the node heard from other nodes).
    func notifyEveryone() {
        let doorbells = state.withLock { $0.subscribers.values.flatMap(\.values) }
        for ring in doorbells { ring() }
    }

    /// Live connections right now.
    var connectionCount: Int {
        state.withLock { $0.subscribers.values.reduce(0) { $0 + $1.count } }
    }

    /// Live connections of one mailbox.
    func connectionCount(of mailbox: MailboxID) -> Int {
        state.withLock { $0.subscribers[mailbox]?.count ?? 0 }
    }
}
