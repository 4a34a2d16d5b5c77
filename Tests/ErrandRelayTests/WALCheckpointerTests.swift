@testable import ErrandRelay
import ErrandTestSupport
import Foundation
import GRDB
import Testing

@Suite("WAL checkpointer")
struct WALCheckpointerTests {
    func walSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0
    }

    @Test("Checkpoints run off the writer while a reader reads; the writer restarts the log between batches instead of letting it grow")
    func boundedLog() async throws {
        let folder = try ScratchFolder()
        let path = folder.path + "/test.sqlite"
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)  // as the store's: a RESTART checkpoint briefly holds the writer
        let pool = try DatabasePool(path: path, configuration: configuration)
        try await pool.write { db in try db.execute(sql: "CREATE TABLE item (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
        let checkpointer = try WALCheckpointer(path: path, passivePages: 50, restartPages: 200, writerBusyTimeout: 10_000)
        try await pool.writeWithoutTransaction { db in checkpointer.install(on: db) }
        let writer = GroupCommitWriter(pool: pool, checkpointer: checkpointer)

        // A reader that keeps reading short reads, as live connections do.
        let reading = Task {
            while !Task.isCancelled {
                _ = try? await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item") }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        let body = [UInt8](repeating: 7, count: 4000)  // about one page per row
        func writePages(_ count: Int) async throws {
            for _ in 0..<(count / 10) {
                try await writer.write { db in
                    for _ in 0..<10 { try db.execute(sql: "INSERT INTO item (body) VALUES (?)", arguments: [Data(body)]) }
                }
            }
        }
        // Passive checkpoints keep up while a reader reads; nothing is lost.
        try await writePages(2000)
        reading.cancel()
        _ = await reading.result
        #expect(checkpointer.status.checkpoints > 0)
        #expect(try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item") } == 2000)

        // The writer restarts the log: a restart held up by the reader (this machine may be
        // busy) is tried again a moment later, so keep writing until one has happened.
        let deadline = ContinuousClock.now + .seconds(20)
        while checkpointer.status.restarts == 0 && ContinuousClock.now < deadline { try await writePages(50) }
        #expect(checkpointer.status.restarts > 0)
        // From then on the log starts over instead of growing: 2,000 more pages (8 MB) leave the
        // file where the restarts keep it.
        let settled = walSize(path)
        try await writePages(2000)
        #expect(walSize(path) <= max(settled, 500 * 4096), "the log grew from \(settled) to \(walSize(path)) bytes")
        #expect(checkpointer.status.lastError == nil)
        #expect(checkpointer.status.failures == 0)
        #expect(try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item") ?? 0 } >= 4000)

        try await pool.writeWithoutTransaction { db in checkpointer.uninstall(from: db) }
        checkpointer.stop()
        try pool.close()
    }
}
