import ErrandPeer
import ErrandTestSupport
import Foundation
import GRDB
import Testing

@Suite("Peer state files")
struct StateDatabaseTests {
    @Test("A superseded or deleted secret does not linger in the file's free space")
    func secureDelete() throws {
        let folder = try ScratchFolder()
        let directory = StateDirectory(path: folder.path("state"))
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in try db.execute(sql: "CREATE TABLE session (id INTEGER PRIMARY KEY, state BLOB)") }
        let old = Data("OLD-RATCHET-STATE-".utf8) + Data(repeating: 0x41, count: 200)
        let deleted = Data("DELETED-KEY-".utf8) + Data(repeating: 0x42, count: 200)
        do {
            let queue = try StateDatabase.open("test.sqlite", in: directory, migrator: migrator)
            // Set on every connection, whatever the SQLite library's default.
            #expect(try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA secure_delete") } == 1)
            try queue.write { db in
                try db.execute(sql: "INSERT INTO session VALUES (1, ?), (2, ?)", arguments: [old, deleted])
            }
            try queue.write { db in
                try db.execute(sql: "UPDATE session SET state = ? WHERE id = 1", arguments: [Data("NEW".utf8)])
                try db.execute(sql: "DELETE FROM session WHERE id = 2")
            }
            try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            try queue.close()
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: directory.file("test.sqlite")))
        if let wal = try? Data(contentsOf: URL(fileURLWithPath: directory.file("test.sqlite") + "-wal")) { bytes += wal }
        #expect(bytes.range(of: Data("OLD-RATCHET-STATE-".utf8)) == nil)
        #expect(bytes.range(of: Data("DELETED-KEY-".utf8)) == nil)
        #expect(bytes.range(of: Data("NEW".utf8)) != nil)
    }
}
