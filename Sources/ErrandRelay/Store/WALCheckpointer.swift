import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Checkpoints the database's write-ahead log on a thread and a connection of its own.
///
/// SQLite's automatic checkpoint runs on the connection that commits — the store's single
/// writer — which then copies pages into the database file and waits for two syncs while no
/// envelope is written. Here the writer's connection only reports the log's size after each
/// commit (`sqlite3_wal_hook`, which also turns the automatic checkpoint off), and this
/// checkpointer copies in the background (`PASSIVE`: it never blocks the writer).
///
/// A passive checkpoint cannot start the log over while commits keep coming, so under sustained
/// load the log would only grow. Past ``restartPages`` the checkpointer asks for a `RESTART`
/// checkpoint, which waits for the writer's lock and holds it while it copies what the passive
/// ones left (little, since they ran before), so the next commit starts the log from its
/// beginning.
final class WALCheckpointer: @unchecked Sendable {  // mutable state is guarded by `condition`
    /// Log size (pages; 32 MiB at 4 KiB by default) from which a passive checkpoint is started.
    /// Larger than SQLite's default of 1,000: a page rewritten by many commits (an index's
    /// last leaf, a mailbox's usage row) is copied once per checkpoint, not once per commit.
    let passivePages: Int32
    /// Log size (pages; 128 MiB at 4 KiB by default) from which the log is made to start over.
    let restartPages: Int32

    private let connection: OpaquePointer
    private let condition = NSCondition()
    private var logPages: Int32 = 0
    private var requested = false
    private var stopped = false
    /// True from `init` until the thread has ended.
    private var running = true
    private var checkpoints = 0
    private var lastError: String?

    /// Opens a second connection to the database at `path` (already in WAL mode).
    init(path: String, passivePages: Int32 = 8192, restartPages: Int32 = 32_768) throws {
        self.passivePages = passivePages
        self.restartPages = restartPages
        var handle: OpaquePointer?
        let opened = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        guard opened == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw RelayStartupError("cannot open \(path) for checkpoints: \(message)")
        }
        // A connection learns that the database is in WAL mode when it first reads it; until
        // then a checkpoint does nothing.
        var statement: OpaquePointer?
        var mode = ""
        if sqlite3_prepare_v2(handle, "PRAGMA journal_mode", -1, &statement, nil) == SQLITE_OK, sqlite3_step(statement) == SQLITE_ROW,
           let text = sqlite3_column_text(statement, 0) {
            mode = String(cString: text)
        }
        sqlite3_finalize(statement)
        guard mode == "wal" else {
            sqlite3_close(handle)
            throw RelayStartupError("\(path) is not in WAL mode (journal_mode \(mode.isEmpty ? "unreadable" : mode))")
        }
        connection = handle
        // A RESTART checkpoint waits this long for the writer and the readers before giving up
        // (it is tried again after the next commit).
        sqlite3_busy_timeout(handle, 2_000)
        let thread = Thread { [self] in run() }
        thread.name = "errand-relay.checkpointer"
        thread.start()
    }

    /// Makes the writer's connection report to this checkpointer after each commit instead of
    /// checkpointing by itself. The checkpointer must outlive that connection (or ``uninstall(from:)``).
    func install(on db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, { context, _, _, pages in
            Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue().committed(logPages: pages)
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Gives the writer's connection back SQLite's own automatic checkpoint.
    func uninstall(from db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, nil, nil)
        sqlite3_wal_autocheckpoint(db.sqliteConnection, passivePages)
    }

    private func committed(logPages pages: Int32) {
        guard pages >= passivePages else { return }
        condition.lock()
        logPages = pages
        requested = true
        condition.signal()
        condition.unlock()
    }

    /// Checkpoints run so far, and the last failure (for tests and checks).
    var status: (checkpoints: Int, lastError: String?) {
        condition.lock()
        defer { condition.unlock() }
        return (checkpoints, lastError)
    }

    private func run() {
        condition.lock()
        while true {
            while !requested && !stopped { condition.wait() }
            if stopped { break }
            requested = false
            let pages = logPages
            condition.unlock()

            var log: Int32 = 0
            var copied: Int32 = 0
            let mode = pages >= restartPages ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE
            let result = sqlite3_wal_checkpoint_v2(connection, nil, mode, &log, &copied)

            condition.lock()
            checkpoints += 1
            // BUSY: the writer or a reader held on past the timeout; the next commit asks again.
            if result != SQLITE_OK && result != SQLITE_BUSY {
                lastError = String(cString: sqlite3_errmsg(connection))
            }
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }

    /// Stops the thread (after the checkpoint in progress) and closes the connection.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
        sqlite3_close_v2(connection)
    }
}
