import Synchronization

/// Whether the store answers, as `/healthz` reports it: a check at most once per `maximumAge`,
/// however many probes arrive (concurrent probes share the one check in flight), and a check
/// that takes longer than `timeout` counts as no answer. `/healthz` skips the rate limits, so
/// it must cost the store next to nothing.
final class StoreHealth: Sendable {
    private struct State {
        var checked: ContinuousClock.Instant?
        var healthy = false
        var running: Task<Bool, Never>?
    }

    private let check: @Sendable () async throws -> Void
    private let maximumAge: Duration
    private let timeout: Duration
    private let state = Mutex(State())

    init(maximumAge: Duration = .seconds(1), timeout: Duration = .seconds(5), check: @escaping @Sendable () async throws -> Void) {
        self.check = check
        self.maximumAge = maximumAge
        self.timeout = timeout
    }

    /// The last answer if it is recent, otherwise the answer of a check made now (or in flight).
    func isHealthy() async -> Bool {
        enum Next { case known(Bool), wait(Task<Bool, Never>) }
        let next: Next = state.withLock { state in
            if let checked = state.checked, ContinuousClock.now - checked < maximumAge { return .known(state.healthy) }
            if let running = state.running { return .wait(running) }
            let task = Task { [check, timeout] in await Self.answers(check, within: timeout) }
            state.running = task
            return .wait(task)
        }
        switch next {
        case .known(let healthy):
            return healthy
        case .wait(let task):
            let healthy = await task.value
            state.withLock { state in
                guard state.running == task else { return }
                state.running = nil
                state.checked = .now
                state.healthy = healthy
            }
            return healthy
        }
    }

    /// Whether `check` returns within `timeout`; a check that takes longer is cancelled, not awaited.
    private static func answers(_ check: @escaping @Sendable () async throws -> Void, within timeout: Duration) async -> Bool {
        await withCheckedContinuation { continuation in
            let answer = FirstAnswer(continuation)
            let checking = Task { answer.give((try? await check()) != nil) }
            Task {
                try? await Task.sleep(for: timeout)
                answer.give(false)
                checking.cancel()
            }
        }
    }
}

/// Resumes a continuation with the first answer given; later ones are dropped.
private final class FirstAnswer: Sendable {
    private let continuation: Mutex<CheckedContinuation<Bool, Never>?>

    init(_ continuation: CheckedContinuation<Bool, Never>) { self.continuation = Mutex(continuation) }

    func give(_ answer: Bool) {
        continuation.withLock { waiting in
            defer { waiting = nil }
            return waiting
        }?.resume(returning: answer)
    }
}
