import ArgumentParser
import ErrandCompanion
import ErrandPeer
import ErrandRelayClient
import Foundation

/// `errand notify`: doorbells that tell this device, without content, that a host finished a task
/// while it was offline.
struct NotifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Be told when a host finishes a task while this device is offline (ntfy or a webhook).",
        discussion: """
            The relay calls the URL with a fixed text when the host posts a task's end and this device \
            is not connected; the call carries nothing of the task, the host or the mailbox. Open \
            errand (history, follow) to read what happened. Without --ntfy, --webhook or --off, lists \
            what is registered. Without --host, applies to every paired host.
            """)

    @OptionGroup var choice: HostChoice
    @Option(help: ArgumentHelp("An ntfy topic URL, e.g. https://ntfy.sh/my-secret-topic.", valueName: "url")) var ntfy: String?
    @Option(help: ArgumentHelp("A URL the relay POSTs {\"event\":\"doorbell\",\"v\":1} to.", valueName: "url")) var webhook: String?
    @Flag(help: "Remove every doorbell (for --host, or for all hosts).") var off = false
    @Flag(help: "Print JSON (when listing).") var json = false

    func validate() throws {
        let chosen = [ntfy != nil, webhook != nil, off].filter { $0 }.count
        guard chosen <= 1 else { throw ValidationError("give one of --ntfy, --webhook and --off") }
        for url in [ntfy, webhook].compactMap({ $0 }) {
            guard let components = URLComponents(string: url), components.scheme == "https" || components.scheme == "http",
                  components.host?.isEmpty == false else {
                throw ValidationError("'\(url)' is not an http(s) URL")
            }
        }
    }

    func run() async throws {
        let conversations = try await reportingPeerErrors { try choice.conversations() }
        if let url = ntfy ?? webhook {
            let kind = ntfy != nil ? "ntfy" : "webhook"
            for conversation in conversations {
                try await reportingPeerErrors { try await conversation.saveDoorbell(kind: kind, url: url) }
                Console.line("\(conversation.host.name): the relay will call \(TerminalText.neutralized(url)) (\(kind)) when a task ends while this device is offline")
            }
        } else if off {
            for conversation in conversations {
                let removed = try await reportingPeerErrors { try await conversation.removeDoorbells() }
                Console.line("\(conversation.host.name): \(removed == 0 ? "no doorbell was registered" : "\(removed) doorbell(s) removed")")
            }
        } else {
            var rows: [(host: String, doorbell: RelayClient.DoorbellInfo)] = []
            for conversation in conversations {
                for doorbell in try await reportingPeerErrors({ try await conversation.doorbells() }) {
                    rows.append((conversation.host.name, doorbell))
                }
            }
            if json {
                try Console.json(rows.map { ["host": $0.host, "id": $0.doorbell.id, "kind": $0.doorbell.kind, "url": $0.doorbell.url,
                                             "createdAt": $0.doorbell.createdAt] as [String: Any] })
            } else if rows.isEmpty {
                Console.line("No doorbells. Add one: errand notify --ntfy https://ntfy.sh/TOPIC (or --webhook URL)")
            } else {
                Console.line(Table.render(header: ["HOST", "KIND", "URL", "SINCE"], rows: rows.map {
                    [$0.host, $0.doorbell.kind, $0.doorbell.url, HostCommand.Devices.time($0.doorbell.createdAt)]
                }))
            }
        }
    }
}
