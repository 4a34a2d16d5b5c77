@testable import ErrandRelay
import ErrandCrypto
import ErrandProtocol
import ErrandTestSupport
import ErrandTransparency
import Foundation
import GRDB
import Testing

@Suite("Leaf-hash index of the SQLite store")
struct LeafHashIndexTests {
    /// Stores `count` envelopes in a new mailbox and integrates the log; returns the leaf hashes in log order.
    private func storeAndIntegrate(_ store: SQLiteRelayStore, log: AuditLog, count: Int) async throws -> [[UInt8]] {
        let (mailbox, token) = try await makeMailbox(store)
        let quota = MailboxQuota(maximumEnvelopes: 10_000, maximumBytes: 10_000_000)
        for _ in 0..<count {
            let envelope = sampleEnvelope(size: 64)
            _ = try await store.storeEnvelope(IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: 100, expiresAt: 10_000),
                                              sendToken: token.hash, quota: quota)
        }
        let size = try await log.integrate()
        return try await store.auditLeaves(from: 0, count: Int(size)).map(MerkleHash.leaf)
    }

    private func signer() throws -> NoteSigner { try NoteSigner(name: "test/leaf-index", secretKey: Ed25519.SecretKey()) }

    @Test("Every integrated leaf is found by its hash, before and after the index has caught up; a hash sharing only the first 8 bytes is not")
    func lookups() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        let log = AuditLog(store: store, signer: try signer())
        let hashes = try await storeAndIntegrate(store, log: log, count: 40)
        // Possibly before the index has the new leaves (the lookup then searches them directly).
        #expect(try await store.auditLeafIndex(leafHash: hashes[39]) == 39)
        store.settleLeafIndex()
        for (index, hash) in hashes.enumerated() { #expect(try await store.auditLeafIndex(leafHash: hash) == Int64(index)) }
        var lookalike = hashes[7]
        lookalike[31] ^= 1
        #expect(try await store.auditLeafIndex(leafHash: lookalike) == nil)
        #expect(try await store.auditLeafIndex(leafHash: SHA256.hash([1, 2, 3])) == nil)
        // Leaf hashes are not stored in the log's tables: the level-0 nodes come from the leaves.
        let nodes = try await store.auditNodes((0..<40).map { AuditNodeID(level: 0, index: $0) })
        #expect((0..<40).allSatisfy { nodes[AuditNodeID(level: 0, index: Int64($0))] == hashes[$0] })
        try await store.close()
        let stored = try await DatabaseQueue(path: folder.path + "/relay.sqlite").read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM audit_node WHERE level = 0") }
        #expect(stored == 0)
    }

    @Test("A lost or damaged index file is rebuilt from the leaves at start")
    func rebuilt() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        let hashes = try await storeAndIntegrate(store, log: AuditLog(store: store, signer: try signer()), count: 30)
        try await store.close()
        let path = folder.path + "/audit-index.sqlite"
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try Data("not a database, just damage".utf8).write(to: URL(fileURLWithPath: path))

        let reopened = try SQLiteRelayStore(directory: folder.path)
        reopened.settleLeafIndex()
        let index = try await DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM leaf_hash") }
        #expect(index == 30)
        for (offset, hash) in hashes.enumerated() { #expect(try await reopened.auditLeafIndex(leafHash: hash) == Int64(offset)) }
        try await reopened.close()
    }

    @Test("A log integrated again from an earlier size drops the index entries it replaced")
    func reintegrated() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        let log = AuditLog(store: store, signer: try signer())
        let hashes = try await storeAndIntegrate(store, log: log, count: 10)
        store.settleLeafIndex()
        try await store.close()
        // The operator rewrites leaf 3 and throws away the tree: the log is rebuilt from 0.
        try await DatabaseQueue(path: folder.path + "/relay.sqlite").write { db in
            try db.execute(sql: "UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE idx = 1) WHERE idx = 4; DELETE FROM audit_node; DELETE FROM audit_checkpoint")
        }
        let reopened = try SQLiteRelayStore(directory: folder.path)
        #expect(try await AuditLog(store: reopened, signer: try signer()).integrate() == 10)
        reopened.settleLeafIndex()
        #expect(try await reopened.auditLeafIndex(leafHash: hashes[3]) == nil)
        #expect(try await reopened.auditLeafIndex(leafHash: hashes[0]) == 0)
        #expect(try await reopened.auditLeafIndex(leafHash: hashes[9]) == 9)
        try await reopened.close()
    }
}
