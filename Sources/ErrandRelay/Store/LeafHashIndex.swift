import Dispatch
import Foundation
import GRDB
import Synchronization

/// Finds an audit leaf's index by its hash, for `GET /v1/log/leaf?hash=` — kept in a database
/// file of its own (`audit-index.sqlite`), written on a thread of its own.
///
/// Leaf hashes are random, so every insert into an index on them lands on a random page; kept
/// in the store's database, that cost fell on the single writer that every post waits for. This
/// index holds nothing that is not derived from the log's leaves: it trails the integrated log
/// by moments, catches up from the leaves after a restart or crash, and never needs a sync of
/// its own. It maps the first 8 bytes of a hash to leaf indices; the store confirms a candidate
/// against the leaf itself.
final class LeafHashIndex: Sendable {
    private let queue: DatabaseQueue
    private let worker = DispatchQueue(label: "errand-relay.leaf-hash-index")
    /// Leaves indexed so far (every index below is in the table).
    private let indexedSize = Mutex<Int64>(0)
    /// The hashes of `count` leaves from index `start` on, read from the log.
    private let leafHashes: @Sendable (_ start: Int64, _ count: Int) throws -> [[UInt8]]

    /// Opens (creating if needed) `directory/audit-index.sqlite`; `leafHashes` reads the log's
    /// leaf hashes for catching up.
    init(directory: String, leafHashes: @escaping @Sendable (_ start: Int64, _ count: Int) throws -> [[UInt8]]) throws {
        self.leafHashes = leafHashes
        var configuration = Configuration()
        configuration.label = "errand-relay-leaf-index"
        configuration.busyMode = .timeout(10)
        let path = URL(fileURLWithPath: directory).appendingPathComponent("audit-index.sqlite").path
        do {
            queue = try Self.open(path: path, configuration: configuration)
        } catch {
            // Derived data: a damaged file is replaced and rebuilt from the leaves.
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            queue = try Self.open(path: path, configuration: configuration)
        }
        let size = try queue.read { db in try Int64.fetchOne(db, sql: "SELECT size FROM indexed") ?? 0 }
        indexedSize.withLock { $0 = size }
    }

    private static func open(path: String, configuration: Configuration) throws -> DatabaseQueue {
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.writeWithoutTransaction { db in
            _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            guard try String.fetchOne(db, sql: "PRAGMA quick_check") == "ok" else { throw DatabaseError(message: "the leaf index is damaged") }
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS leaf_hash (
                    prefix INTEGER NOT NULL,
                    idx INTEGER NOT NULL,
                    PRIMARY KEY (prefix, idx)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS indexed (size INTEGER NOT NULL);
                INSERT INTO indexed (size) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM indexed);
                """)
        }
        return queue
    }

    /// Leaves indexed so far.
    var size: Int64 { indexedSize.withLock { $0 } }

    /// Adds the hashes of leaves `start ..< start + hashes.count`, in the background. Leaves from
    /// `start` on that were indexed before (a log rebuilt from an earlier size) are dropped
    /// first; a gap before `start` is filled from the log.
    func add(start: Int64, hashes: [[UInt8]]) {
        worker.async { [self] in
            // On failure the next addition or start-up catches up from the log.
            try? catchUpNow(to: start)
            try? write(start: start, hashes: hashes)
        }
    }

    /// Indexes every leaf below `size` not indexed yet, from the log, in the background.
    func catchUp(to size: Int64) {
        worker.async { [self] in try? catchUpNow(to: size) }
    }

    private func catchUpNow(to size: Int64) throws {
        while true {
            let start = indexedSize.withLock { $0 }
            guard start < size else { return }
            let hashes = try leafHashes(start, Int(min(size - start, 16_384)))
            guard !hashes.isEmpty else { return }
            try write(start: start, hashes: hashes)
        }
    }

    /// Waits until every background write asked for so far has run (for tests and shutdown).
    func settle() {
        worker.sync {}
    }

    private func write(start: Int64, hashes: [[UInt8]]) throws {
        let known = indexedSize.withLock { $0 }
        guard start <= known else { return }
        let end = start + Int64(hashes.count)
        try queue.write { db in
            if start < known {
                // Only when the log was integrated again from an earlier size (a scan, but rare).
                try db.execute(sql: "DELETE FROM leaf_hash WHERE idx >= ?", arguments: [start])
            }
            // Sorted, so the inserts walk the table in order.
            let rows = hashes.enumerated().map { (Self.prefix($0.element), start + Int64($0.offset)) }.sorted { $0 < $1 }
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO leaf_hash (prefix, idx) VALUES (?, ?)")
            for (prefix, index) in rows { try insert.execute(arguments: [prefix, index]) }
            try db.execute(sql: "UPDATE indexed SET size = ?", arguments: [end])
        }
        indexedSize.withLock { $0 = end }
    }

    /// Leaf indices whose hash starts like `hash` (confirm each against the leaf), lowest first.
    func candidates(for hash: [UInt8]) async throws -> [Int64] {
        guard hash.count >= 8 else { return [] }
        return try await queue.read { db in
            try Int64.fetchAll(db, sql: "SELECT idx FROM leaf_hash WHERE prefix = ? ORDER BY idx", arguments: [Self.prefix(hash)])
        }
    }

    /// The first 8 bytes of a hash as a (signed) integer key.
    static func prefix(_ hash: [UInt8]) -> Int64 {
        Int64(bitPattern: hash.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    func close() throws {
        settle()
        try queue.close()
    }
}
