import ErrandCrypto
public import ErrandProtocol
public import ErrandRelayClient
public import ErrandTransparency
public import Foundation

/// An envelope event this peer took part in, to be found in the relay's log.
public struct AuditRecord: Sendable, Equatable {
    public let envelopeID: EnvelopeID
    public let mailbox: MailboxID
    /// SHA-256 of the whole envelope.
    public let digest: [UInt8]
    public let event: AuditLeaf.Event
    /// When this peer saw the event happen (Unix seconds).
    public let time: Int64

    public init(envelopeID: EnvelopeID, mailbox: MailboxID, digest: [UInt8], event: AuditLeaf.Event, time: Int64) {
        self.envelopeID = envelopeID
        self.mailbox = mailbox
        self.digest = digest
        self.event = event
        self.time = time
    }

    /// Leaf hashes for the hours around `time` (the relay's clock may differ a little).
    public var candidateLeafHashes: [[UInt8]] {
        [0, -3600, 3600].map { shift in
            MerkleHash.leaf(AuditLeaf(event: event, mailbox: mailbox, envelopeID: envelopeID, envelopeDigest: digest, time: time + Int64(shift)).bytes)
        }
    }
}

/// Where a peer keeps its audit state: the last verified checkpoint and its records.
public protocol AuditState: Sendable {
    func lastVerifiedCheckpoint() throws -> String?
    func saveVerifiedCheckpoint(_ note: String) throws
    func pendingRecords() throws -> [AuditRecord]
    func markVerified(_ record: AuditRecord, index: Int64) throws
    /// Every record, with its leaf index once proven.
    func allRecords() throws -> [(record: AuditRecord, index: Int64?)]
}

/// What one verification found.
public struct AuditVerification: Sendable {
    public var checkpointSize: UInt64 = 0
    public var newlyVerified = 0
    /// Records not in the log yet but recent enough to be waiting for integration.
    public var waiting = 0
    public var findings: [String] = []
    /// Folder where evidence of a finding was saved.
    public var evidence: String?

    public var passed: Bool { findings.isEmpty }
}

/// A peer's check of the relay: the checkpoint is signed by the pinned key, consistent with the
/// last one this peer verified, and includes this peer's own envelope events.
public struct AuditVerifier: Sendable {
    /// How long the relay may take to integrate an event before its absence is a finding.
    public static let integrationGrace: Int64 = 120

    public let client: RelayClient
    public let verifier: NoteVerifier
    public let state: any AuditState
    /// Where evidence is written (a subfolder per finding), owner-only.
    public let evidenceFolder: String

    public init(client: RelayClient, verifier: NoteVerifier, state: any AuditState, evidenceFolder: String) {
        self.client = client
        self.verifier = verifier
        self.state = state
        self.evidenceFolder = evidenceFolder
    }

    public func verify(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws(PeerError) -> AuditVerification {
        var result = AuditVerification()
        let noteText = try await AuditLogReader.checkpointNote(client: client)
        let checkpoint: Checkpoint
        do {
            checkpoint = try Checkpoint.verified(note: noteText, by: verifier)
        } catch {
            result.findings.append("the relay's checkpoint is not signed by the pinned log key: \(error)")
            result.evidence = saveEvidence(["checkpoint-received.txt": noteText])
            return result
        }
        result.checkpointSize = checkpoint.size
        guard let currentSize = Int64(exactly: checkpoint.size) else {
            result.findings.append("the relay's checkpoint claims an impossible size \(checkpoint.size)")
            result.evidence = saveEvidence(["checkpoint-now.txt": noteText])
            return result
        }
        var previousText: String?
        do { previousText = try state.lastVerifiedCheckpoint() } catch { throw PeerError("cannot read the audit state: \(error)") }
        if let previousText {
            guard let previous = try? Checkpoint(text: (try SignedNote(parsing: previousText)).text) else {
                throw PeerError("the checkpoint this peer saved before cannot be read", hint: "the state database may be damaged")
            }
            do {
                guard checkpoint.size >= previous.size else {
                    throw MerkleProofError("the log shrank from \(previous.size) to \(checkpoint.size) leaves")
                }
                if previous.size == 0 {
                    // Every log extends the empty one (there is no proof to ask for), as long as
                    // what was signed then really was the empty tree.
                    guard previous.rootHash == MerkleHash.empty else { throw MerkleProofError("a checkpoint of 0 leaves had a root other than the empty tree's") }
                } else {
                    let proof = checkpoint.size == previous.size ? [] : try await client.auditConsistencyProof(from: Int64(previous.size), to: currentSize)
                    try MerkleProof.verifyConsistency(size1: previous.size, size2: checkpoint.size, proof: proof,
                                                      root1: previous.rootHash, root2: checkpoint.rootHash)
                }
            } catch {
                result.findings.append("the relay's log is not consistent with the checkpoint this device verified before: \(error)")
                result.evidence = saveEvidence(["checkpoint-before.txt": previousText, "checkpoint-now.txt": noteText])
                return result
            }
        }
        // Consistent: this is now the checkpoint to compare with, whatever the records show
        // (keeping an older one would let a later fork go unnoticed).
        do { try state.saveVerifiedCheckpoint(noteText) } catch { throw PeerError("cannot save the verified checkpoint: \(error)") }
        // Own events: each must be in the log (once integrated) and proven included.
        let records: [AuditRecord]
        do { records = try state.pendingRecords() } catch { throw PeerError("cannot read the audit records: \(error)") }
        for record in records {
            var found: (index: Int64, hash: [UInt8])?
            for hash in record.candidateLeafHashes {
                let index: Int64?
                do { index = try await client.auditLeafIndex(leafHash: hash) } catch {
                    throw PeerError(relay: error, relayURL: client.baseURL, doing: "look up an envelope in the log")
                }
                if let index, index >= 0, index < currentSize {
                    found = (index, hash)
                    break
                }
            }
            guard let found else {
                if now - record.time > Self.integrationGrace {
                    result.findings.append("the relay's log has no \(record.event) event for envelope \(record.envelopeID) of \(Date(timeIntervalSince1970: TimeInterval(record.time)))")
                } else {
                    result.waiting += 1
                }
                continue
            }
            do {
                let proof = try await client.auditInclusionProof(index: found.index, size: currentSize)
                try MerkleProof.verifyInclusion(leafHash: found.hash, index: UInt64(found.index), size: checkpoint.size, proof: proof, root: checkpoint.rootHash)
                try state.markVerified(record, index: found.index)
                result.newlyVerified += 1
            } catch {
                result.findings.append("the inclusion proof for envelope \(record.envelopeID) does not verify: \(error)")
            }
        }
        if !result.findings.isEmpty && result.evidence == nil {
            result.evidence = saveEvidence(["checkpoint-now.txt": noteText, "findings.txt": result.findings.joined(separator: "\n") + "\n"])
        }
        return result
    }

    /// Writes the evidence files (0600) into a new folder; returns its path.
    private func saveEvidence(_ files: [String: String]) -> String? {
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let folder = (evidenceFolder as NSString).appendingPathComponent(stamp)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for (name, text) in files { try OwnerOnlyFile.write(Array(text.utf8), to: (folder as NSString).appendingPathComponent(name)) }
            return folder
        } catch {
            return nil
        }
    }
}

