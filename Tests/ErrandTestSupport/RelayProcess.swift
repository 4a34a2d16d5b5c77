public import Foundation
import Synchronization

/// A real `errand-relay serve` process on a free loopback port.
public final class RelayProcess: Sendable {
    public let process: Process
    private let url = Mutex("")
    private let output: PrintedOutput

    /// The relay's base URL, from its listening line.
    public var baseURL: String { url.withLock { $0 } }

    /// Starts the relay and waits (up to 60 s) for its `listening` line, without blocking a
    /// thread of the shared pool (tests run in parallel on few cores). With `withLog`, what it
    /// logs on stderr is in ``printed`` too. `port` 0 takes a free one (give a stopped relay's
    /// port to restart it where its clients look for it).
    public static func start(data: String, arguments: [String] = [], environment: [String: String] = [:],
                             withLog: Bool = false, port: Int = 0) async throws -> RelayProcess {
        let relay = try RelayProcess(data: data, arguments: arguments, environment: environment, withLog: withLog, port: port)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let printed = relay.printed
            if let line = printed.split(separator: "\n").first(where: { $0.hasPrefix("errand-relay: listening") }),
               let range = line.range(of: #"https?://[0-9.]+:[0-9]+"#, options: .regularExpression) {
                relay.url.withLock { $0 = String(line[range]) }
                return relay
            }
            if !relay.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        relay.process.terminate()
        throw RelayProcessError(message: "errand-relay did not print its listening line: \(relay.printed)")
    }

    private init(data: String, arguments: [String], environment: [String: String], withLog: Bool, port: Int) throws {
        let process = Process()
        process.executableURL = try Executables.built("errand-relay")
        process.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--data", data] + arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = withLog ? stdout : FileHandle.nullDevice
        try process.run()
        self.process = process
        let output = PrintedOutput()
        self.output = output
        // Read stdout on a thread of its own for as long as the process lives.
        Thread.detachNewThread {
            while true {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                output.text.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
            }
        }
    }

    /// What the process printed on stdout (and, when started `withLog`, stderr) so far.
    public var printed: String { output.text.withLock { $0 } }

    /// Sends `signal` and waits for the process to end; returns its exit status.
    @discardableResult
    public func stop(signal: Int32 = 15, timeout: TimeInterval = 20) async -> Int32 {
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

public struct RelayProcessError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// What a process printed, appended by its reader thread.
final class PrintedOutput: Sendable {
    let text = Mutex("")
}
