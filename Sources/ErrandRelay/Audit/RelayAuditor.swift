import ErrandTransparency
import ErrandProtocol
import Foundation

/// What `errand-relay audit` found in a data folder.
public struct AuditReport: Sendable {
    public var leaves = 0
    public var leavesByEvent: [String: Int] = [:]
    public var checkpointSize: Int64 = 0
    public var envelopes = 0
    public var envelopeBytes = 0
    /// Problems; the audit fails when there is any.
    public var findings: [String] = []

    public var passed: Bool { findings.isEmpty }
}

/// Everything the operator's audit reads, from one consistent snapshot of the store.
struct AuditSnapshot {
    /// Integrated leaves, in index order.
    var leaves: [[UInt8]] = []
    /// Stored leaf hashes (level-0 nodes) by index.
    var leafNodes: [(Int, [UInt8])] = []
    var checkpoint: AuditCheckpoint?
    var envelopes: [(sequence: Int64, id: [UInt8], body: [UInt8])] = []
}

/// The operator's check of a relay's data folder: recomputes the log from the stored leaves,
/// checks the latest checkpoint's signature and root, and scans every stored body.
public enum RelayAuditor {
    static func audit(_ snapshot: AuditSnapshot, verifier: NoteVerifier) -> AuditReport {
        var report = AuditReport()
        var tree = MerkleTree()
        for (offset, leaf) in snapshot.leaves.enumerated() {
            if let parsed = try? AuditLeaf(bytes: leaf) {
                report.leavesByEvent["\(parsed.event)", default: 0] += 1
            } else {
                report.findings.append("leaf \(offset) is not an audit leaf (\(leaf.count) bytes)")
            }
            tree.append(leafHash: MerkleHash.leaf(leaf))
        }
        report.leaves = snapshot.leaves.count
        if let checkpoint = snapshot.checkpoint {
            do {
                let note = try SignedNote(parsing: checkpoint.note)
                try note.verify(verifier)
                let parsed = try Checkpoint(text: note.text)
                report.checkpointSize = Int64(parsed.size)
                if parsed.size > UInt64(tree.size) {
                    report.findings.append("the latest checkpoint covers \(parsed.size) leaves but only \(tree.size) are stored")
                } else if tree.root(size: Int(parsed.size)) != parsed.rootHash {
                    report.findings.append("the stored leaves do not give the root of the latest checkpoint (size \(parsed.size)): a leaf was changed or removed")
                }
                if parsed.origin != verifier.name { report.findings.append("the checkpoint's origin \(parsed.origin) is not the log key's name \(verifier.name)") }
            } catch {
                report.findings.append("the latest checkpoint does not verify: \(error)")
            }
        } else if !snapshot.leaves.isEmpty {
            report.findings.append("there are leaves but no checkpoint")
        }
        for (index, hash) in snapshot.leafNodes where index < tree.size && tree.leafHashes[index] != hash {
            report.findings.append("the stored hash of leaf \(index) does not match the leaf")
        }
        for body in snapshot.envelopes {
            report.envelopes += 1
            report.envelopeBytes += body.body.count
            guard let envelope = try? Envelope(parsing: body.body) else {
                report.findings.append("envelope \(body.sequence) is not a well-formed sealed envelope (\(body.body.count) bytes)")
                continue
            }
            if envelope.id.bytes != body.id { report.findings.append("envelope \(body.sequence) is stored under another id than the one it carries") }
        }
        return report
    }
}
