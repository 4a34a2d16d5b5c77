import ErrandCrypto

/// RFC 9162 (Certificate Transparency v2) Merkle tree hashing over SHA-256.
public enum MerkleHash {
    /// Hash length: 32 bytes.
    public static let length = 32
    /// `SHA-256(0x00 ‖ data)`.
    public static func leaf(_ data: [UInt8]) -> [UInt8] { SHA256.hash(parts: [[0x00], data]) }
    /// `SHA-256(0x01 ‖ left ‖ right)`.
    public static func node(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { SHA256.hash(parts: [[0x01], left, right]) }
    /// The root of the empty tree: `SHA-256("")`.
    public static let empty: [UInt8] = SHA256.hash([])
}

/// Roots and proofs of any tree from a function giving the hash of the subtree of `count` leaves
/// starting at `start` (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1). A store answers it from saved
/// node hashes; ``MerkleTree`` from leaf hashes in memory.
public struct MerkleProofBuilder {
    let hash: (_ start: UInt64, _ count: UInt64) throws -> [UInt8]

    public init(hash: @escaping (_ start: UInt64, _ count: UInt64) throws -> [UInt8]) { self.hash = hash }

    /// MTH(D[0:size]).
    public func root(size: UInt64) throws -> [UInt8] { size == 0 ? MerkleHash.empty : try hash(0, size) }

    /// PATH(index, D[0:size]).
    public func inclusionProof(index: UInt64, size: UInt64) throws -> [[UInt8]] {
        precondition(index < size, "index out of range")
        return try path(index, 0, size)
    }

    /// PROOF(size1, D[0:size2]).
    public func consistencyProof(from size1: UInt64, to size2: UInt64) throws -> [[UInt8]] {
        precondition(size1 <= size2, "sizes out of order")
        guard size1 > 0, size1 < size2 else { return [] }
        return try subproof(size1, 0, size2, true)
    }

    private func path(_ index: UInt64, _ start: UInt64, _ count: UInt64) throws -> [[UInt8]] {
        guard count > 1 else { return [] }
        let split = Self.largestPowerOfTwo(below: count)
        if index < split { return try path(index, start, split) + [hash(start + split, count - split)] }
        return try path(index - split, start + split, count - split) + [hash(start, split)]
    }

    private func subproof(_ m: UInt64, _ start: UInt64, _ count: UInt64, _ complete: Bool) throws -> [[UInt8]] {
        if m == count { return complete ? [] : [try hash(start, count)] }
        let split = Self.largestPowerOfTwo(below: count)
        if m <= split { return try subproof(m, start, split, complete) + [hash(start + split, count - split)] }
        return try subproof(m - split, start + split, count - split, false) + [hash(start, split)]
    }

    /// The largest power of two smaller than `n` (n ≥ 2).
    public static func largestPowerOfTwo(below n: UInt64) -> UInt64 {
        var k: UInt64 = 1
        while k << 1 < n { k <<= 1 }
        return k
    }

    /// The hash of any subtree from the hashes of complete, aligned subtrees (`node(level, index)`
    /// is the subtree of 2^level leaves starting at index × 2^level).
    public static func subtreeHash(start: UInt64, count: UInt64, node: (_ level: Int, _ index: UInt64) throws -> [UInt8]) throws -> [UInt8] {
        if count & (count - 1) == 0 && start % count == 0 {
            return try node(count.trailingZeroBitCount, start / count)
        }
        let split = largestPowerOfTwo(below: count)
        return MerkleHash.node(try subtreeHash(start: start, count: split, node: node),
                               try subtreeHash(start: start + split, count: count - split, node: node))
    }
}

/// A Merkle tree held in memory as its leaf hashes.
public struct MerkleTree: Sendable {
    public private(set) var leafHashes: [[UInt8]] = []

    public init(leafHashes: [[UInt8]] = []) { self.leafHashes = leafHashes }

    public var size: Int { leafHashes.count }

    public mutating func append(leafHash: [UInt8]) { leafHashes.append(leafHash) }

    private var builder: MerkleProofBuilder {
        let leaves = leafHashes
        return MerkleProofBuilder { start, count in Self.hash(leaves, Int(start), Int(count)) }
    }

    /// MTH(D[0:size]).
    public func root(size: Int? = nil) -> [UInt8] {
        let n = size ?? self.size
        precondition(n >= 0 && n <= self.size, "tree size out of range")
        return try! builder.root(size: UInt64(n))
    }

