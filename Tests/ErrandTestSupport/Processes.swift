public import Foundation

/// What a command printed and how it ended.
public struct CommandResult: Sendable {
    public let status: Int32
    public let output: String
    public let errorOutput: String
}

/// Finds programs for tests: products `swift build` put next to the test bundle, and system tools.
public enum Executables {
    /// A product built by this package (`errand`, `errand-relay`, …).
    public static func built(_ name: String) throws -> URL {
        // Linux: the bundle URL is the build folder itself; macOS: a .xctest bundle inside it.
        var directory = Bundle.main.bundleURL
        for _ in 0..<5 {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw TestSupportError("\(name) was not found near \(Bundle.main.bundleURL.path); run 'swift build' first")
    }

    /// A system tool (zbarimg, rsvg-convert, cjpeg, openssl…) that scripts/bootstrap installs.
    public static func system(_ name: String) throws -> URL {
        for folder in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/opt/homebrew/bin"] {
            let candidate = URL(fileURLWithPath: folder).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSupportError("\(name) is not installed; scripts/bootstrap installs it")
    }

    /// An absolute path as is, else a built product, else a system tool.
    public static func resolve(_ program: String) throws -> URL {
        if program.hasPrefix("/") { return URL(fileURLWithPath: program) }
        if let product = try? built(program) { return product }
        return try system(program)
    }
}

/// A process for `program` (see ``Executables/resolve(_:)``) with this environment plus `environment`.
func configuredProcess(_ program: String, _ arguments: [String], environment: [String: String]) throws -> Process {
    let process = Process()
    process.executableURL = try Executables.resolve(program)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    process.environment = env
    return process
}

/// Runs `program` (see ``Executables/resolve(_:)``) to completion, feeding it `input`.
public func run(_ program: String, _ arguments: [String], input: String? = nil,
                environment: [String: String] = [:]) throws -> CommandResult {
    let process = try configuredProcess(program, arguments, environment: environment)
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

/// A scratch folder, removed when released.
public final class ScratchFolder: Sendable {
    public let url: URL
    public var path: String { url.path }

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("errand-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// The path of `name` inside the folder.
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// A test setup problem (a missing tool or build product).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
