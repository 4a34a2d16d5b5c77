@testable import ErrandRelay
import ErrandTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

@Suite("Group commit writer with a WAL syncer")
struct GroupCommitWriterTests {
    /// A sync that blocks (on the syncer's own thread) until the test lets it finish, and counts
    /// how many have started.
    final class GatedSync: Sendable {
        let release = DispatchSemaphore(value: 0)
        let startedCount = Mutex(0)
        let failure = Mutex<(any Error)?>(nil)

        func sync() throws {
            startedCount.withLock { $0 += 1 }
            release.wait()
            if let error = failure.withLock({ $0 }) { throw error }
        }

        /// Waits, without blocking a thread of the test, until `count` syncs have started.
        func waitForStart(_ count: Int) async throws {
            for _ in 0..<1000 where startedCount.withLock({ $0 }) < count {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(startedCount.withLock { $0 } >= count)
        }
    }

    struct DiskFailure: Error {}

    private func openPool(_ folder: ScratchFolder) throws -> DatabasePool {
        let pool = try DatabasePool(path: folder.path + "/test.sqlite")
        try pool.write { db in try db.execute(sql: "CREATE TABLE item (value INTEGER)") }
        return pool
    }

    @Test("A write is answered only after the sync that follows its commit, while the writer already runs the next transaction")
    func answersAfterSync() async throws {
        let folder = try ScratchFolder()
        let pool = try openPool(folder)
        let gate = GatedSync()
        let writer = GroupCommitWriter(pool: pool, syncer: WALSyncer(sync: gate.sync))
        let firstAnswered = Mutex(false)

        let first = Task {
            try await writer.write { db in try db.execute(sql: "INSERT INTO item VALUES (1)") }
            firstAnswered.withLock { $0 = true }
        }
        // The first transaction has committed and its sync is running (and held).
        try await gate.waitForStart(1)
        // Committed (a reader sees it) but not answered.
        #expect(try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM item") } == 1)
        // The writer is not held by the sync: a second transaction commits meanwhile.
        let second = Task { try await writer.write { db in try db.execute(sql: "INSERT INTO item VALUES (2)") } }
        var committed = 1
        for _ in 0..<500 where committed < 2 {
            try await Task.sleep(for: .milliseconds(10))
            committed = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM item") ?? 0 }
        }
        #expect(committed == 2)
        #expect(!firstAnswered.withLock { $0 })

        gate.release.signal()
        try await first.value
        #expect(firstAnswered.withLock { $0 })
        // The second write waits for a sync of its own.
        try await gate.waitForStart(2)
        gate.release.signal()
        try await second.value
    }

    @Test("A failed sync fails every write it covered, with the sync's error")
    func failedSync() async throws {
        let folder = try ScratchFolder()
        let pool = try openPool(folder)
        let gate = GatedSync()
        gate.failure.withLock { $0 = DiskFailure() }
        let writer = GroupCommitWriter(pool: pool, syncer: WALSyncer(sync: gate.sync))
        let write = Task { try await writer.write { db in try db.execute(sql: "INSERT INTO item VALUES (1)") } }
        try await gate.waitForStart(1)
        gate.release.signal()
        await #expect(throws: DiskFailure.self) { try await write.value }
    }

    @Test("Commit hooks run once the sync is done, in commit order; with nil when the sync failed")
    func commitHooks() async throws {
        let folder = try ScratchFolder()
        let pool = try openPool(folder)
        let gate = GatedSync()
        let writer = GroupCommitWriter(pool: pool, syncer: WALSyncer(sync: gate.sync))
        final class Seen: Sendable { let values = Mutex<[Int?]>([]) }
        let seen = Seen()
        let first = Task {
            try await writer.write({ db in try db.execute(sql: "INSERT INTO item VALUES (1)"); return 1 },
                                   committed: { value in seen.values.withLock { $0.append(value) } })
        }
        try await gate.waitForStart(1)
        // Committed, but not yet synced: the hook has not run.
        #expect(seen.values.withLock { $0 }.isEmpty)
        let second = Task {
            try await writer.write({ db in try db.execute(sql: "INSERT INTO item VALUES (2)"); return 2 },
                                   committed: { value in seen.values.withLock { $0.append(value) } })
        }
        gate.release.signal()
        _ = try await first.value
        #expect(seen.values.withLock { $0 } == [1])
        // The second write's sync fails: its hook says so with nil.
        try await gate.waitForStart(2)
        gate.failure.withLock { $0 = DiskFailure() }
        gate.release.signal()
        await #expect(throws: DiskFailure.self) { _ = try await second.value }
        #expect(seen.values.withLock { $0 } == [1, nil])
    }

    @Test("Syncing a missing WAL is not an error; syncing a file that cannot be opened is, and says which")
    func syncFile() throws {
        let folder = try ScratchFolder()
        try WALSyncer.syncFile(at: folder.path + "/absent.sqlite-wal")
        FileManager.default.createFile(atPath: folder.path + "/present", contents: Data([1, 2, 3]))
        try WALSyncer.syncFile(at: folder.path + "/present")
        #expect(throws: WALSyncError.self) { try WALSyncer.syncFile(at: folder.path + "/present/child") }
    }
}
