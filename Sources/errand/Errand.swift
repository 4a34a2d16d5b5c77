import ArgumentParser
import Foundation

/// `errand`: the host agent, the companion client and the audit tools in one command.
@main
struct Errand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "errand",
        abstract: "Message your own computer from another device, end-to-end encrypted.",
        discussion: "A host ('errand host …') runs on the computer; a companion ('errand pair', 'errand hosts') pairs with it by QR code. "
            + "Every peer command takes --home DIR (default $ERRAND_HOME, else ~/.errand).",
        version: ErrandVersion.current,
        subcommands: [HostCommand.self, PairCommand.self, HostsCommand.self, SendCommand.self, FollowCommand.self, CancelCommand.self, NotifyCommand.self,
                      HistoryCommand.self, ApprovalsCommand.self, ApproveCommand.self, ActionsCommand.self, StatusCommand.self, AuditCommand.self, QRCommand.self]
    )

    /// Runs the command, printing failures the way people read them:
    /// `errand: error: …` then `errand: hint: …`, exit status 1.
    static func main() async {
        // Everything this process creates is private to its user (state files, images of codes).
        umask(0o077)
        // A child that exits without reading its input must not end this process (the host agent).
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as UserFacingError {
            error.report()
            Foundation.exit(1)
        } catch {
            let message = fullMessage(for: error)
            if CommandLine.arguments.dropFirst().first == "send", message.hasPrefix("Error: Unknown option") {
                // An argument meant for the action or the agent that starts with '-': say how to pass it.
                FileHandle.standardError.write(Data("\(message)\nerrand: hint: words that start with '-' go after '--': errand send --action NAME -- -n TODO\n".utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}

enum ErrandVersion {
    static let current = "0.1.0"
}
