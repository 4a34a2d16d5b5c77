import Foundation
import GRDB
import Synchronization

/// Runs many small writes in few transactions: while one transaction commits (and syncs to
/// disk), new writes queue up; the next transaction takes all of them. One failing write does
/// not undo the others, and no caller hears back before the transaction holding its write has
/// committed — and, with a ``WALSyncer``, until that commit is on disk, while the writer already
/// runs the next transaction. Transactions run on a thread of the writer's own, which ends after
/// a second without writes.
///
/// Writes first run side by side in the transaction. Should one of them throw, the transaction
/// is rolled back and the batch runs again with each write in a savepoint of its own. (A
/// savepoint around every write made SQLite copy each page a write touched first: for an
/// acknowledgement about a third of its cost.)
///
/// Bulk clean-up (acknowledgements, expiry) is *deferrable*: a transaction takes every prompt
/// write that is waiting, but deferrable rows only up to as many as its prompt rows, or
/// ``deferredRowsPerTransaction`` when that is more. A post then never waits behind a large
/// clean-up (at 5,000 posts/s, eight receivers acknowledging 64 envelopes each at once made one
/// transaction of 7 ms), while clean-up still keeps pace with posts under full load.
final class GroupCommitWriter: @unchecked Sendable {
    /// How a write takes its turn.
    enum Turn: Sendable {
        /// Someone waits on it (a post, a registration): it goes into the next transaction.
        case prompt(rows: Int)
        /// Clean-up touching about `rows` rows: it may wait for a later transaction.
        case deferrable(rows: Int)

        static let prompt = Turn.prompt(rows: 1)
    }

    /// Deferrable rows a transaction may take whatever its prompt rows (at least one deferrable
    /// write always goes, whatever its size).
    static let deferredRowsPerTransaction = 64

    /// One queued write: `perform` runs inside the batch transaction, `committed` once the
    /// transaction is durable (or, with `false`, when its sync failed), `finish` then.
    private struct Pending: Sendable {
        let turn: Turn
        /// Runs the write. In a savepoint, a failure is kept as the write's outcome; without one,
        /// it is kept and thrown, to roll the whole transaction back.
        let perform: @Sendable (_ db: Database, _ inSavepoint: Bool) throws -> Void
        let committed: @Sendable (_ durable: Bool) -> Void
        let finish: @Sendable (_ transactionError: (any Error)?) -> Void
    }

    private struct State {
        var prompt: [Pending] = []
        var deferrable: [Pending] = []
        var draining = false

        /// The next transaction's writes: the prompt ones first (up to `maximum`), then deferrable
        /// ones within their allowance of rows (however many writes that is).
        mutating func takeBatch(maximum: Int) -> [Pending] {
            let promptCount = min(prompt.count, maximum)
            var batch = Array(prompt.prefix(promptCount))
            prompt.removeFirst(promptCount)
            let allowance = max(GroupCommitWriter.deferredRowsPerTransaction, batch.reduce(0) { $0 + $1.turn.rows })
            var deferredRows = 0
            var deferredCount = 0
            for pending in deferrable {
                guard deferredCount == 0 || deferredRows + pending.turn.rows <= allowance else { break }
                batch.append(pending)
                deferredRows += pending.turn.rows
                deferredCount += 1
            }
            deferrable.removeFirst(deferredCount)
            return batch
        }
    }

    private let pool: DatabasePool
    private let maximumBatch: Int
    private let syncer: WALSyncer?
    private let checkpointer: WALCheckpointer?
    /// Guards `state`; the writer thread waits on it for work.
    private let condition = NSCondition()
    private var state = State()
    /// How long the writer thread waits for more work before it ends (the next write starts one).
    private static let writerLinger = 1.0

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

    /// Runs `body` in the next batch transaction (or, for a deferrable `turn`, a later one) and
    /// returns its result once that transaction has committed. If the transaction fails, every
    /// write in it fails. `body` must touch nothing but the database: when another write of its
    /// batch throws, it runs again (in a savepoint of its own).
    /// - Parameter committed: called with `body`'s result once its transaction is durable (synced,
    ///   or committed when there is no syncer), in commit order across all writes, just before
    ///   the caller hears back; with `nil` if the transaction committed but its sync failed.
    func write<Value: Sendable>(turn: Turn = .prompt, _ body: @escaping @Sendable (Database) throws -> Value,
                                committed: (@Sendable (Value?) -> Void)? = nil) async throws -> Value {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
            let outcome = Mutex<Result<Value, any Error>?>(nil)
            let pending = Pending(
                turn: turn,
                perform: { db, inSavepoint in
                    let result: Result<Value, any Error>
                    do {
                        if inSavepoint {
                            var value: Value?
                            try db.inSavepoint {
                                value = try body(db)
                                return .commit
                            }
                            result = .success(value!)
                        } else {
                            result = .success(try body(db))
                        }
                    } catch {
                        result = .failure(error)
                    }
                    outcome.withLock { $0 = result }
                    if !inSavepoint, case .failure(let error) = result { throw WriteFailed(error: error) }
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
            condition.lock()
            switch turn {
            case .prompt: state.prompt.append(pending)
            case .deferrable: state.deferrable.append(pending)
            }
            let startDrain = !state.draining
            state.draining = true
            condition.signal()
            condition.unlock()
            if startDrain {
                // A thread of its own, calling GRDB synchronously: the transaction then runs on it,
                // with no hop to GRDB's queue and back to the task pool for every batch.
                let thread = Thread { self.drain() }
                thread.name = "errand-writer"
                thread.start()
            }
        }
    }

    /// Writes waiting for a transaction (for tests).
    var queuedWrites: Int {
        condition.lock()
        defer { condition.unlock() }
        return state.prompt.count + state.deferrable.count
    }

    /// The next batch; when there is none, waits a while for one. Empty: the thread is to end.
    private func nextBatch() -> [Pending] {
        condition.lock()
        defer { condition.unlock() }
        var batch = state.takeBatch(maximum: maximumBatch)
        if batch.isEmpty {
            _ = condition.wait(until: Date(timeIntervalSinceNow: Self.writerLinger))
            batch = state.takeBatch(maximum: maximumBatch)
            if batch.isEmpty { state.draining = false }
        }
        return batch
    }

    /// Commits batches until no write came for a while (on the writer thread).
    private func drain() {
        while true {
            let batch = nextBatch()
            guard !batch.isEmpty else { return }
            var transactionError: (any Error)?
            do {
                do {
                    try pool.write { db in
                        for pending in batch { try pending.perform(db, false) }
                    }
                } catch is WriteFailed {
                    // Rolled back: again, each write in a savepoint (the failed one fails alone).
                    try pool.write { db in
                        for pending in batch { try pending.perform(db, true) }
                    }
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
                try? pool.writeWithoutTransaction { db in checkpointer.restartIfWanted(on: db) }
            }
        }
    }
}

/// A write threw while running without a savepoint: the transaction must be rolled back.
private struct WriteFailed: Error {
    let error: any Error
}

extension GroupCommitWriter.Turn {
    var rows: Int {
        switch self {
        case .prompt(let rows), .deferrable(let rows): max(rows, 1)
        }
    }
}
