import Foundation
import GRDB
import GRDBSQLite

/// A statement of the connection's cache, bound and stepped through SQLite's C API.
///
/// The store's single writer bounds the relay's throughput, and binding values one by one
/// through SQLite (rather than through boxed, reference-counted argument lists) is most of what
/// it saves per envelope. GRDB still owns and finalizes the statement; the writer never begins or
/// ends a transaction through it, so GRDB's transaction tracking is unaffected.
struct RawStatement {
    private let db: Database
    private let handle: OpaquePointer

    /// The cached statement for `sql` on `db`, reset and with no bindings.
    init(_ db: Database, _ sql: String) throws {
        self.db = db
        handle = try db.cachedStatement(sql: sql).sqliteStatement
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    /// Binds `value` to parameter `index` (1-based).
    func bind(_ index: Int32, _ value: Int64) throws {
        try check(sqlite3_bind_int64(handle, index, value))
    }

    /// Binds a blob (copied by SQLite) to parameter `index` (1-based).
    func bind(_ index: Int32, _ value: some ContiguousBytes) throws {
        try value.withUnsafeBytes { buffer in
            // A zero-length blob still needs a non-null pointer, or SQLite binds NULL.
            let base = buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1)
            try check(sqlite3_bind_blob(handle, index, base, Int32(buffer.count), sqliteTransient))
        }
    }

    /// Runs a statement that returns no rows (or whose rows are not wanted); resets it after.
    func run() throws {
        defer { sqlite3_reset(handle) }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            if code != SQLITE_ROW { throw error(code) }
        }
    }

    /// Steps to the next row: `true` while there is one. Call ``finish()`` when done early.
    func step() throws -> Bool {
        let code = sqlite3_step(handle)
        if code == SQLITE_ROW { return true }
        if code == SQLITE_DONE { return false }
        sqlite3_reset(handle)
        throw error(code)
    }

    /// Ends the current run (after ``step()``).
    func finish() {
        sqlite3_reset(handle)
    }

    /// Integer column `index` (0-based) of the current row.
    func int64(_ index: Int32) -> Int64 { sqlite3_column_int64(handle, index) }

    /// Blob column `index` (0-based) of the current row, copied.
    func bytes(_ index: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, index))
        guard count > 0, let base = sqlite3_column_blob(handle, index) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: base, count: count))
    }

    private func check(_ code: Int32) throws {
        if code != SQLITE_OK { throw error(code) }
    }

    private func error(_ code: Int32) -> DatabaseError {
        let message = db.sqliteConnection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sqlite3_sql(handle).map { String(cString: $0) })
    }
}

/// SQLite copies a value bound with this destructor.
private let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
