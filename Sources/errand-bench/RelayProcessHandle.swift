import Foundation
import Synchronization

/// A real `errand-relay serve` process for the benchmark, found next to this executable.
final class RelayProcessHandle: Sendable {
    let process: Process
    let url: String
    let dataDirectory: String

    /// Starts a relay; `auditKeyFrom` names another node's data folder whose audit key this one
    /// must share (nodes on one PostgreSQL database sign one log).
    init(environment: [String: String], auditKeyFrom: String? = nil) throws {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let binary = directory.appendingPathComponent("errand-relay")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw BenchmarkError("errand-relay is not built next to errand-bench (\(directory.path)); run 'swift build -c release' first")
        }
        dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("errand-bench-\(UUID().uuidString)").path
        if let auditKeyFrom {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try FileManager.default.copyItem(atPath: auditKeyFrom + "/audit.key", toPath: dataDirectory + "/audit.key")
        }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--listen", "127.0.0.1:0", "--data", dataDirectory, "--open-registration"]
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        self.process = process
        var printed = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !printed.contains("listening") {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }  // the relay ended
            printed += String(decoding: chunk, as: UTF8.self)
        }
        guard let range = printed.range(of: #"http://[0-9.]+:[0-9]+"#, options: .regularExpression) else {
            process.terminate()
            process.waitUntilExit()
            let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw BenchmarkError("errand-relay did not start: \(printed)\(errors)")
        }
        // Keep draining its log so the relay never blocks on a full pipe.
        Thread.detachNewThread { while !stderr.fileHandleForReading.availableData.isEmpty {} }
        url = String(printed[range])
    }

    /// Resident memory of the relay process, in bytes (Linux /proc).
    var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kilobytes * 1024
    }

    /// CPU seconds the relay has used (user + system), from /proc.
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
