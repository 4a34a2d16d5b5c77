import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTestSupport
import ErrandTransparency
import Foundation
import Testing

/// Reads the relay's public log endpoints.
struct LogReader {
    let url: String

    func get(_ path: String) async throws -> RawResponse { try await raw("GET", url + path) }

    func checkpoint(verifier: NoteVerifier) async throws -> Checkpoint {
        let note = try SignedNote(parsing: try await get("/checkpoint").body)
        try note.verify(verifier)
        return try Checkpoint(text: note.text)
    }

    func proof(_ path: String) async throws -> [[UInt8]] {
        struct Answer: Decodable { let proof: [String] }
        let answer = try JSONDecoder().decode(Answer.self, from: Data(try await get(path).body.utf8))
        return answer.proof.map { Array(Data(base64Encoded: $0)!) }
    }

    /// Waits until the log has integrated at least `size` leaves.
    func waitForSize(_ size: UInt64, verifier: NoteVerifier) async throws -> Checkpoint {
        for _ in 0..<200 {
            if let checkpoint = try? await checkpoint(verifier: verifier), checkpoint.size >= size { return checkpoint }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw TestSupportError("the log never reached \(size) leaves")
    }
}

@Suite("Audit log: leaves, checkpoints, tiles and proofs")
struct AuditLogTests {
    @Test("Each stored and delivered envelope becomes a leaf the sender and recipient can find and prove; checkpoints are signed and consistent")
    func leavesAndProofs() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let reader = LogReader(url: relay.url)
            let verifier = try NoteVerifier(parsing: try await reader.get("/v1/log/key").body.trimmingCharacters(in: .whitespacesAndNewlines))
            var envelopes: [Envelope] = []
            for _ in 0..<5 {
                let envelope = sampleEnvelope()
                envelopes.append(envelope)
                _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            }
            let first = try await reader.waitForSize(5, verifier: verifier)
            _ = try await relay.client.acknowledge(envelopes.prefix(2).map(\.id), owner: owner.key)
            let second = try await reader.waitForSize(7, verifier: verifier)

            // The sender (or the recipient) recomputes its leaves and proves them.
            let now = Int64(Date().timeIntervalSince1970)
            for (envelope, event) in [(envelopes[0], AuditLeaf.Event.stored), (envelopes[4], .stored), (envelopes[1], .delivered)] {
                let leaf = AuditLeaf(event: event, mailbox: owner.mailbox, envelopeID: envelope.id, envelopeDigest: SHA256.hash(envelope.encoded), time: now)
                let leafHash = MerkleHash.leaf(leaf.bytes)
                struct Index: Decodable { let index: Int64 }
                let found = try JSONDecoder().decode(Index.self, from: Data(try await reader.get("/v1/log/leaf?hash=\(ByteEncoding.base64URL(leafHash))").body.utf8))
                let proof = try await reader.proof("/v1/log/inclusion?index=\(found.index)&size=\(second.size)")
                try MerkleProof.verifyInclusion(leafHash: leafHash, index: UInt64(found.index), size: second.size, proof: proof, root: second.rootHash)
            }
            // A leaf for an envelope that was never posted is not there.
            let stranger = AuditLeaf(event: .stored, mailbox: owner.mailbox, envelopeID: .random(), envelopeDigest: SHA256.hash([1]), time: now)
            #expect(try await reader.get("/v1/log/leaf?hash=\(ByteEncoding.base64URL(MerkleHash.leaf(stranger.bytes)))").status == 404)

            let consistency = try await reader.proof("/v1/log/consistency?from=\(first.size)&to=\(second.size)")
            try MerkleProof.verifyConsistency(size1: first.size, size2: second.size, proof: consistency, root1: first.rootHash, root2: second.rootHash)

