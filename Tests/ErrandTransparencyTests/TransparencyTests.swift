import ErrandCrypto
import ErrandTransparency
import Foundation
import Testing

/// transparency-dev/merkle's test tree: 8 leaf inputs and the roots of every prefix.
enum ReferenceTree {
    static let leaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
        .map { try! ByteEncoding.bytes(hex: $0) }
    static let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    static var tree: MerkleTree { MerkleTree(leafHashes: leaves.map(MerkleHash.leaf)) }

    /// The shared probe files (transparency-dev/merkle testdata), when this checkout has them.
    static let probeFolder: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("shared/vectors/merkle")
    static var probesPresent: Bool { FileManager.default.fileExists(atPath: probeFolder.appendingPathComponent("inclusion").path) }
}

@Suite("RFC 9162 Merkle trees")
struct MerkleTests {
    @Test("Roots of sizes 0–8 match transparency-dev/merkle")
    func roots() {
        let tree = ReferenceTree.tree
        for size in 0...8 {
            #expect(ByteEncoding.hex(tree.root(size: size)) == ReferenceTree.roots[size], "size \(size)")
        }
    }

    @Test("Every inclusion and consistency proof of the reference tree verifies; altered ones fail")
    func proofs() throws {
        let tree = ReferenceTree.tree
        for size in 1...8 {
            let root = tree.root(size: size)
            for index in 0..<size {
                let proof = tree.inclusionProof(index: index, size: size)
                try MerkleProof.verifyInclusion(leafHash: tree.leafHashes[index], index: UInt64(index), size: UInt64(size), proof: proof, root: root)
                #expect(throws: MerkleProofError.self) {
                    try MerkleProof.verifyInclusion(leafHash: tree.leafHashes[(index + 1) % 8], index: UInt64(index), size: UInt64(size), proof: proof, root: root)
                }
                if !proof.isEmpty {
                    var bent = proof
                    bent[0][0] ^= 1
                    #expect(throws: MerkleProofError.self) {
                        try MerkleProof.verifyInclusion(leafHash: tree.leafHashes[index], index: UInt64(index), size: UInt64(size), proof: bent, root: root)
                    }
                }
            }
            for size1 in 1...size {
                let proof = tree.consistencyProof(from: size1, to: size)
                try MerkleProof.verifyConsistency(size1: UInt64(size1), size2: UInt64(size), proof: proof, root1: tree.root(size: size1), root2: root)
                if size1 < size {
                    #expect(throws: MerkleProofError.self) {
                        try MerkleProof.verifyConsistency(size1: UInt64(size1), size2: UInt64(size), proof: proof, root1: root, root2: tree.root(size: size1))
                    }
                }
            }
        }
        // A fork: two different roots for one size.
        #expect(throws: MerkleProofError.self) {
            try MerkleProof.verifyConsistency(size1: 5, size2: 5, proof: [], root1: tree.root(size: 5), root2: tree.root(size: 6))
        }
    }

    struct InclusionProbe: Decodable { let leafIdx: UInt64; let treeSize: UInt64; let root: String; let leafHash: String; let proof: [String]?; let desc: String; let wantErr: Bool }
    struct ConsistencyProbe: Decodable { let size1: UInt64; let size2: UInt64; let root1: String; let root2: String; let proof: [String]?; let desc: String; let wantErr: Bool }

    @Test("The full transparency-dev/merkle probe set (shared/vectors/merkle)",
          .enabled(if: ReferenceTree.probesPresent, "skipped: shared/vectors/merkle is not next to this checkout"))
    func probes() throws {
        let decode = { (text: String) in Array(Data(base64Encoded: text) ?? Data()) }
        var checked = 0
        for kind in ["inclusion", "consistency"] {
            let folder = ReferenceTree.probeFolder.appendingPathComponent(kind)
            let files = try #require(FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)?.allObjects as? [URL])
            for file in files where file.pathExtension == "json" {
                let data = try Data(contentsOf: file)
                let failed: Bool
                let wanted: Bool
                let label: String
                if kind == "inclusion" {
                    let probe = try JSONDecoder().decode(InclusionProbe.self, from: data)
                    wanted = probe.wantErr
                    label = probe.desc
                    do {
                        try MerkleProof.verifyInclusion(leafHash: decode(probe.leafHash), index: probe.leafIdx, size: probe.treeSize,
                                                        proof: (probe.proof ?? []).map(decode), root: decode(probe.root))
                        failed = false
                    } catch { failed = true }
                } else {
                    let probe = try JSONDecoder().decode(ConsistencyProbe.self, from: data)
                    wanted = probe.wantErr
                    label = probe.desc
                    do {
                        try MerkleProof.verifyConsistency(size1: probe.size1, size2: probe.size2, proof: (probe.proof ?? []).map(decode),
                                                          root1: decode(probe.root1), root2: decode(probe.root2))
                        failed = false
                    } catch { failed = true }
                }
                #expect(failed == wanted, "\(kind)/\(file.deletingLastPathComponent().lastPathComponent)/\(file.lastPathComponent): \(label)")
                checked += 1
            }
        }
        #expect(checked > 150)
    }
}

