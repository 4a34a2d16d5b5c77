import ArgumentParser
import ErrandCompanion
import ErrandPeer
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
            let conversation = try await reportingPeerErrors { try choice.conversation() }
            let store = conversation.store
            let host = conversation.host
            let keyText = (try? store.auditVerifierKey(for: host.id)) ?? nil
            guard let key = keyText, let verifier = try? NoteVerifier(parsing: key) else {
                throw UserFacingError("the pairing with \(host.name) pinned no audit-log key (its relay had no log when you paired)",
                                      hint: "pair again ('errand pair') to pin the relay's log key")
            }
            let state = CompanionAuditState(store: store, host: host.id)
            let evidence = choice.peer.directory.file("audit-evidence")
            let result = try await reportingPeerErrors {
                try await AuditVerifier(client: conversation.client, verifier: verifier, state: state, evidenceFolder: evidence).verify()
            }
            let counts = (try? state.counts()) ?? (verified: 0, total: 0)
            if json {
                var object: [String: Any] = ["passed": result.passed, "checkpointSize": result.checkpointSize, "verifiedNow": result.newlyVerified,
                                             "verified": counts.verified, "events": counts.total, "waiting": result.waiting, "findings": result.findings]
                if let folder = result.evidence { object["evidence"] = folder }
                try Console.json(object)
            } else {
                Console.line("log: \(verifier.name), checkpoint of \(result.checkpointSize) events, signed by the pinned key")
                Console.line("this device's envelope events: \(counts.verified) of \(counts.total) proven included\(result.waiting > 0 ? ", \(result.waiting) waiting for the relay to integrate them" : "")")
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
