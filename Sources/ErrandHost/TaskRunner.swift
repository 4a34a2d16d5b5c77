import ErrandProtocol
import Foundation
import Synchronization

/// Runs one task's process: merged standard output and error streamed in chunks, a timeout,
/// cancellation, and an output cap (the rest is dropped and a marker added).
final class TaskProcess: Sendable {
    /// What the process reports while it runs.
    enum Event: Sendable {
        case output([UInt8])
        case finished(status: TaskStatus, exitCode: Int32?, reason: String?)
    }

    static let truncationMarker = Array("\n[errand: output truncated at the host's cap]\n".utf8)

    let events: AsyncStream<Event>
    private let process: Process
    private let stopReason = StopReason()

    /// Starts `executable` with `arguments`; `input` goes to standard input, then it is closed.
    init(executable: String, arguments: [String], input: [UInt8]?, environment: [String: String], workingDirectory: String,
         timeout: Duration, outputCap: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory)
        let output = Pipe()
        let standardInput = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = standardInput
        self.process = process
        let (events, continuation) = AsyncStream<Event>.makeStream()
        self.events = events
        let stopReason = self.stopReason
        try process.run()
        // Everything written to the pipe after this point belongs to the child only.
        try? output.fileHandleForWriting.close()
        Thread.detachNewThread {
            if let input, !input.isEmpty { try? standardInput.fileHandleForWriting.write(contentsOf: input) }
            try? standardInput.fileHandleForWriting.close()
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            TaskProcess.stop(process, reason: .timedOut, stopReason)
        }
        Thread.detachNewThread {
            var kept = 0
            var truncated = false
            while true {
                let chunk = output.fileHandleForReading.availableData
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
                    continuation.yield(.output(TaskProcess.truncationMarker))
                }
            }
            process.waitUntilExit()
            timer.cancel()
            let code = process.terminationStatus
            let signalled = process.terminationReason == .uncaughtSignal
            let result: (TaskStatus, Int32?, String?)
            switch stopReason.value.withLock({ $0 }) {
            case .timedOut?: result = (.timedOut, nil, "stopped after the host's timeout")
            case .cancelled?: result = (.cancelled, nil, "cancelled from a device")
            default:
                if signalled { result = (.failed, nil, "ended by signal \(code)") }
                else { result = (code == 0 ? .succeeded : .failed, code, nil) }
            }
            continuation.yield(.finished(status: result.0, exitCode: result.1, reason: result.2))
            continuation.finish()
        }
    }

    /// Stops the process and its children (SIGTERM, then SIGKILL after 2 s); reported as cancelled.
    func cancel() { Self.stop(process, reason: .cancelled, stopReason) }

    private static func stop(_ process: Process, reason: TaskStatus, _ stopReason: StopReason) {
        let first = stopReason.value.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        guard first, process.isRunning else { return }
        // The task runs in a process group of its own (Foundation starts it so): signal the whole
        // group, so that children (a shell's commands) stop too and release the output pipe.
        let group = -process.processIdentifier
        kill(group, SIGTERM)
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 2)
            kill(group, SIGKILL)
        }
    }
}

/// Why a process was stopped, set once by whoever stops it first.
final class StopReason: Sendable {
    let value = Mutex<TaskStatus?>(nil)
}
