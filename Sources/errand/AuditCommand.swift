import ArgumentParser
import ErrandCompanion
import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import ErrandTransparency
import Foundation

/// `errand audit …`: check the relay's transparency log from this device or host.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check that the relay logged what it did with this peer's envelopes.",
        discussion: "A state folder with a companion checks as that companion; one with only a host, as the host.",
        subcommands: [Verify.self, Show.self, Prove.self])

    /// The relay, the pinned key and the records of the peer in `--home`.
    struct Peer {
        let client: RelayClient
        let verifier: NoteVerifier
        let state: any AuditState
        let evidence: String

        init(_ choice: HostChoice) async throws {
            let directory = choice.peer.directory
            let keyText: String?
            if !CompanionStore.exists(in: directory), directory.contains("identity.key") {
                let host = try await reportingPeerErrors { try HostSetup.load(directory: directory) }
                keyText = (try? host.store.pinnedAuditKey()) ?? nil
                client = relayClient(choice.peer.relay ?? host.settings.relayURL, for: host)
                state = HostAuditState(store: host.store)
            } else {
                let conversation = try await reportingPeerErrors { try choice.conversation() }
                client = conversation.client
                keyText = (try? conversation.store.auditVerifierKey(for: conversation.host.id)) ?? nil
                state = CompanionAuditState(store: conversation.store, host: conversation.host.id)
            }
            guard let key = keyText, let verifier = try? NoteVerifier(parsing: key) else {
                throw UserFacingError("no audit-log key is pinned here (the relay had no log when this was set up)",
                                      hint: "pair again to pin the relay's log key")
            }
            self.verifier = verifier
            evidence = directory.file("audit-evidence")
        }

        var counts: (verified: Int, total: Int) {
            let records = (try? state.allRecords()) ?? []
            return (records.filter { $0.index != nil }.count, records.count)
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the relay's log: signed by the pinned key, consistent with what was verified before, and including this peer's envelopes.",
            discussion: "Exit status 0 only when all of that holds. On a finding, the signed checkpoints involved are saved as evidence under the state folder's audit-evidence/.")

        @OptionGroup var choice: HostChoice
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let peer = try await Peer(choice)
            let result = try await reportingPeerErrors {
                try await AuditVerifier(client: peer.client, verifier: peer.verifier, state: peer.state, evidenceFolder: peer.evidence).verify()
            }
            let counts = peer.counts
            if json {
                var object: [String: Any] = ["passed": result.passed, "checkpointSize": result.checkpointSize, "verifiedNow": result.newlyVerified,
                                             "verified": counts.verified, "events": counts.total, "waiting": result.waiting, "findings": result.findings]
                if let folder = result.evidence { object["evidence"] = folder }
                try Console.json(object)
            } else {
                Console.line("log: \(peer.verifier.name), checkpoint of \(result.checkpointSize) events, signed by the pinned key")
                Console.line("envelope events seen here: \(counts.verified) of \(counts.total) proven included\(result.waiting > 0 ? ", \(result.waiting) waiting for the relay to integrate them" : "")")
                for finding in result.findings { FileHandle.standardError.write(Data("errand: finding: \(finding)\n".utf8)) }
                if let folder = result.evidence { FileHandle.standardError.write(Data("errand: evidence saved in \(folder)\n".utf8)) }
            }
            guard result.passed else {
                throw UserFacingError("the relay's log does not match what this peer saw (\(result.findings.count) finding(s))",
                                      hint: "keep the evidence folder; tell the relay's operator, or move to another relay")
            }
            if !json { Console.line("audit verified") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the log's events (read from its tiles and checked against the signed checkpoint), this peer's marked.")

        @OptionGroup var choice: HostChoice
        @Flag(help: "Only this peer's envelope events.") var mine = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let peer = try await Peer(choice)
            let (checkpoint, _, leaves) = try await reportingPeerErrors { try await AuditLogReader.read(client: peer.client, verifier: peer.verifier) }
            var own: [[UInt8]: AuditRecord] = [:]
            for (record, _) in (try? peer.state.allRecords()) ?? [] {
                for hash in record.candidateLeafHashes { own[hash] = record }
            }
            var rows: [[String: Any]] = []
            for (index, leaf) in leaves.enumerated() {
                let record = own[MerkleHash.leaf(leaf)]
                guard !mine || record != nil, let parsed = try? AuditLeaf(bytes: leaf) else { continue }
                var row: [String: Any] = ["index": index, "event": "\(parsed.event)", "hour": Int(parsed.hour) * 3600, "mine": record != nil]
                if let record { row["envelope"] = record.envelopeID.description }
                rows.append(row)
            }
            if json {
                try Console.json(["checkpointSize": checkpoint.size, "origin": checkpoint.origin, "events": rows] as [String: Any])
                return
            }
            Console.line("log \(checkpoint.origin): \(checkpoint.size) events, all matching the signed checkpoint")
            Console.line(Table.render(header: ["INDEX", "EVENT", "HOUR (UTC)", "MINE"], rows: rows.map { row in
                [String(row["index"] as! Int), row["event"] as! String,
                 ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(row["hour"] as! Int))),
                 (row["envelope"] as? String).map { "yes (\($0.prefix(8)))" } ?? ""]
            }))
        }
    }

    struct Prove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write an offline proof (C2SP tlog-proof) that the relay logged an envelope of this peer.",
            discussion: "The proof holds the leaf (as 'extra'), its index, the inclusion proof and the signed checkpoint; anyone with the relay's verifier key can check it.")

        @OptionGroup var choice: HostChoice
        @Option(help: ArgumentHelp("Which event: stored or delivered.", valueName: "event")) var event = "stored"
        @Option(help: ArgumentHelp("Write the proof here instead of standard output.", valueName: "file")) var output: String?
        @Argument(help: ArgumentHelp("The envelope id (hex) or its first characters.", valueName: "envelope")) var envelope: String

        func run() async throws {
            let peer = try await Peer(choice)
            let records = ((try? peer.state.allRecords()) ?? []).filter {
                $0.record.envelopeID.description.hasPrefix(envelope.lowercased()) && "\($0.record.event)" == event
            }
            guard records.count == 1, let (record, _) = records.first else {
                throw UserFacingError(records.isEmpty ? "this peer has no \(event) event for an envelope \(envelope)" : "several envelopes start with \(envelope)",
                                      hint: "see them with 'errand audit show --mine'")
            }
            let (checkpoint, noteText) = try await reportingPeerErrors {
                try await AuditLogReader.verifiedCheckpoint(client: peer.client, verifier: peer.verifier)
            }
            var proven: (index: Int64, hash: [UInt8], proof: [[UInt8]])?
            for hash in record.candidateLeafHashes {
                guard let size = Int64(exactly: checkpoint.size),
                      let index = try? await peer.client.auditLeafIndex(leafHash: hash), index >= 0, index < size,
                      let proof = try? await peer.client.auditInclusionProof(index: index, size: size),
                      (try? MerkleProof.verifyInclusion(leafHash: hash, index: UInt64(index), size: checkpoint.size, proof: proof, root: checkpoint.rootHash)) != nil
                else { continue }
                proven = (index, hash, proof)
                break
            }
            guard let proven else {
                throw UserFacingError("the relay's log does not (yet) include this event", hint: "run 'errand audit verify' to see whether this is a finding")
            }
            let leaf = record.candidateLeafHashes.firstIndex(of: proven.hash).map { [0, -3600, 3600][$0] }.map {
                AuditLeaf(event: record.event, mailbox: record.mailbox, envelopeID: record.envelopeID, envelopeDigest: record.digest, time: record.time + Int64($0)).bytes
            } ?? []
            var text = "c2sp.org/tlog-proof@v1\n"
            text += "extra \(Data(leaf).base64EncodedString())\n"
            text += "index \(proven.index)\n"
            for hash in proven.proof { text += Data(hash).base64EncodedString() + "\n" }
            text += "\n" + noteText
            if let output {
                try QROutput.writePrivately(Array(text.utf8), to: output)
                Console.line("proof written to \(output) (leaf \(proven.index) of \(checkpoint.size))")
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
        }
    }
}
