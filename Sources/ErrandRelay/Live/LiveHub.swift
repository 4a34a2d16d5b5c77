import ErrandProtocol
import Foundation
import Synchronization

/// Wakes the live connections of a mailbox when something is stored for it.
///
/// A subscription is only a doorbell: each connection reads the envelopes themselves from the
/// store after its own cursor. The doorbell's buffer holds one ring, so a slow connection never
/// accumulates a queue in memory; whatever it missed is still in the store (at-least-once).
final class LiveHub: Sendable {
    private let subscribers = Mutex<[MailboxID: [UUID: AsyncStream<Void>.Continuation]]>([:])

    /// A doorbell for `mailbox`; call `cancel` when the connection ends.
    func subscribe(_ mailbox: MailboxID) -> (wakeups: AsyncStream<Void>, cancel: @Sendable () -> Void) {
        let id = UUID()
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        subscribers.withLock { $0[mailbox, default: [:]][id] = continuation }
        let cancel: @Sendable () -> Void = { [weak self] in
            continuation.finish()
            self?.subscribers.withLock { subscribers in
                subscribers[mailbox]?[id] = nil
                if subscribers[mailbox]?.isEmpty == true { subscribers[mailbox] = nil }
            }
        }
        return (stream, cancel)
    }

    /// Rings every connection of `mailbox`.
    func notify(_ mailbox: MailboxID) {
        let continuations = subscribers.withLock { $0[mailbox].map { Array($0.values) } ?? [] }
        for continuation in continuations { continuation.yield() }
    }

    /// Rings every connection (after a gap in what the node heard from other nodes).
    func notifyEveryone() {
        let continuations = subscribers.withLock { $0.values.flatMap(\.values) }
        for continuation in continuations { continuation.yield() }
    }

    /// Live connections right now.
    var connectionCount: Int {
        subscribers.withLock { $0.values.reduce(0) { $0 + $1.count } }
    }

    /// Live connections of one mailbox.
    func connectionCount(of mailbox: MailboxID) -> Int {
        subscribers.withLock { $0[mailbox]?.count ?? 0 }
    }
}
