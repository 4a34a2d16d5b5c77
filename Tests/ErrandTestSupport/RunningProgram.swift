public import Foundation
import Synchronization

/// A program running in the background whose output is collected as it comes, for tests that
/// need two processes talking to each other. Waiting is asynchronous and never blocks a thread
/// of the shared pool.
public final class RunningProgram: Sendable {
    public let process: Process
    private let stdout = CollectedText()
    private let stderr = CollectedText()
    private let input: FileHandle

    /// Starts `program` (see ``Executables/resolve(_:)``); `input`, when given, is written to its
    /// standard input and the input is then closed.
    public init(_ program: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws {
        let process = try configuredProcess(program, arguments, environment: environment)
        let out = Pipe(), err = Pipe(), stdin = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin
        try process.run()
        self.process = process
        self.input = stdin.fileHandleForWriting
        for (pipe, sink) in [(out, stdout), (err, stderr)] {
            Thread.detachNewThread {
                while true {
                    let chunk = pipe.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    sink.text.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
                }
            }
        }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
    }

    /// Writes to standard input (when no `input` was given at start).
    public func send(_ text: String) {
        input.write(Data(text.utf8))
    }

    /// Closes standard input.
    public func closeInput() { try? input.close() }

    /// Standard output so far.
    public var output: String { stdout.text.withLock { $0 } }
    /// Standard error so far.
    public var errorOutput: String { stderr.text.withLock { $0 } }

    /// Waits until standard output contains `text`.
    public func waitForOutput(containing text: String, timeout: TimeInterval = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !output.contains(text) {
            guard Date() < deadline else {
                throw TestSupportError("no '\(text)' in the output of \(process.executableURL?.lastPathComponent ?? "?") after \(timeout) s; output: \(output); errors: \(errorOutput)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the program to end (killing it after `timeout`) and returns what it did.
    public func finish(timeout: TimeInterval = 60) async -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        // Let the reader threads take the last bytes.
        try? await Task.sleep(for: .milliseconds(50))
        return CommandResult(status: process.terminationStatus, output: output, errorOutput: errorOutput)
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Runs a program to completion without blocking a thread of the shared pool.
public func runAsync(_ program: String, _ arguments: [String], input: String? = nil,
                     environment: [String: String] = [:], timeout: TimeInterval = 60) async throws -> CommandResult {
    try await RunningProgram(program, arguments, input: input ?? "", environment: environment).finish(timeout: timeout)
}

/// Text appended by a reader thread.
final class CollectedText: Sendable {
    let text = Mutex("")
}
