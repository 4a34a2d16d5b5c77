public import GRDB

/// Opens a peer's SQLite state file: created 0600, WAL, secure delete, foreign keys on, migrated.
///
/// GRDB begins write transactions as `IMMEDIATE`: a write takes the database's write lock when it
/// begins, so a read-modify-write of a session (decrypt or encrypt, then save) inside one
/// `write` is never interleaved with another process's.
public enum StateDatabase {
    /// Opens `name` in `directory` and applies `migrator`.
    public static func open(_ name: String, in directory: StateDirectory, migrator: DatabaseMigrator) throws(PeerError) -> DatabaseQueue {
        try directory.prepare()
        try directory.createPrivateFile(name)
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // secure_delete: space freed by a row's update or deletion is zeroed, so a superseded
            // ratchet state or a deleted key does not linger in the file's free space. (Debian's
            // SQLite has it on by default; others, such as macOS's, may not.)
            try db.execute(sql: "PRAGMA secure_delete = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL")
        }
        do {
            let queue = try DatabaseQueue(path: directory.file(name), configuration: configuration)
            try migrator.migrate(queue)
            return queue
        } catch {
            throw PeerError("cannot open the state database \(directory.file(name)): \(error)",
                            hint: "check that the file is yours and not damaged")
        }
    }
}
