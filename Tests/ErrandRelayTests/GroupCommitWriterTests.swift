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

    /// Counts the pool's commits; a write that records the count learns which transaction it is in.
    final class CommitCounter: TransactionObserver, Sendable {
        let commits = Mutex(0)
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { false }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { commits.withLock { $0 += 1 } }
        func databaseDidRollback(_ db: Database) {}
    }

    /// A writer whose first write holds its transaction open until `release` is signalled, so
    /// that the test can queue writes behind it.
    struct HeldWriter {
        let pool: DatabasePool
        let writer: GroupCommitWriter
        let counter = CommitCounter()
        let release = DispatchSemaphore(value: 0)
        let held: Task<Void, any Error>

        init(_ folder: ScratchFolder, pool: DatabasePool, maximumBatch: Int = 1024) async throws {
            self.pool = pool
            let counter = counter
            try await pool.writeWithoutTransaction { db in db.add(transactionObserver: counter, extent: .databaseLifetime) }
            writer = GroupCommitWriter(pool: pool, maximumBatch: maximumBatch)
            let (writer, release) = (writer, release)
            let started = Mutex(false)
            held = Task {
                try await writer.write { db in
                    try db.execute(sql: "INSERT INTO item VALUES (0)")
                    started.withLock { $0 = true }
                    // On the writer's own thread, not on the test's.
                    release.wait()
                }
            }
            for _ in 0..<500 where !started.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        }

        /// Waits until `count` writes are queued behind the held one, then lets it finish.
        func release(afterQueued count: Int) async throws {
            for _ in 0..<500 where writer.queuedWrites < count { try await Task.sleep(for: .milliseconds(10)) }
            #expect(writer.queuedWrites == count)
            release.signal()
            try await held.value
        }

        /// Queues `writes` behind the held one, in this order, lets them all run, and returns their
        /// names in the order they ran, each with the commits made before its transaction, and the
        /// commits made in all.
        func run(_ writes: [(name: String, turn: GroupCommitWriter.Turn)]) async throws
            -> (ran: [(name: String, transaction: Int)], commits: Int) {
            final class Seen: Sendable { let writes = Mutex<[(name: String, transaction: Int)]>([]) }
            let seen = Seen()
            var tasks: [Task<Void, any Error>] = []
            for (name, turn) in writes {
                let (writer, counter) = (writer, counter)
                tasks.append(Task {
                    try await writer.write(turn: turn) { db in
                        try db.execute(sql: "INSERT INTO item VALUES (1)")
                        seen.writes.withLock { $0.append((name, counter.commits.withLock { $0 })) }
                    }
                })
                // Queued in this order.
                for _ in 0..<500 where writer.queuedWrites < tasks.count { try await Task.sleep(for: .milliseconds(5)) }
            }
            try await release(afterQueued: writes.count)
            for task in tasks { try await task.value }
            return (seen.writes.withLock { $0 }, counter.commits.withLock { $0 })
        }
    }

    @Test("A transaction takes every prompt write first, then deferrable rows up to its prompt rows (at least 64, at least one write)")
    func deferrableWrites() async throws {
        let folder = try ScratchFolder()
        let held = try await HeldWriter(folder, pool: try openPool(folder))
        let (writes, first) = try await held.run([("d1", .deferrable(rows: 64)), ("d2", .deferrable(rows: 64)), ("p1", .prompt),
                                                  ("d3", .deferrable(rows: 64)), ("p2", .prompt(rows: 100)), ("d4", .deferrable(rows: 500))])
        // The held write committed as transaction `first - 4`; then, in order:
        // p1, p2 and d1 (101 prompt rows allow 101 deferrable ones: d1, not d2);
        // d2 alone (64 rows allowed), d3 alone, and d4, too large for any allowance, alone.
        #expect(writes.map(\.name) == ["p1", "p2", "d1", "d2", "d3", "d4"])
        #expect(writes.map(\.transaction) == [first - 4, first - 4, first - 4, first - 3, first - 2, first - 1])
    }

    @Test("Deferrable writes go within their allowance of rows even when prompt ones fill the batch")
    func deferrableWritesBeyondMaximum() async throws {
        let folder = try ScratchFolder()
        let held = try await HeldWriter(folder, pool: try openPool(folder), maximumBatch: 2)
        let (writes, first) = try await held.run([("p1", .prompt), ("p2", .prompt), ("p3", .prompt),
                                                  ("d1", .deferrable(rows: 10)), ("d2", .deferrable(rows: 10))])
        // Two prompt writes fill the batch; both deferrable ones (20 rows of 64 allowed) join
        // them; p3 goes next.
        #expect(writes.map(\.name) == ["p1", "p2", "d1", "d2", "p3"])
        #expect(writes.map(\.transaction) == [first - 2, first - 2, first - 2, first - 2, first - 1])
    }

    @Test("A write that fails is undone alone: the others in its transaction commit, and it fails with its own error")
    func failingWriteInBatch() async throws {
        let folder = try ScratchFolder()
        let held = try await HeldWriter(folder, pool: try openPool(folder))
        struct Refused: Error {}
        let writer = held.writer
        let first = Task { try await writer.write { db in try db.execute(sql: "INSERT INTO item VALUES (1)") } }
        for _ in 0..<500 where writer.queuedWrites < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let failing = Task {
            try await writer.write { db in
                try db.execute(sql: "INSERT INTO item VALUES (2)")
                throw Refused()
            }
        }
        for _ in 0..<500 where writer.queuedWrites < 2 { try await Task.sleep(for: .milliseconds(5)) }
        let last = Task { try await writer.write { db in try db.execute(sql: "INSERT INTO item VALUES (3)") } }
        try await held.release(afterQueued: 3)
        try await first.value
        await #expect(throws: Refused.self) { try await failing.value }
        try await last.value
        let values = try await held.pool.read { db in try Int.fetchAll(db, sql: "SELECT value FROM item ORDER BY value") }
        #expect(values == [0, 1, 3])
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