            // Tiles: the entry bundle and the level-0 hash tile match the checkpoint.
            let width = second.size
            let bundle = try await raw("GET", relay.url + "/" + TilePath.path(level: nil, index: 0, partialWidth: width)).bytes
            var leaves: [[UInt8]] = []
            var offset = 0
            while offset < bundle.count {
                let length = Int(bundle[offset]) << 8 | Int(bundle[offset + 1])
                leaves.append(Array(bundle[(offset + 2)..<(offset + 2 + length)]))
                offset += 2 + length
            }
            #expect(leaves.count == Int(width))
            #expect(leaves.allSatisfy { (try? AuditLeaf(bytes: $0)) != nil })
            #expect(MerkleTree(leafHashes: leaves.map(MerkleHash.leaf)).root() == second.rootHash)
            let hashes = try await raw("GET", relay.url + "/" + TilePath.path(level: 0, index: 0, partialWidth: width)).bytes
            #expect(hashes == leaves.map(MerkleHash.leaf).flatMap { $0 })
            // Leaves name no mailbox: the mailbox id appears in none of them.
            #expect(!(0...(bundle.count - 16)).contains { Array(bundle[$0..<($0 + 16)]) == owner.mailbox.bytes })
            #expect(try await raw("GET", relay.url + "/tile/0/001").status == 404)
        }
    }

    @Test("Integrations of uneven batches give the roots and proofs of the same tree held in memory (nodes of unstored levels computed)")
    func integrationsMatchTheTree() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        let log = AuditLog(store: store, signer: try NoteSigner(name: "test/log", secretKey: Ed25519.SecretKey()))
        let (mailbox, token) = try await makeMailbox(store)
        var tree = MerkleTree()
        var sizes: [Int64] = []
        // Batches of 1, 2, 3, … leaves: sizes cross every level up to 2^9 at odd places.
        for batch in 1...30 {
            for _ in 0..<batch {
                let envelope = sampleEnvelope(size: 32)
                _ = try await store.storeEnvelope(IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: 100, expiresAt: 10_000),
                                                  sendToken: token.hash, quota: MailboxQuota(maximumEnvelopes: 10_000, maximumBytes: 10_000_000))
            }
            for leaf in try await store.pendingAuditLeaves(after: Int64(tree.size), limit: 1000) { tree.append(leafHash: MerkleHash.leaf(leaf.bytes)) }
            let size = try await log.integrate()
            #expect(size == Int64(tree.size))
            let note = try #require(try await store.latestAuditCheckpoint()).note
            #expect(try Checkpoint(text: SignedNote(parsing: note).text).rootHash == tree.root())
            sizes.append(size)
        }
        let size = Int(sizes.last!)
        for index in [0, 1, 5, 15, 16, 17, 255, 256, 300, size - 1] {
            #expect(try await log.inclusionProof(index: Int64(index), size: Int64(size)) == tree.inclusionProof(index: index, size: size), "leaf \(index)")
        }
        for earlier in sizes.prefix(29) where earlier % 3 == 0 || earlier == 1 {
            #expect(try await log.consistencyProof(from: earlier, to: Int64(size)) == tree.consistencyProof(from: Int(earlier), to: size), "from \(earlier)")
        }
        try await store.close()
    }

    @Test("Tile paths encode and parse like C2SP tlog-tiles")
    func tilePaths() {
        #expect(TilePath.encode(index: 1_234_067) == "x001/x234/067")
        #expect(TilePath.encode(index: 5) == "005")
        #expect(TilePath.path(level: 1, index: 1000, partialWidth: 17) == "tile/1/x001/000.p/17")
        let parsed = TilePath.parse(["entries", "x001", "x234", "067.p", "9"])
        #expect(parsed?.level == nil && parsed?.index == 1_234_067 && parsed?.partialWidth == 9)
        #expect(TilePath.parse(["0", "12"]) == nil)
        #expect(TilePath.parse(["0", "x001"]) == nil)
        #expect(TilePath.parse(["0", "001.p", "256"]) == nil)
    }
}

@Suite("errand-relay audit and vkey", .serialized)
struct OperatorAuditTests {
    @Test("The audit passes on an honest store and finds a rewritten leaf, a dropped leaf and a body that is not an envelope")
    func detects() async throws {
        let folder = try ScratchFolder()
        let relay = try await RelayProcess.start(data: folder.path, arguments: ["--open-registration"])
        let client = RelayClient(baseURL: relay.baseURL)
        let owner = Ed25519.SecretKey()
        let token = SendToken()
        try await client.createMailbox(owner: owner)
        try await client.addSendToken(token.hash, owner: owner)
        for _ in 0..<4 { _ = try await client.post(sampleEnvelope(), to: MailboxID(owner: owner.publicKey), token: token) }
        let vkey = try await runAsync("errand-relay", ["vkey", "--data", folder.path])
        let verifier = try NoteVerifier(parsing: vkey.output.trimmingCharacters(in: .whitespacesAndNewlines))
        _ = try await LogReader(url: relay.baseURL).waitForSize(4, verifier: verifier)
        #expect(await relay.stop() == 0)

        let honest = try await runAsync("errand-relay", ["audit", "--data", folder.path])
        #expect(honest.status == 0, "\(honest.errorOutput)")
        #expect(honest.output.contains("leaves: 4 (stored 4)"))
        #expect(honest.output.contains("audit passed"))

        let database = folder.path + "/relay.sqlite"
        func sql(_ statement: String) async throws {
            let result = try await runAsync("sqlite3", [database, statement])
            #expect(result.status == 0, "\(result.errorOutput)")
        }
        // A rewritten leaf.
        try await sql("UPDATE audit_leaf SET leaf = X'01010000000000000000000000000000000000000000000000000000000000000000000000' || X'' WHERE idx = 2")
        let rewritten = try await runAsync("errand-relay", ["audit", "--data", database.replacingOccurrences(of: "/relay.sqlite", with: "")])
        #expect(rewritten.status == 1)
        #expect(rewritten.errorOutput.contains("do not give the root of the latest checkpoint"))

        // A body that is not a sealed envelope.
        try await sql("UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE idx = 1) WHERE idx = 2")
        try await sql("UPDATE envelope SET body = X'48656c6c6f' WHERE seq = (SELECT MIN(seq) FROM envelope)")
        let junk = try await runAsync("errand-relay", ["audit", "--data", folder.path])
        #expect(junk.status == 1)
        #expect(junk.errorOutput.contains("is not a well-formed sealed envelope"))

        // A dropped leaf.
        try await sql("DELETE FROM audit_leaf WHERE idx = (SELECT MAX(idx) FROM audit_leaf)")
        let dropped = try await runAsync("errand-relay", ["audit", "--data", folder.path])
        #expect(dropped.status == 1)
        #expect(dropped.errorOutput.contains("covers 4 leaves but only 3 are stored"))
    }
}

@Suite("Audit tile requests out of range")
struct TileBoundsTests {
    @Test("Huge levels and indices are refused with 404, never a crash")
    func hugeRequests() async throws {
        try await TestRelay.with { relay async throws in
            for path in ["/tile/7/000", "/tile/63/000", "/tile/0/x018/x446/x744/x073/x709/x551/999", "/tile/entries/x018/x446/x744/x073/x709/x551/615",
                         "/tile/2/x072/x057/x594/x037/x927/x935", "/tile/entries/000.p/255"] {
                #expect(try await raw("GET", relay.url + path).status == 404, "\(path)")
            }
            #expect(try await raw("GET", relay.url + "/healthz").status == 200)
        }
    }
}
