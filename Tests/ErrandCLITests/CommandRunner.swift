import Foundation
import Testing

/// What a command printed and how it ended.
struct CommandResult {
    let status: Int32
    let output: String
    let errorOutput: String
}

/// Locates the executables `swift build` put next to the test bundle.
enum Executables {
    static func url(_ name: String) throws -> URL {
        // Linux: the bundle URL is the build folder itself; macOS: a .xctest bundle inside it.
        var directory = Bundle.main.bundleURL
        for _ in 0..<5 {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        Issue.record("\(name) was not found near \(Bundle.main.bundleURL.path); run 'swift build' first")
        throw CancellationError()
    }
}

/// Runs `executable` (a built product or an absolute path) with `arguments` and optional standard input.
func run(_ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable.hasPrefix("/") ? URL(fileURLWithPath: executable) : try Executables.url(executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    let stdin = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errorOutput = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus,
                         output: String(decoding: output, as: UTF8.self),
                         errorOutput: String(decoding: errorOutput, as: UTF8.self))
}
