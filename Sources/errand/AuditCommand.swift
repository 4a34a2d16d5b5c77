import ArgumentParser
import ErrandCompanion
import ErrandHost
import ErrandPeer
import ErrandRelayClient
import ErrandTransparency
import Foundation

/// `errand audit …`: check the relay's transparency log from this device.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check that the relay logged what it did with this device's envelopes.",
        subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the relay's log: signed by the key pinned at pairing, consistent with what this device verified before, and including this device's envelopes.",
            discussion: "Exit status 0 only when all of that holds. On a finding, the signed checkpoints involved are saved as evidence under the state folder's audit-evidence/.")

        @OptionGroup var choice: HostChoice
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            // A state folder with a companion checks as that companion; one with only a host, as the host.
            let directory = choice.peer.directory
            let client: RelayClient
            let keyText: String?
            let state: any AuditState
            let countEvents: () -> (verified: Int, total: Int)
            if !CompanionStore.exists(in: directory), directory.contains("identity.key") {
                let host = try await reportingPeerErrors { try HostSetup.load(directory: directory) }
                client = relayClient(choice.peer.relay ?? host.settings.relayURL)
                keyText = (try? host.store.pinnedAuditKey()) ?? nil
                let hostState = HostAuditState(store: host.store)
                state = hostState
                countEvents = { (try? hostState.counts()) ?? (verified: 0, total: 0) }
            } else {
                let conversation = try await reportingPeerErrors { try choice.conversation() }
                client = conversation.client
                keyText = (try? conversation.store.auditVerifierKey(for: conversation.host.id)) ?? nil
                let companionState = CompanionAuditState(store: conversation.store, host: conversation.host.id)
                state = companionState
                countEvents = { (try? companionState.counts()) ?? (verified: 0, total: 0) }
            }
            guard let key = keyText, let verifier = try? NoteVerifier(parsing: key) else {
                throw UserFacingError("no audit-log key is pinned here (the relay had no log when this was set up)",
                                      hint: "pair again to pin the relay's log key")
            }
            let evidence = directory.file("audit-evidence")
            let result = try await reportingPeerErrors {
                try await AuditVerifier(client: client, verifier: verifier, state: state, evidenceFolder: evidence).verify()
            }
            let counts = countEvents()
            if json {
                var object: [String: Any] = ["passed": result.passed, "checkpointSize": result.checkpointSize, "verifiedNow": result.newlyVerified,
                                             "verified": counts.verified, "events": counts.total, "waiting": result.waiting, "findings": result.findings]
                if let folder = result.evidence { object["evidence"] = folder }
                try Console.json(object)
            } else {
                Console.line("log: \(verifier.name), checkpoint of \(result.checkpointSize) events, signed by the pinned key")
                Console.line("envelope events seen here: \(counts.verified) of \(counts.total) proven included\(result.waiting > 0 ? ", \(result.waiting) waiting for the relay to integrate them" : "")")
                for finding in result.findings { FileHandle.standardError.write(Data("errand: finding: \(finding)\n".utf8)) }
                if let folder = result.evidence { FileHandle.standardError.write(Data("errand: evidence saved in \(folder)\n".utf8)) }
            }
            guard result.passed else {
                throw UserFacingError("the relay's log does not match what this device saw (\(result.findings.count) finding(s))",
                                      hint: "keep the evidence folder; tell the relay's operator, or move to another relay")
            }
            if !json { Console.line("audit verified") }
        }
    }
}