/// Reading the whole log from its tiles: every leaf, checked against a signed checkpoint.
public enum AuditLogReader {
    /// The largest log this reader fetches whole (a signed size above it is refused, not fetched).
    public static let maximumLeaves: UInt64 = 100_000_000

    /// The relay's latest checkpoint note, unchecked.
    public static func checkpointNote(client: RelayClient) async throws(PeerError) -> String {
        do { return try await client.auditCheckpoint() } catch {
            throw PeerError(relay: error, relayURL: client.baseURL, doing: "read the relay's checkpoint")
        }
    }

    /// The relay's latest checkpoint, checked against the pinned key; and its note text.
    public static func verifiedCheckpoint(client: RelayClient, verifier: NoteVerifier) async throws(PeerError) -> (Checkpoint, String) {
        let noteText = try await checkpointNote(client: client)
        do { return (try Checkpoint.verified(note: noteText, by: verifier), noteText) } catch {
            throw PeerError("the relay's checkpoint is not signed by the pinned log key: \(error)")
        }
    }

    /// Fetches the entry bundles up to the checkpoint's size and checks that the leaves give its
    /// root. Returns the checkpoint (verified with `verifier`), its note and the leaves.
    public static func read(client: RelayClient, verifier: NoteVerifier) async throws(PeerError) -> (Checkpoint, String, [[UInt8]]) {
        let (checkpoint, noteText) = try await verifiedCheckpoint(client: client, verifier: verifier)
        guard checkpoint.size <= maximumLeaves else {
            throw PeerError("the log claims \(checkpoint.size) entries, more than this reader takes (\(maximumLeaves))")
        }
        // Entry bundles of 256 leaves, fetched 8 at a time, put back in order.
        let bundleCount = (checkpoint.size + TilePath.width - 1) / TilePath.width
        var bundles: [UInt64: [UInt8]] = [:]
        var next: UInt64 = 0
        do {
            try await withThrowingTaskGroup(of: (UInt64, [UInt8]).self) { group in
                func add(_ index: UInt64) {
                    let remaining = checkpoint.size - index * TilePath.width
                    let path = "/" + TilePath.path(level: nil, index: index, partialWidth: remaining >= TilePath.width ? nil : remaining)
                    group.addTask { (index, try await client.raw(path: path)) }
                }
                while next < min(bundleCount, 8) { add(next); next += 1 }
                while let (index, bytes) = try await group.next() {
                    bundles[index] = bytes
                    if next < bundleCount { add(next); next += 1 }
                }
            }
        } catch let error as RelayClientError {
            throw PeerError(relay: error, relayURL: client.baseURL, doing: "read the log's entries")
        } catch {
            throw PeerError("cannot read the log's entries: \(error)")
        }
        var leaves: [[UInt8]] = []
        var tree = MerkleTree()
        for index in 0..<bundleCount {
            let bytes = bundles[index] ?? []
            let expected = Int(min(TilePath.width, checkpoint.size - index * TilePath.width))
            let before = leaves.count
            var offset = 0
            while offset + 2 <= bytes.count {
                let length = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
                guard offset + 2 + length <= bytes.count else { throw PeerError("an entry bundle of the log is cut short") }
                let leaf = Array(bytes[(offset + 2)..<(offset + 2 + length)])
                leaves.append(leaf)
                tree.append(leafHash: MerkleHash.leaf(leaf))
                offset += 2 + length
            }
            guard offset == bytes.count, leaves.count - before == expected else {
                throw PeerError("entry bundle \(index) of the log holds \(leaves.count - before) entries, not \(expected)")
            }
        }
        guard UInt64(leaves.count) == checkpoint.size, tree.root() == checkpoint.rootHash else {
            throw PeerError("the log's entries do not give the root of its signed checkpoint (\(leaves.count) entries for \(checkpoint.size))",
                            hint: "the relay serves a log that does not match what it signed; keep this output as evidence")
        }
        return (checkpoint, noteText, leaves)
    }
}
