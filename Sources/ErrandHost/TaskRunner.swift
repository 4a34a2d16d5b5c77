import ErrandProtocol
import Foundation
import Synchronization

/// Runs one task's process: merged standard output and error streamed in chunks, a timeout,
/// cancellation, and an output cap (the rest is dropped and a marker added).
///
/// The process runs in a process group of its own (see ``ChildProcess``). Stopping signals the
/// whole group, and when the main process ends, whatever it left running — in its group, or
/// tagged with the task wherever it went (``TaskLeftovers``) — is killed after a short grace for
/// its last output, so a background child can neither keep the task "running" nor outlive it.
final class TaskProcess: Sendable {
    /// What the process reports while it runs.
    enum Event: Sendable {
        case output([UInt8])
        /// The output passed the cap; nothing more is reported (the marker follows as output).
        case truncated
        case finished(status: TaskStatus, exitCode: Int32?, reason: String?)
    }

    /// Why a process was stopped.
    enum StopCause: Sendable {
        case timedOut, cancelled, hostStopping, revoked
    }

    static let truncationMarker = Array("\n[errand: output truncated at the host's cap]\n".utf8)
    /// How long a finished task's leftover children may keep running (and the output pipe open).
    static let leftoverGrace: TimeInterval = 1

    let events: AsyncStream<Event>
    /// The child's process group (negative pid, for kill).
    private let group: pid_t
    /// The task's main process (and its process group's id).
    let processID: pid_t
    private let cause = StopCauseBox()

    /// Starts `executable` with `arguments` for the task `task` (its processes are tagged with
    /// `ERRAND_TASK` in `environment`); `input` goes to standard input, then it is closed.
    init(task: String, executable: String, arguments: [String], input: [UInt8]?, environment: [String: String], workingDirectory: String,
         timeout: Duration, outputCap: Int) throws {
        var environment = environment
        environment["ERRAND_TASK"] = task
        let child = try TaskLeftovers.spawn {
            try ChildProcess(executable: executable, arguments: arguments, environment: environment, workingDirectory: workingDirectory)
        }
        self.processID = child.pid
        self.group = -child.pid
        let (events, continuation) = AsyncStream<Event>.makeStream()
        self.events = events
        let cause = self.cause
        let group = self.group
        Thread.detachNewThread {
            // SIGPIPE is ignored by the host, so a child that exits without reading is an error here, not a crash.
            if let input, !input.isEmpty { try? child.input.write(contentsOf: input) }
            try? child.input.close()
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            TaskProcess.stop(group: group, cause: .timedOut, cause)
        }
        let output = child.output
        let readerDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var kept = 0
            var truncated = false
            while true {
                let chunk = output.availableData
                if chunk.isEmpty { break }
                guard !truncated else { continue }
                let room = outputCap - kept
                if chunk.count <= room {
                    kept += chunk.count
                    continuation.yield(.output([UInt8](chunk)))
                } else {
                    if room > 0 { continuation.yield(.output([UInt8](chunk.prefix(room)))) }
                    kept = outputCap
                    truncated = true
                    continuation.yield(.truncated)
                    continuation.yield(.output(TaskProcess.truncationMarker))
                }
            }
            readerDone.signal()
        }
        Thread.detachNewThread {
            child.waitForExit()
            // Output still on its way gets a moment; then whatever the process left running ends
            // (while its exited main process still holds the group's id, so no other group is hit).
            _ = readerDone.wait(timeout: .now() + TaskProcess.leftoverGrace)
            TaskLeftovers.end(task: task, group: -group)
            // A leftover no signal reached (it left the group and cleared its environment) may
            // hold the output open: the task ends anyway.
            _ = readerDone.wait(timeout: .now() + 2)
            let termination = cause.reap { child.wait() }
            TaskLeftovers.reaped(child.pid)
            timer.cancel()
            let result: (TaskStatus, Int32?, String?)
            switch cause.value.withLock({ $0 }) {
            case .timedOut?: result = (.timedOut, nil, "stopped after the host's timeout")
            case .cancelled?: result = (.cancelled, nil, "cancelled from a device")
            case .hostStopping?: result = (.interrupted, nil, "the host stopped while it ran")
            case .revoked?: result = (.cancelled, nil, "stopped: the device that sent it was revoked")
            case nil:
                switch termination {
                case .exited(let code): result = (code == 0 ? .succeeded : .failed, code, nil)
                case .signalled(let signal): result = (.failed, nil, "ended by signal \(signal)")
                }
            }
            continuation.yield(.finished(status: result.0, exitCode: result.1, reason: result.2))
            continuation.finish()
        }
    }

    /// Stops the process and its group (SIGTERM, then SIGKILL after 2 s).
    func stop(_ why: StopCause) { Self.stop(group: group, cause: why, cause) }

    private static func stop(group: pid_t, cause why: StopCause, _ cause: StopCauseBox) {
        let first = cause.value.withLock { current -> Bool in
            guard current == nil else { return false }
            current = why
            return true
        }
        guard first else { return }
        // The group id stays reserved while any member lives, so signalling it is safe even
        // after the main process has exited.
        cause.unlessReaped { kill(group, SIGTERM) }
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 2)
            cause.unlessReaped { kill(group, SIGKILL) }
        }
    }
}

/// Why a process was stopped, set once by whoever stops it first; and whether its main process
/// was reaped (after which its group's id may belong to another process group).
final class StopCauseBox: Sendable {
    let value = Mutex<TaskProcess.StopCause?>(nil)
    private let reaped = Mutex(false)

    func reap<T: Sendable>(_ body: () -> T) -> T {
        reaped.withLock { done in
            let result = body()
            done = true
            return result
        }
    }

    func unlessReaped(_ body: () -> Void) {
        reaped.withLock { done in if !done { body() } }
    }
}
