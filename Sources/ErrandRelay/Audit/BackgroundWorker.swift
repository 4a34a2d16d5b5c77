import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own, at a lower scheduling priority, that runs jobs one at a time in the
/// order they are given.
///
/// For the audit log's bulk work (hashing thousands of leaves, indexing their hashes), which
/// takes milliseconds of CPU at a time: on a machine with few cores it then waits for request
/// handling instead of delaying it. Under full load it still gets a share of the CPU.
final class BackgroundWorker: @unchecked Sendable {
    /// The audit log's worker (nice 10).
    static let audit = BackgroundWorker(name: "errand-audit", niceness: 10)

    // `jobs` is guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []

    init(name: String, niceness: Int32) {
        let thread = Thread { [self] in
            #if os(Linux)
            // On Linux the nice value belongs to the thread, and 0 names the calling one.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness)
            #endif
            run()
        }
        thread.name = name
        thread.start()
    }

    /// Runs `job` on the worker, after the jobs given before it.
    func async(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Runs `job` on the worker and waits for its result without holding a thread.
    func run<T: Sendable>(_ job: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            async { continuation.resume(with: Result { try job() }) }
        }
    }

    /// Blocks until every job given so far has run (never call it from a job).
    func settle() {
        let done = DispatchSemaphore(value: 0)
        async { done.signal() }
        done.wait()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll()
            condition.unlock()
            for job in batch { job() }
        }
    }
}
