import Foundation
import GRDB
import GRDBSQLite
import Logging
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
/// load the log would only grow. Past ``restartPages`` the writer itself, between two
/// transactions, runs a `RESTART` checkpoint (``restartIfWanted(on:)``): it copies what the
/// passive ones left and makes the next commit start the log from its beginning. It waits at
/// most 100 ms for readers to move on; when a long read holds it up, passive checkpoints go on
/// alone for a moment (longer after each try that gives up) before the next try. (A RESTART
/// from this thread would have to win the writer's lock from a writer that takes it back after
/// every commit, and SQLite refuses one at once while a passive one runs.)
final class WALCheckpointer: @unchecked Sendable {  // mutable state is guarded by `condition`
    /// Log size (pages; 32 MiB at 4 KiB by default) from which a passive checkpoint is started.
    /// Larger than SQLite's default of 1,000: a page rewritten by many commits (an index's
    /// last leaf, a mailbox's usage row) is copied once per checkpoint, not once per commit.
    let passivePages: Int32
    /// Log size (pages; 128 MiB at 4 KiB by default) from which the log is made to start over.
    let restartPages: Int32
    private let writerBusyTimeout: Int32

    private let connection: OpaquePointer
    private let condition = NSCondition()
    /// Held while a checkpoint runs (passive here, or the writer's RESTART).
    private let checkpointing = NSLock()
    private var logPages: Int32 = 0
    private var requested = false
    private var stopped = false
    /// True from `init` until the thread has ended.
    private var running = true
    private var checkpoints = 0
    private var restarts = 0
    /// After a RESTART that gave up (a long read), none is tried before this time.
    private var restartNotBefore = ContinuousClock.now
    /// How long passive checkpoints go on alone after a RESTART gives up: doubled after each
    /// one that does, back to the first value after one that succeeds.
    private var restartBackoff = firstRestartBackoff
    static let firstRestartBackoff: Duration = .milliseconds(250)
    static let longestRestartBackoff: Duration = .seconds(8)
    private var lastError: String?
    /// Checkpoints (passive or restart) that failed other than by waiting too long.
    private var failures = 0
    /// Failures are logged, at most once a minute: a checkpoint that keeps failing lets the log grow.
    private let logger: Logger?
    private var lastLogged: ContinuousClock.Instant?

    /// Opens a second connection to the database at `path` (already in WAL mode).
    /// - Parameter writerBusyTimeout: the writer connection's own busy timeout (ms), set back
    ///   after a restart.
    init(path: String, passivePages: Int32 = 8192, restartPages: Int32 = 32_768, writerBusyTimeout: Int32, logger: Logger? = nil) throws {
        self.logger = logger
        self.passivePages = passivePages
        self.restartPages = restartPages
        self.writerBusyTimeout = writerBusyTimeout
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
        // A passive checkpoint waits for nothing but another checkpoint (the writer's RESTART).
        sqlite3_busy_timeout(handle, 1_000)
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
        sqlite3_wal_autocheckpoint(db.sqliteConnection, 1000)  // SQLite's default
    }

    private func committed(logPages pages: Int32) {
        condition.lock()
        logPages = pages
        if pages >= passivePages {
            requested = true
            condition.signal()
        }
        condition.unlock()
    }

    /// Passive checkpoints and successful restarts so far, the failures and the last one, and
    /// the log's length after the last commit (for `/metrics`, tests and checks).
    var status: WriteAheadLogStatus {
        condition.lock()
        defer { condition.unlock() }
        return WriteAheadLogStatus(checkpoints: checkpoints, restarts: restarts, failures: failures, lastError: lastError, logPages: Int(logPages))
    }

    private func run() {
        condition.lock()
        while true {
            while !requested && !stopped { condition.wait() }
            if stopped { break }
            requested = false
            // Past the restart size the writer restarts the log at its next pause; copying now
            // would only compete.
            if wantsRestartLocked(pages: logPages) { continue }
            condition.unlock()

            var log: Int32 = 0
            var copied: Int32 = 0
            checkpointing.lock()
            let result = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &copied)
            checkpointing.unlock()

            condition.lock()
            checkpoints += 1
            // BUSY: the writer or a reader held on past the timeout; the next commit asks again.
            if result != SQLITE_OK && result != SQLITE_BUSY,
               let report = failed(String(cString: sqlite3_errmsg(connection)), pages: logPages) {
                // Logged outside the lock: the writer takes it in the middle of every commit.
                condition.unlock()
                report()
                condition.lock()
            }
        }
        running = false
        condition.broadcast()
        condition.unlock()
    }

    /// Records a failure (under `condition`); returns the report to log (after unlocking) unless
    /// one was logged in the last minute.
    private func failed(_ message: String, pages: Int32) -> (() -> Void)? {
        lastError = message
        failures += 1
        let now = ContinuousClock.now
        guard lastLogged.map({ now - $0 > .seconds(60) }) ?? true else { return nil }
        lastLogged = now
        let logger = self.logger
        return {
            logger?.error("checkpointing the write-ahead log failed; relay.sqlite-wal keeps growing until it succeeds",
                          metadata: ["error": "\(message)", "wal.pages": "\(pages)"])
        }
    }

    /// Whether the log is long enough for the writer to restart it (and no recent try gave up).
    var wantsRestart: Bool {
        condition.lock()
        defer { condition.unlock() }
        return wantsRestartLocked(pages: logPages)
    }

    private func wantsRestartLocked(pages: Int32) -> Bool {
        pages >= restartPages && ContinuousClock.now >= restartNotBefore
    }

    /// Runs a RESTART checkpoint on the writer's connection `db`, outside any transaction, if the
    /// log is long enough; waits at most 100 ms for readers.
    func restartIfWanted(on db: Database) {
        guard wantsRestart else { return }
        // SQLite refuses a checkpoint at once while another runs: if the passive one is still
        // copying, the writer goes on and tries again after its next batch.
        guard checkpointing.try() else { return }
        defer { checkpointing.unlock() }
        let connection = db.sqliteConnection
        sqlite3_busy_timeout(connection, 100)
        var log: Int32 = 0
        var copied: Int32 = 0
        let result = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_RESTART, &log, &copied)
        sqlite3_busy_timeout(connection, writerBusyTimeout)
        var report: (() -> Void)?
        condition.lock()
        if result == SQLITE_OK {
            restarts += 1
            logPages = 0
            restartBackoff = Self.firstRestartBackoff
        } else {
            // Held up by a read (or failed): passive checkpoints alone for a while, longer each time.
            restartNotBefore = ContinuousClock.now + restartBackoff
            restartBackoff = min(restartBackoff * 2, Self.longestRestartBackoff)
            if result != SQLITE_BUSY { report = failed(String(cString: sqlite3_errmsg(connection)), pages: logPages) }
        }
        condition.unlock()
        report?()
    }

    /// Stops the thread (after the checkpoint in progress) and closes the connection; safe to
    /// call more than once.
    func stop() {
        condition.lock()
        if stopped {
            condition.unlock()
            return
        }
        stopped = true
        condition.broadcast()
        while running { condition.wait() }
        condition.unlock()
        sqlite3_close_v2(connection)
    }
}
