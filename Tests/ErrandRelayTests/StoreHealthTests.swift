@testable import ErrandRelay
import Synchronization
import Testing

/// `/healthz` skips the rate limits, so how often it reaches the store is bounded here.
@Suite("Store health for /healthz")
struct StoreHealthTests {
    final class Checks: Sendable {
        let count = Mutex(0)
        let fails = Mutex(false)
        func run() async throws {
            count.withLock { $0 += 1 }
            try await Task.sleep(for: .milliseconds(50))
            if fails.withLock({ $0 }) { throw CancellationError() }
        }
    }

    @Test("Many probes at once share one check; a recent answer is reused; a failure is reported")
    func oneCheckForManyProbes() async throws {
        let checks = Checks()
        let health = StoreHealth(maximumAge: .seconds(60)) { try await checks.run() }
        let answers = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { await health.isHealthy() } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(answers.count == 200 && answers.allSatisfy { $0 })
        #expect(checks.count.withLock { $0 } == 1)
        for _ in 0..<100 { #expect(await health.isHealthy()) }
        #expect(checks.count.withLock { $0 } == 1)

        let failing = Checks()
        failing.fails.withLock { $0 = true }
        let unhealthy = StoreHealth(maximumAge: .zero) { try await failing.run() }
        #expect(await unhealthy.isHealthy() == false)
        failing.fails.withLock { $0 = false }
        // With no age allowed, the next probe checks again and sees the store back.
        #expect(await unhealthy.isHealthy())
        #expect(failing.count.withLock { $0 } == 2)
    }

    @Test("A check that hangs is reported as no answer after the timeout")
    func hangingCheck() async throws {
        let health = StoreHealth(maximumAge: .seconds(60), timeout: .milliseconds(200)) {
            try await Task.sleep(for: .seconds(3600))
        }
        #expect(await health.isHealthy() == false)
    }
}
