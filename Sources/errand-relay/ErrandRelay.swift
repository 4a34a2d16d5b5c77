import ArgumentParser
import ErrandRelay
import Foundation
import Logging

/// `errand-relay`: the self-hostable relay that stores and forwards sealed envelopes.
@main
struct ErrandRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "errand-relay",
        abstract: "The Errand relay: stores and forwards sealed envelopes it cannot read.",
        discussion: "Settings come from built-in defaults, then --config FILE (TOML), then ERRAND_RELAY_* "
            + "environment variables, then flags. relay/errand-relay.toml documents every setting.",
        version: "0.1.0",
        subcommands: [Serve.self, Invite.self, VerifierKey.self, AuditKeyCommand.self, AuditCommand.self]
    )

    /// Prints failures as `errand-relay: error: …` and exits 1.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigurationError {
            report(error.description, hint: "fix the setting, or run 'errand-relay serve --help'")
        } catch let error as RelayStartupError {
            report(error.description, hint: error.hint)
        } catch {
            exit(withError: error)
        }
    }

    static func report(_ message: String, hint: String?) -> Never {
        var text = "errand-relay: error: \(message)\n"
        if let hint { text += "errand-relay: hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
        Foundation.exit(1)
    }
}

/// Options shared by every command that opens the data folder.
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Folder for the relay's database.", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("TOML configuration file.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp(
        "Keep everything in this PostgreSQL database (postgres://USER@HOST:PORT/DB) instead of SQLite in the data folder, "
            + "so that several relay nodes can share it. Give the password by PGPASSWORD, not here.",
        valueName: "url"))
    var postgres: String?

    /// Defaults, then the file, then the environment, then flags.
    func resolve(_ adjust: (inout RelayConfiguration) throws -> Void = { _ in }) throws -> RelayConfiguration {
        var configuration = RelayConfiguration()
        if let config { try ConfigurationLoader.apply(file: config, to: &configuration) }
        try ConfigurationLoader.apply(environment: ProcessInfo.processInfo.environment, to: &configuration)
        if let data { configuration.dataDirectory = data }
        if let postgres {
            if PostgresLocation.hasPassword(postgres) {
                FileHandle.standardError.write(Data("errand-relay: warning: the --postgres URL carries a password, which other users of this machine can read in the process list; give it by PGPASSWORD or ERRAND_RELAY_STORAGE_POSTGRES instead\n".utf8))
            }
            configuration.postgresURL = postgres
        }
        try adjust(&configuration)
        try ConfigurationLoader.validate(configuration)
        return configuration
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the relay until SIGTERM or SIGINT.",
        discussion: "Prints a line containing 'listening' once it accepts connections.")

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("Address to listen on, HOST:PORT (port 0 picks a free one).", valueName: "host:port"))
    var listen: String?

    @Flag(help: "Let anyone create a mailbox (otherwise a token from 'errand-relay invite' is needed).")
    var openRegistration = false

    func run() async throws {
        let configuration = try common.resolve { configuration in
            if let listen { (configuration.host, configuration.port) = try ConfigurationLoader.parseListen(listen) }
            if openRegistration { configuration.openRegistration = true }
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["ERRAND_RELAY_LOG_LEVEL"] ?? "info") ?? .info
            return handler
        }
        let logger = Logger(label: "errand-relay")
        let scheme = configuration.tlsCertificatePath == nil ? "http" : "https"
        try await RelayRunner.serve(configuration: configuration, logger: logger) { port in
            let line = "errand-relay: listening on \(scheme)://\(configuration.host):\(port) (store: \(RelayRunner.storeDescription(configuration)), registration: \(configuration.openRegistration ? "open" : "by invitation"))\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }
}

struct Invite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a one-time registration token for a new host (errand host init --invite TOKEN).")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let configuration = try common.resolve()
        let token = try await RelayRunner.invite(configuration: configuration, logger: Logger(label: "errand-relay"))
        print(token)
    }
}

struct VerifierKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vkey",
        abstract: "Print the audit log's verifier key (name+hash+key); the key is created on first use.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        print(try RelayRunner.verifierKey(configuration: try common.resolve()))
    }
}

struct AuditKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-key",
        abstract: "Carry the audit log's signing key to another relay node on the same PostgreSQL database.",
        discussion: """
            Every node on one database signs one log, with one key, kept in each node's data folder (audit.key, mode 0600) and \
            never in the database. On a node already serving: 'errand-relay audit-key export --data DIR' prints the key as one \
            line; on the new node, before its first 'serve': 'errand-relay audit-key install --data DIR' reads that line from \
            standard input. For example: ssh node1 errand-relay audit-key export --data /var/lib/errand-relay | errand-relay audit-key install --data /var/lib/errand-relay
            """,
        subcommands: [Export.self, Install.self])

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print this node's audit key as one line (a secret: pipe it, never paste it into a chat or a ticket).")

        @OptionGroup var common: CommonOptions
        @Flag(help: "Print even when standard output is a terminal.") var toTerminal = false

        func run() async throws {
            let configuration = try common.resolve()
            if isatty(STDOUT_FILENO) == 1 && !toTerminal {
                throw RelayStartupError("the audit key is a secret and standard output is a terminal",
                                        hint: "pipe it to the other node: errand-relay audit-key export --data DIR | ssh NODE errand-relay audit-key install --data DIR (or add --to-terminal)")
            }
            print(try RelayRunner.exportAuditKey(configuration: configuration))
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read an exported audit key from standard input into this node's data folder (mode 0600); prints its verifier key.")

        @OptionGroup var common: CommonOptions
        @Flag(help: "Replace a different key already in the data folder (only for a node whose own key signed nothing anyone checks).")
        var replace = false

        func run() async throws {
            let configuration = try common.resolve()
            if isatty(STDIN_FILENO) == 1 {
                throw RelayStartupError("the key is read from standard input, and standard input is a terminal",
                                        hint: "pipe in what 'errand-relay audit-key export' printed: ssh NODE errand-relay audit-key export --data DIR | errand-relay audit-key install --data DIR")
            }
            // One line is all a key is; a bounded read, so a wrong pipe cannot fill the memory.
            let input = try FileHandle.standardInput.read(upToCount: 4096) ?? Data()
            let verifierKey = try RelayRunner.installAuditKey(String(decoding: input, as: UTF8.self), configuration: configuration, replace: replace)
            print("installed the audit key \(verifierKey) in \(configuration.dataDirectory)")
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check a relay's data folder: recompute the log, check the latest checkpoint, scan every stored body.",
        discussion: "Exit status 0 only when nothing is wrong. Run it on a stopped relay or a copy of its folder.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let configuration = try common.resolve()
        let report = try await RelayRunner.audit(configuration: configuration, logger: Logger(label: "errand-relay"))
        print("leaves: \(report.leaves) (\(report.leavesByEvent.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))")
        print("latest checkpoint: size \(report.checkpointSize)")
        print("stored envelopes: \(report.envelopes) (\(report.envelopeBytes) bytes), all checked")
        if report.passed {
            print("audit passed")
        } else {
            for finding in report.findings { FileHandle.standardError.write(Data("errand-relay: finding: \(finding)\n".utf8)) }
            FileHandle.standardError.write(Data("errand-relay: error: the audit found \(report.findings.count) problem(s)\n".utf8))
            throw ExitCode(1)
        }
    }
}
