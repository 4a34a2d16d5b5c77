import ArgumentParser
import Foundation

/// `errand`: the host agent, the companion client and the audit tools in one command.
@main
struct Errand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "errand",
        abstract: "Message your own computer from another device, end-to-end encrypted.",
        discussion: "Pairing, sending and auditing arrive with the relay and host; today this tool offers "
            + "the building blocks they use, such as QR codes any phone can scan.",
        version: ErrandVersion.current,
        subcommands: [QRCommand.self]
    )

    /// Runs the command, printing failures the way people read them:
    /// `errand: error: …` then `errand: hint: …`, exit status 1.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as UserFacingError {
            error.report()
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

enum ErrandVersion {
    static let current = "0.1.0"
}
