import GRDB
import Synchronization

/// Runs many small writes in few transactions: while one transaction commits (and syncs to
/// disk), new writes queue up; the next transaction takes all of them. Each write runs in its
/// own savepoint, so one failing write does not undo the others, and no caller hears back
/// before the transaction holding its write has committed — and, with a ``WALSyncer``, until
/// that commit is on disk, while the writer already runs the next transaction.
final class GroupCommitWriter: Sendable {
    /// One queued write: `perform` runs inside the batch transaction, `committed` once the
    /// transaction is durable (or, with `false`, when its sync failed), `finish` then.
    private struct Pending: Sendable {
        let perform: @Sendable (Database) -> Void
        let committed: @Sendable (_ durable: Bool) -> Void
        let finish: @Sendable (_ transactionError: (any Error)?) -> Void
    }

    private struct State {
        var queue: [Pending] = []
        var draining = false
    }

    private let pool: DatabasePool
    private let maximumBatch: Int
    private let syncer: WALSyncer?
    private let checkpointer: WALCheckpointer?
    private let state = Mutex(State())

    /// - Parameters:
    ///   - syncer: makes each commit durable before its callers hear back; `nil` when the commit
    ///     itself is as durable as wanted.
    ///   - checkpointer: restarts the write-ahead log between two batches when it is long.
    init(pool: DatabasePool, maximumBatch: Int = 1024, syncer: WALSyncer? = nil, checkpointer: WALCheckpointer? = nil) {
        self.pool = pool
        self.maximumBatch = maximumBatch
        self.syncer = syncer
        self.checkpointer = checkpointer
    }

    /// Runs `body` in a savepoint of the next batch transaction and returns its result once
    /// that transaction has committed. If the transaction fails, every write in it fails.
    /// - Parameter committed: called with `body`'s result once its transaction is durable (synced,
    ///   or committed when there is no syncer), in commit order across all writes, just before
    ///   the caller hears back; with `nil` if the transaction committed but its sync failed.
    func write<Value: Sendable>(_ body: @escaping @Sendable (Database) throws -> Value,
                                committed: (@Sendable (Value?) -> Void)? = nil) async throws -> Value {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
            let outcome = Mutex<Result<Value, any Error>?>(nil)
            let pending = Pending(
                perform: { db in
                    let result: Result<Value, any Error>
                    do {
                        var value: Value?
                        try db.inSavepoint {
                            value = try body(db)
                            return .commit
                        }
                        result = .success(value!)
                    } catch {
                        result = .failure(error)
                    }
                    outcome.withLock { $0 = result }
                },
                committed: { durable in
                    guard let committed, case .success(let value)? = outcome.withLock({ $0 }) else { return }
                    committed(durable ? value : nil)
                },
                finish: { transactionError in
                    if let transactionError {
                        continuation.resume(throwing: transactionError)
                    } else {
                        let result = outcome.withLock { $0 } ?? .failure(CancellationError())
                        continuation.resume(with: result)
                    }
                })
            let startDrain = state.withLock { state -> Bool in
                state.queue.append(pending)
                guard !state.draining else { return false }
                state.draining = true
                return true
            }
            if startDrain {
                Task { await self.drain() }
            }
        }
    }

    /// Commits batches until the queue is empty.
    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Pending] in
                let count = min(state.queue.count, maximumBatch)
                let batch = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                if batch.isEmpty { state.draining = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            var transactionError: (any Error)?
            do {
                try await pool.write { db in
                    for pending in batch { pending.perform(db) }
                }
            } catch {
                // Begin or commit failed (disk full, I/O error): nothing in the batch is durable.
                transactionError = error
            }
            // Completions run in the order they were handed over, so `committed` keeps commit order.
            if let syncer, transactionError == nil {
                syncer.whenDurable { syncError in
                    for pending in batch { pending.committed(syncError == nil) }
                    for pending in batch { pending.finish(syncError) }
                }
            } else {
                if transactionError == nil {
                    for pending in batch { pending.committed(true) }
                }
                for pending in batch { pending.finish(transactionError) }
            }
            if let checkpointer, checkpointer.wantsRestart {
                try? await pool.writeWithoutTransaction { db in checkpointer.restartIfWanted(on: db) }
            }
        }
    }
}

