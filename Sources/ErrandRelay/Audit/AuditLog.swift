import ErrandCrypto
public import ErrandTransparency
import Foundation
import Logging
import ServiceLifecycle

/// The relay's transparency log: integrates the leaves that envelope events append (in batches,
/// off the posting path), keeps the hashes of complete subtrees, and signs a C2SP checkpoint
/// for each new size with the relay's log key.
public actor AuditLog {
    /// File in the data folder holding the log's Ed25519 seed (created on first start, 0600).
    public static let keyFileName = "audit.key"

    /// The path of the log's key file in a data folder.
    public static func keyPath(dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent(keyFileName)
    }
    /// Leaves integrated per batch at most.
    static let batchSize = 16_384
    /// Nodes are stored at levels 0, 4, 8, … only (tiles read levels 8L); a node of another level
    /// is computed from the stored level below it (at most 8 hashes). That halves the rows an
    /// integration writes, on the relay's one writer.
    static let storedLevelStride = 4

    let store: any RelayStore
    public let signer: NoteSigner

    public init(store: any RelayStore, signer: NoteSigner) {
        self.store = store
        self.signer = signer
    }

    /// The log's signer from `dataDirectory/audit.key`, creating the key on first use. The origin
    /// (and key name) is `origin`, or `errand-relay/<16 hex digits of the key's hash>`.
    public static func loadSigner(dataDirectory: String, origin: String?) throws -> NoteSigner {
        let path = keyPath(dataDirectory: dataDirectory)
        if FileManager.default.fileExists(atPath: path) {
            return try signer(seed: SecretKeyFile.read(.ed25519Seed, from: path), origin: origin)
        }
        let key = Ed25519.SecretKey()
        try SecretKeyFile.write(key.seed, kind: .ed25519Seed, to: path)
        return try signer(seed: key.seed, origin: origin)
    }

    /// The log's signer for an Ed25519 `seed`; the name is `origin`, or `errand-relay/<16 hex
    /// digits of the public key's SHA-256>`.
    static func signer(seed: SecretBytes, origin: String?) throws -> NoteSigner {
        let key = try Ed25519.SecretKey(seed: seed)
        let name = origin ?? "errand-relay/" + ByteEncoding.hex(Array(SHA256.hash(key.publicKey.bytes).prefix(8)))
        return try NoteSigner(name: name, secretKey: key)
    }

    /// Integrates what was appended since the last checkpoint and signs a new one.
    /// - Returns: the new size (unchanged when nothing was appended).
    @discardableResult
    public func integrate() async throws -> Int64 {
        let latest = try await store.latestAuditCheckpoint()
        let size = latest?.size ?? 0
        let leaves = try await store.pendingAuditLeaves(after: size, limit: Self.batchSize)
        guard !leaves.isEmpty || latest == nil else { return size }
        // The complete subtrees on the right edge of the integrated tree are the only old nodes
        // the new leaves pair with: read them first, then hash without touching the store.
        let frontier = try await self.nodes((0..<63).compactMap { level in
            (size >> level) & 1 == 1 ? AuditNodeID(level: level, index: (size >> level) - 1) : nil
        })
        // Hashing thousands of leaves takes milliseconds: on a thread of its own, not on the
        // few threads that serve requests.
        let nodes = try await Self.onHashingQueue { try Self.hashNewLeaves(leaves, after: size, frontier: frontier) }
        let newSize = size + Int64(leaves.count)
        let root = try await root(size: newSize, extra: nodes)
        let checkpoint = Checkpoint(origin: signer.verifier.name, size: UInt64(newSize), rootHash: root)
        let note = try SignedNote.sign(checkpoint.text, with: [signer])
        try await store.saveAuditIntegration(previousSize: size, leaves: leaves,
                                             nodes: nodes.filter { $0.key.level % Self.storedLevelStride == 0 },
                                             checkpoint: AuditCheckpoint(size: newSize, note: note.encoded))
        return newSize
    }

    /// The hashes of the leaves at indices `size…` and of the subtrees they complete at stored
    /// levels (0, 4, 8, …: what is saved, and what the other levels are computed from).
    /// - Parameter frontier: the right-edge subtrees of the first `size` leaves.
    private static func hashNewLeaves(_ leaves: [PendingAuditLeaf], after size: Int64,
                                      frontier: [AuditNodeID: [UInt8]]) throws -> [AuditNodeID: [UInt8]] {
        var nodes: [AuditNodeID: [UInt8]] = [:]
        nodes.reserveCapacity(leaves.count + leaves.count / 8)
        // Per level, the last even-indexed (left) node this batch completed: the sibling the next
        // odd one pairs with, unless that sibling is older than the batch (then in `frontier`).
        var lefts: [(index: Int64, hash: [UInt8])?] = Array(repeating: nil, count: 64)
        for (offset, leaf) in leaves.enumerated() {
            var index = size + Int64(offset)
            var hash = MerkleHash.leaf(leaf.bytes)
            nodes[AuditNodeID(level: 0, index: index)] = hash
            // Each odd index completes a pair: climb while it does.
            var level = 0
            while index & 1 == 1 {
                let left: [UInt8]
                if let pending = lefts[level], pending.index == index - 1 {
                    left = pending.hash
                } else if let old = frontier[AuditNodeID(level: level, index: index - 1)] {
                    left = old
                } else {
                    throw AuditLogError("the audit log is missing node \(level)/\(index - 1)")
                }
                hash = MerkleHash.node(left, hash)
                level += 1
                index >>= 1
                if level % storedLevelStride == 0 { nodes[AuditNodeID(level: level, index: index)] = hash }
            }
            lefts[level] = (index, hash)
        }
        return nodes
    }

    private static let hashingQueue = DispatchQueue(label: "errand-relay.audit-hashing", qos: .utility)

    private static func onHashingQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            hashingQueue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// MTH of the first `size` leaves from stored nodes (plus `extra` not yet saved).
    func root(size: Int64, extra: [AuditNodeID: [UInt8]] = [:]) async throws -> [UInt8] {
        try await withNodes(extra: extra) { builder in try builder.root(size: UInt64(size)) }
    }

    /// PATH(index, size).
    public func inclusionProof(index: Int64, size: Int64) async throws -> [[UInt8]] {
        try await withNodes { builder in try builder.inclusionProof(index: UInt64(index), size: UInt64(size)) }
    }

    /// PROOF(size1, size2).
    public func consistencyProof(from size1: Int64, to size2: Int64) async throws -> [[UInt8]] {
        try await withNodes { builder in try builder.consistencyProof(from: UInt64(size1), to: UInt64(size2)) }
    }

    /// The nodes `ids` (those that exist), from `extra`, the store, or computed from the stored
    /// level below (see ``storedLevelStride``).
    private func nodes(_ ids: [AuditNodeID], extra: [AuditNodeID: [UInt8]] = [:]) async throws -> [AuditNodeID: [UInt8]] {
        func descendants(_ id: AuditNodeID) -> [AuditNodeID] {
            let span = id.level % Self.storedLevelStride
            return (0..<(Int64(1) << span)).map { AuditNodeID(level: id.level - span, index: (id.index << Int64(span)) + $0) }
        }
        let wanted = Set(ids.filter { extra[$0] == nil })
        let stored = try await store.auditNodes(Array(Set(wanted.flatMap(descendants)).filter { extra[$0] == nil }))
        // `extra` is every node of an integration in progress: looked up, never copied.
        func known(_ id: AuditNodeID) -> [UInt8]? { extra[id] ?? stored[id] }
        var found: [AuditNodeID: [UInt8]] = [:]
        for id in Set(ids) {
            if let hash = known(id) {
                found[id] = hash
                continue
            }
            var layer: [[UInt8]] = []
            for descendant in descendants(id) {
                guard let hash = known(descendant) else { break }
                layer.append(hash)
            }
            guard layer.count == descendants(id).count else { continue }
            while layer.count > 1 { layer = stride(from: 0, to: layer.count, by: 2).map { MerkleHash.node(layer[$0], layer[$0 + 1]) } }
            found[id] = layer[0]
        }
        return found
    }

    /// Runs `body` twice: first to learn which complete-subtree nodes it needs (the shape of the
    /// recursion does not depend on hash values), then with those nodes fetched in one query.
    private func withNodes<T>(extra: [AuditNodeID: [UInt8]] = [:], _ body: (MerkleProofBuilder) throws -> T) async throws -> T {
        var wanted: [AuditNodeID] = []
        let recorder = MerkleProofBuilder { start, count in
            try MerkleProofBuilder.subtreeHash(start: start, count: count) { level, index in
                wanted.append(AuditNodeID(level: level, index: Int64(index)))
                return [UInt8](repeating: 0, count: 32)
            }
        }
        _ = try body(recorder)
        let nodes = try await self.nodes(wanted, extra: extra)
        let builder = MerkleProofBuilder { start, count in
            try MerkleProofBuilder.subtreeHash(start: start, count: count) { level, index in
                guard let hash = nodes[AuditNodeID(level: level, index: Int64(index))] else {
                    throw AuditLogError("the audit log has not integrated node \(level)/\(index) yet")
                }
                return hash
            }
        }
        return try body(builder)
    }
}

/// Integrates the audit log every `interval` while the relay runs (and once more at shutdown).
struct AuditIntegrationService: Service {
    let log: AuditLog
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                // With several nodes on one store, one of them integrates at a time.
                if try await log.store.claimAuditSequencer() { try await log.integrate() }
            } catch {
                logger.error("audit log integration failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
        if (try? await log.store.claimAuditSequencer()) == true { _ = try? await log.integrate() }
    }
}

/// The audit log is inconsistent or incomplete.
public struct AuditLogError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
