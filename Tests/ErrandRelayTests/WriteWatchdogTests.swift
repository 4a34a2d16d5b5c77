@testable import ErrandRelay
import Foundation
import Synchronization
import Testing

@Suite("Write watchdog")
struct WriteWatchdogTests {
    final class Flag: Sendable {
        let raised = Mutex(false)
    }

    @Test("A write pending longer than the limit drops its connection; others are left alone")
    func dropsStalledWrites() {
        let watchdog = WriteWatchdog(limit: .seconds(10))
        let stalled = WriteWatchdog.Clock()
        let idle = WriteWatchdog.Clock()
        let busy = WriteWatchdog.Clock()
        let stalledDropped = Flag()
        let othersDropped = Flag()
        _ = watchdog.watch(stalled) { stalledDropped.raised.withLock { $0 = true } }
        _ = watchdog.watch(idle) { othersDropped.raised.withLock { $0 = true } }
        _ = watchdog.watch(busy) { othersDropped.raised.withLock { $0 = true } }
        stalled.begin()
        busy.begin()
        busy.end()
        #expect(watchdog.check(now: .now + .seconds(5)) == 0)
        #expect(watchdog.check(now: .now + .seconds(11)) == 1)
        #expect(stalledDropped.raised.withLock { $0 })
        #expect(!othersDropped.raised.withLock { $0 })
        // Dropped once only.
        #expect(watchdog.check(now: .now + .seconds(30)) == 0)
    }
}