@Suite("C2SP signed notes and checkpoints")
struct SignedNoteTests {
    static let peterSigner = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let peterVerifier = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let peterText = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let peterNote = peterText + "\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

    @Test("Go's PeterNeumann example, reproduced byte for byte and verified")
    func goExample() throws {
        let signer = try NoteSigner(parsing: Self.peterSigner)
        #expect(signer.verifier.description == Self.peterVerifier)
        let note = try SignedNote.sign(Self.peterText, with: [signer])
        #expect(note.encoded == Self.peterNote)
        let parsed = try SignedNote(parsing: Self.peterNote)
        try parsed.verify(try NoteVerifier(parsing: Self.peterVerifier))
    }

    @Test("The C2SP example verifier key parses and its key id checks out")
    func c2spKey() throws {
        let key = try NoteVerifier(parsing: "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
        #expect(key.name == "example.com/foo")
        #expect(ByteEncoding.hex(key.keyID) == "530d903a")
        #expect(throws: SignedNoteError.self) { try NoteVerifier(parsing: "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k") }
    }

    @Test("Altered text, a different key, a forged signature or a malformed note are refused")
    func negative() throws {
        let verifier = try NoteVerifier(parsing: Self.peterVerifier)
        let altered = Self.peterNote.replacingOccurrences(of: "cryptography", with: "cryptographz")
        #expect(throws: SignedNoteError.self) { try SignedNote(parsing: altered).verify(verifier) }
        let other = try NoteSigner(name: "PeterNeumann", secretKey: Ed25519.SecretKey())
        #expect(throws: SignedNoteError.self) { try SignedNote.sign(Self.peterText, with: [other]).verify(verifier) }
        for bad in ["no blank line\n", Self.peterText + "\nnot a signature\n", Self.peterText + "\n\u{2014} PeterNeumann AAAA\n", "\n\n\u{2014} x y\n"] {
            #expect(throws: SignedNoteError.self) { try SignedNote(parsing: bad) }
        }
    }

    @Test("Checkpoints: text form, round trip, malformed lines refused")
    func checkpoints() throws {
        let root = try ByteEncoding.bytes(hex: ReferenceTree.roots[8])
        let checkpoint = Checkpoint(origin: "relay.example.com/errand", size: 8, rootHash: root)
        #expect(checkpoint.text == "relay.example.com/errand\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n")
        #expect(try Checkpoint(text: checkpoint.text) == checkpoint)
        let signer = try NoteSigner(name: "relay.example.com/errand", secretKey: Ed25519.SecretKey())
        let note = try SignedNote.sign(checkpoint.text, with: [signer])
        let parsed = try SignedNote(parsing: note.encoded)
        try parsed.verify(signer.verifier)
        #expect(try Checkpoint(text: parsed.text) == checkpoint)
        for bad in ["origin\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n", "origin\n8\nshort\n", "origin\n8\n", "origin\n-1\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"] {
            #expect(throws: SignedNoteError.self) { try Checkpoint(text: bad) }
        }
    }
}
