import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes committed transactions durable off the writer: after a commit (which SQLite makes with
/// `synchronous = NORMAL`, writing the WAL without syncing it) the writer hands its callers here
/// and goes on with the next transaction; this syncs the WAL file and only then answers them.
///
/// One sync covers every transaction committed before it started, so while one sync runs the
/// commits behind it gather and share the next. The disk's sync latency then no longer stalls
/// the one writer — it only bounds how long a caller waits.
final class WALSyncer: Sendable {
    /// Called once the transactions handed over before it are on disk (or with the sync's error).
    typealias Completion = @Sendable (_ syncError: (any Error)?) -> Void

    private struct State {
        var waiting: [Completion] = []
        var syncing = false
        var syncs = 0
    }

    private let sync: @Sendable () throws -> Void
    private let queue = DispatchQueue(label: "errand-relay.wal-sync")
    private let state = Mutex(State())

    /// Syncs the file at `path` (the database's `-wal` file).
    convenience init(walPath: String) {
        self.init { try Self.syncFile(at: walPath) }
    }

    /// Runs `sync` to make what was committed durable (tests pass their own).
    init(sync: @escaping @Sendable () throws -> Void) {
        self.sync = sync
    }

    /// Calls `completion` once a sync that started after this call has finished.
    func whenDurable(_ completion: @escaping Completion) {
        let start = state.withLock { state -> Bool in
            state.waiting.append(completion)
            guard !state.syncing else { return false }
            state.syncing = true
            return true
        }
        if start { queue.async { self.run() } }
    }

    /// Syncs completed so far (for tests and checks).
    var syncCount: Int { state.withLock { $0.syncs } }

    private func run() {
        while true {
            let batch = state.withLock { state -> [Completion] in
                let batch = state.waiting
                state.waiting = []
                if batch.isEmpty { state.syncing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            var syncError: (any Error)?
            do { try sync() } catch { syncError = error }
            state.withLock { $0.syncs += 1 }
            for completion in batch { completion(syncError) }
        }
    }

    /// `fdatasync` (Linux) or `fsync` of the file at `path`. A missing file has nothing to sync:
    /// SQLite removes the WAL only after checkpointing it into the (synced) database file.
    static func syncFile(at path: String) throws {
        let descriptor = open(path, O_RDONLY)
        if descriptor < 0 {
            if errno == ENOENT { return }
            throw WALSyncError(path: path, code: errno)
        }
        defer { close(descriptor) }
        #if os(Linux)
        let result = fdatasync(descriptor)
        #else
        let result = fsync(descriptor)
        #endif
        if result != 0 { throw WALSyncError(path: path, code: errno) }
    }
}

/// Syncing the database's write-ahead log failed: the transactions it covered may not be on disk.
struct WALSyncError: Error, CustomStringConvertible {
    let path: String
    let code: Int32

    var description: String {
        "could not sync \((path as NSString).lastPathComponent) to disk (\(String(cString: strerror(code)))); the relay did not confirm these writes"
    }
}