    /// PATH(index, D[0:size]).
    public func inclusionProof(index: Int, size: Int) -> [[UInt8]] {
        precondition(index >= 0 && index < size && size <= self.size, "index or size out of range")
        return try! builder.inclusionProof(index: UInt64(index), size: UInt64(size))
    }

    /// PROOF(size1, D[0:size2]).
    public func consistencyProof(from size1: Int, to size2: Int) -> [[UInt8]] {
        precondition(size1 >= 0 && size1 <= size2 && size2 <= self.size, "sizes out of range")
        return try! builder.consistencyProof(from: UInt64(size1), to: UInt64(size2))
    }

    static func hash(_ leaves: [[UInt8]], _ start: Int, _ count: Int) -> [UInt8] {
        if count == 1 { return leaves[start] }
        let split = Int(MerkleProofBuilder.largestPowerOfTwo(below: UInt64(count)))
        return MerkleHash.node(hash(leaves, start, split), hash(leaves, start + split, count - split))
    }
}

/// Verification of inclusion and consistency proofs (RFC 9162 §2.1.3.2, §2.1.4.2).
public enum MerkleProof {
    /// Checks that `leafHash` is leaf `index` of the tree of `size` leaves with root `root`.
    /// - Throws: ``MerkleProofError`` saying why not.
    public static func verifyInclusion(leafHash: [UInt8], index: UInt64, size: UInt64, proof: [[UInt8]], root: [UInt8]) throws(MerkleProofError) {
        guard index < size else { throw MerkleProofError("leaf index \(index) is not below the tree size \(size)") }
        guard proof.allSatisfy({ $0.count == MerkleHash.length }), leafHash.count == MerkleHash.length, root.count == MerkleHash.length else {
            throw MerkleProofError("a hash in the proof is not 32 bytes")
        }
        var fn = index, sn = size - 1
        var r = leafHash
        for p in proof {
            guard sn != 0 else { throw MerkleProofError("the inclusion proof is longer than the tree is deep") }
            if fn & 1 == 1 || fn == sn {
                r = MerkleHash.node(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = MerkleHash.node(r, p)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw MerkleProofError("the inclusion proof is too short for a tree of \(size) leaves") }
        guard ConstantTime.equals(r, root) else { throw MerkleProofError("the inclusion proof does not lead to the root") }
    }

    /// Checks that the tree of `size2` leaves (root `root2`) extends the one of `size1` leaves (root `root1`).
    /// - Throws: ``MerkleProofError`` saying why not.
    public static func verifyConsistency(size1: UInt64, size2: UInt64, proof: [[UInt8]], root1: [UInt8], root2: [UInt8]) throws(MerkleProofError) {
        guard size1 <= size2 else { throw MerkleProofError("the first size \(size1) is larger than the second \(size2)") }
        // Like transparency-dev/merkle: nothing is proven about the empty tree (a verifier with no
        // checkpoint yet takes the first signed one on its signature alone).
        guard size1 > 0 else { throw MerkleProofError("a consistency proof from the empty tree proves nothing") }
        guard proof.allSatisfy({ $0.count == MerkleHash.length }) else { throw MerkleProofError("a hash in the proof is not 32 bytes") }
        if size1 == size2 {
            guard proof.isEmpty else { throw MerkleProofError("a proof between equal sizes must be empty") }
            guard ConstantTime.equals(root1, root2) else { throw MerkleProofError("two different roots for the same size \(size1): the log forked") }
            return
        }
        guard !proof.isEmpty else { throw MerkleProofError("the consistency proof is empty") }
        guard root1.count == MerkleHash.length, root2.count == MerkleHash.length else { throw MerkleProofError("a root is not 32 bytes") }
        var path = proof
        if size1 & (size1 - 1) == 0 { path.insert(root1, at: 0) }
        var fn = size1 - 1, sn = size2 - 1
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        var fr = path[0], sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { throw MerkleProofError("the consistency proof is too long") }
            if fn & 1 == 1 || fn == sn {
                fr = MerkleHash.node(c, fr)
                sr = MerkleHash.node(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                sr = MerkleHash.node(sr, c)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw MerkleProofError("the consistency proof is too short") }
        guard ConstantTime.equals(fr, root1) else { throw MerkleProofError("the consistency proof does not lead to the first root") }
        guard ConstantTime.equals(sr, root2) else { throw MerkleProofError("the consistency proof does not lead to the second root") }
    }
}

/// A proof that does not verify, and why.
public struct MerkleProofError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
