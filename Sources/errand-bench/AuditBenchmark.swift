import ArgumentParser
import ErrandCrypto
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import ErrandTransparency
import Foundation

/// How long a peer takes to verify the relay's log from its tiles: the whole tree recomputed
/// from N leaves and checked against a signed checkpoint (in memory, for N up to millions), and
/// the same over HTTP from a real relay process with a log of M events.
struct AuditBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Time to verify a log from its tiles: N leaves in memory, and M events fetched from a real relay (needs 'swift build -c release').")

    @Option(help: "Leaves for the in-memory verification.") var leaves = 1_000_000
    @Option(help: "Envelopes to post (each makes a stored and a delivered event) for the HTTP phase.") var envelopes = 5_000

    func run() async throws {
        // 1. In memory: leaf hashes, tree, root check, signature check.
        let signer = try NoteSigner(name: "bench/log", secretKey: Ed25519.SecretKey())
        var raw: [[UInt8]] = []
        raw.reserveCapacity(leaves)
        let mailbox = MailboxID(owner: Ed25519.SecretKey().publicKey)
        for index in 0..<leaves {
            raw.append(AuditLeaf(event: index % 2 == 0 ? .stored : .delivered, mailbox: mailbox, envelopeID: .random(),
                                 envelopeDigest: SHA256.hash([UInt8(index & 0xFF)]), time: 1_795_000_000).bytes)
        }
        let root = MerkleTree(leafHashes: raw.map(MerkleHash.leaf)).root()
        let note = try SignedNote.sign(Checkpoint(origin: "bench/log", size: UInt64(leaves), rootHash: root).text, with: [signer]).encoded
        let start = ContinuousClock.now
        let parsed = try SignedNote(parsing: note)
        try parsed.verify(signer.verifier)
        let checkpoint = try Checkpoint(text: parsed.text)
        var tree = MerkleTree()
        for leaf in raw { tree.append(leafHash: MerkleHash.leaf(leaf)) }
        guard tree.root() == checkpoint.rootHash else { throw BenchmarkError("root mismatch") }
        let memory = ContinuousClock.now - start
        print(String(format: "in memory: %d leaves verified against a signed checkpoint in %.2f s (%.2f µs per leaf)",
                     leaves, memory.seconds, memory.seconds * 1e6 / Double(leaves)))

        // 2. Over HTTP from a real relay: post, acknowledge, wait for integration, read every tile.
        let relay = try RelayProcessHandle(environment: [
            "ERRAND_RELAY_LOG_LEVEL": "error", "ERRAND_RELAY_LIMITS_REQUESTS_PER_SECOND_PER_IP": "0",
            "ERRAND_RELAY_LIMITS_POSTS_PER_SECOND_PER_MAILBOX": "0", "ERRAND_RELAY_LIMITS_MAILBOX_MAX_ENVELOPES": "10000000",
        ])
        defer { relay.stop() }
        let client = RelayClient(baseURL: relay.url)
        let owner = Ed25519.SecretKey()
        let token = SendToken()
        try await client.createMailbox(owner: owner)
        try await client.addSendToken(token.hash, owner: owner)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    var ids: [EnvelopeID] = []
                    for _ in stride(from: worker, to: envelopes, by: 16) {
                        let envelope = try Envelope(ciphertext: SecureRandom.bytes(count: 256))
                        _ = try await client.post(envelope, to: MailboxID(owner: owner.publicKey), token: token)
                        ids.append(envelope.id)
                    }
                    for start in stride(from: 0, to: ids.count, by: 500) {
                        _ = try await client.acknowledge(Array(ids[start..<min(start + 500, ids.count)]), owner: owner)
                    }
                }
            }
            try await group.waitForAll()
        }
        let verifier = try NoteVerifier(parsing: try await client.auditVerifierKey())
        let expected = UInt64(envelopes * 2)
        while true {
            let note = try SignedNote(parsing: try await client.auditCheckpoint())
            if try Checkpoint(text: note.text).size >= expected { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let httpStart = ContinuousClock.now
        let (remote, _, fetched) = try await AuditLogReader.read(client: client, verifier: verifier)
        let http = ContinuousClock.now - httpStart
        let perLeaf = http.seconds / Double(fetched.count)
        print(String(format: "over HTTP: %llu events read from %d entry bundles and verified in %.2f s (%.1f µs per leaf; 1,000,000 leaves ≈ %.1f s)",
                     remote.size, (fetched.count + 255) / 256, http.seconds, perLeaf * 1e6, perLeaf * 1_000_000))
    }
}
