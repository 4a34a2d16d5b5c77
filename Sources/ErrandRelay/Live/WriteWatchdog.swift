import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Drops live connections whose peer stopped reading: one task for the whole relay checks, once
/// a second, whether any connection's write has been pending longer than the write timeout.
final class WriteWatchdog: Sendable {
    /// When the write in progress on one connection started (nil when none is).
    final class Clock: Sendable {
        private let started = Mutex<ContinuousClock.Instant?>(nil)
        func begin() { started.withLock { $0 = .now } }
        func end() { started.withLock { $0 = nil } }
        func stalled(longerThan limit: Duration, now: ContinuousClock.Instant) -> Bool {
            started.withLock { $0.map { now - $0 > limit } ?? false }
        }
    }

    private struct Entry {
        let clock: Clock
        let drop: @Sendable () -> Void
    }

    private let entries = Mutex<[UUID: Entry]>([:])
    let limit: Duration

    init(limit: Duration) { self.limit = limit }

    /// Watches `clock`; `drop` ends the connection if a write stalls. Returns a handle for ``forget(_:)``.
    func watch(_ clock: Clock, drop: @escaping @Sendable () -> Void) -> UUID {
        let id = UUID()
        entries.withLock { $0[id] = Entry(clock: clock, drop: drop) }
        return id
    }

    func forget(_ id: UUID) {
        entries.withLock { $0[id] = nil }
    }

    /// Drops every connection stalled right now; returns how many.
    @discardableResult
    func check(now: ContinuousClock.Instant = .now) -> Int {
        let stalled = entries.withLock { entries in
            entries.filter { $0.value.clock.stalled(longerThan: limit, now: now) }.map { ($0.key, $0.value.drop) }
        }
        for (id, drop) in stalled {
            forget(id)
            drop()
        }
        return stalled.count
    }
}

/// Runs the watchdog's check every second until graceful shutdown.
struct WriteWatchdogService: Service {
    let watchdog: WriteWatchdog
    let core: RelayCore

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let dropped = watchdog.check()
                if dropped > 0 {
                    core.logger.info("live connections dropped: write timeout", metadata: ["connection.count": "\(dropped)"])
                }
            }
        }
    }
}
