import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

/// A task as this device knows it: its own (full output as it streamed in) and others' from the
/// host's history (output cut to the history limit).
public struct CachedTask: Sendable, Equatable {
    public let id: String
    public let hostID: Int64
    public let request: TaskRequest
    /// The device that sent it, when known from the host's history.
    public let device: String?
    public let position: Int64?
    public let status: TaskStatus
    public let exitCode: Int32?
    public let output: [UInt8]
    public let truncated: Bool
    public let reason: String?
    public let outputBytes: Int?
    public let outputDigest: String?
    public let createdAt: Int64
    public let updatedAt: Int64
}

extension CompanionStore {
    static let taskColumns = """
        id, host_id, request, device, position, status, exit_code, output, truncated, reason, output_bytes, output_digest, created_at, updated_at
        """

    static func task(_ row: Row) throws -> CachedTask {
        CachedTask(id: row[0], hostID: row[1], request: try JSONDecoder().decode(TaskRequest.self, from: Data((row[2] as String).utf8)),
                   device: row[3], position: row[4], status: TaskStatus(rawValue: row[5]) ?? .failed, exitCode: row[6],
                   output: [UInt8](row[7] as Data), truncated: row[8], reason: row[9], outputBytes: row[10], outputDigest: row[11],
                   createdAt: row[12], updatedAt: row[13])
    }

    /// Seals a task for `host`, queues it and records it as sent, in one transaction.
    public func sendTask(_ request: TaskRequest, to host: PairedHost) throws -> Envelope {
        try queue.write { db in
            let envelope = try Self.sealAndEnqueue(db, ConversationMessage.task(request).encoded(), to: host)
            let now = Int64(Date().timeIntervalSince1970)
            try db.execute(sql: "INSERT INTO task (id, host_id, request, status, created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                           arguments: [request.task, host.id, String(decoding: try JSONEncoder().encode(request), as: UTF8.self), now, now])
            return envelope
        }
    }

    /// A task by id (or by a unique prefix of at least 4 characters).
    public func task(_ reference: String) throws -> CachedTask? {
        try queue.read { db in
            if let row = try Row.fetchOne(db, sql: "SELECT \(Self.taskColumns) FROM task WHERE id = ?", arguments: [reference]) {
                return try Self.task(row)
            }
            guard reference.count >= 4 else { return nil }
            let rows = try Row.fetchAll(db, sql: "SELECT \(Self.taskColumns) FROM task WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                        arguments: [reference.replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"])
            return rows.count == 1 ? try Self.task(rows[0]) : nil
        }
    }

    /// The most recent task this device sent to `host`.
    public func latestTask(for host: Int64) throws -> CachedTask? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.taskColumns) FROM task WHERE host_id = ? AND device IS NULL ORDER BY created_at DESC, rowid DESC LIMIT 1",
                             arguments: [host]).map(Self.task)
        }
    }

    /// The conversation with `host` as cached here, in order.
    public func conversation(for host: Int64) throws -> [CachedTask] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.taskColumns) FROM task WHERE host_id = ? ORDER BY COALESCE(position, 9223372036854775807), created_at, rowid",
                             arguments: [host]).map(Self.task)
        }
    }

    /// Where a sync should start: before the first task cached as not yet finished, else after the last one.
    public func lastPosition(for host: Int64) throws -> Int64 {
        try queue.read { db in
            if let open = try Int64.fetchOne(db, sql: "SELECT MIN(position) FROM task WHERE host_id = ? AND position IS NOT NULL AND status IN ('queued', 'running')",
                                               arguments: [host]) {
                return open - 1
            }
            return try Int64.fetchOne(db, sql: "SELECT MAX(position) FROM task WHERE host_id = ?", arguments: [host]) ?? 0
        }
    }

    /// The reply to a request (actions or history), once it is complete.
    public func reply(to request: String) throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT body FROM reply WHERE request = ? AND complete = 1", arguments: [request]) }
    }

    /// Envelopes waiting in the outbox for all hosts.
    public func pendingCount() throws -> Int {
        try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0 }
    }

    /// Queues a message that is not a task (cancel, listActions, sync).
    public func sendMessage(_ message: ConversationMessage, to host: PairedHost) throws -> Envelope {
        try queue.write { db in try Self.sealAndEnqueue(db, message.encoded(), to: host) }
    }

    // MARK: Receiving

    static func hasReceived(_ db: Database, _ id: EnvelopeID) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM inbox WHERE envelope_id = ?)", arguments: [Data(id.bytes)]) ?? false
    }

    /// Opens an envelope from `host` and applies it, all in one transaction.
    /// - Returns: the message, or nil for a duplicate.
    /// - Throws: ``SessionError`` when it does not open (it is then dropped by the caller).
    public func receive(_ envelope: Envelope, from host: PairedHost) throws -> ConversationMessage? {
        try queue.write { db in
            if try Self.hasReceived(db, envelope.id) { return nil }
            var channel = try Self.channel(db, host)
            let payload = try channel.session.open(envelope)
            let now = Int64(Date().timeIntervalSince1970)
            try db.execute(sql: "INSERT INTO inbox (envelope_id, host_id, payload, received_at) VALUES (?, ?, x'', ?)",
                           arguments: [Data(envelope.id.bytes), host.id, now])
            try channel.session.ratchet.serialized.withWipedData { state in
                try db.execute(sql: "UPDATE session SET ratchet = ? WHERE host_id = ?", arguments: [state, host.id])
            }
            try db.execute(sql: "UPDATE host SET last_heard_at = ? WHERE id = ?", arguments: [now, host.id])
            guard let message = try? ConversationMessage(decoding: payload) else { return nil }
            try Self.apply(db, message, host: host.id, at: now)
            return message
        }
    }

    static func apply(_ db: Database, _ message: ConversationMessage, host: Int64, at now: Int64) throws {
        switch message {
        case .event(let event):
            guard let row = try Row.fetchOne(db, sql: "SELECT status, output FROM task WHERE id = ? AND host_id = ?", arguments: [event.task, host]) else {
                return
            }
            let current = TaskStatus(rawValue: row[0]) ?? .queued
            let stored: Data = row[1]
            // Output arrives in order; a repeated piece (offset already covered) is skipped.
            // (Counted in bytes: SQLite's length() would count characters of a concatenation.)
            if let output = event.output, let offset = event.offset, offset == stored.count {
                try db.execute(sql: "UPDATE task SET output = ?, updated_at = ? WHERE id = ?",
                               arguments: [stored + Data(output.utf8), now, event.task])
            }
            // A final status is never replaced by an earlier one arriving late.
            guard !current.isFinal else { return }
            try db.execute(sql: """
                UPDATE task SET status = ?, exit_code = COALESCE(?, exit_code), reason = COALESCE(?, reason), truncated = COALESCE(?, truncated),
                                output_bytes = COALESCE(?, output_bytes), output_digest = COALESCE(?, output_digest), updated_at = ?
                WHERE id = ?
                """, arguments: [event.status.rawValue, event.exitCode, event.reason, event.truncated, event.outputBytes, event.outputDigest, now, event.task])
        case .actions(let request, let actions):
            let body = String(decoding: try JSONEncoder().encode(actions), as: UTF8.self)
            try db.execute(sql: "INSERT OR REPLACE INTO reply (request, host_id, body, complete, received_at) VALUES (?, ?, ?, 1, ?)",
                           arguments: [request, host, body, now])
        case .history(let request, let entries, let complete):
            for entry in entries {
                let json = String(decoding: try JSONEncoder().encode(entry.request), as: UTF8.self)
                let existing = try Row.fetchOne(db, sql: "SELECT status FROM task WHERE id = ? AND host_id = ?", arguments: [entry.task, host])
                if existing == nil {
                    try db.execute(sql: """
                        INSERT INTO task (id, host_id, request, device, position, status, exit_code, output, truncated, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: [entry.task, host, json, entry.device, entry.position, entry.status.rawValue, entry.exitCode,
                                         Data(entry.output.utf8), entry.truncated, entry.createdAt, now])
                } else {
                    // Known here: keep this device's full output and any final status already
                    // received (a history snapshot may be older than the last event).
                    let known = TaskStatus(rawValue: existing?[0] ?? "") ?? .queued
                    let status = known.isFinal ? known : entry.status
                    let output: Data? = known.isFinal ? nil : Data(entry.output.utf8)
                    try db.execute(sql: """
                        UPDATE task SET position = ?, status = ?, exit_code = COALESCE(exit_code, ?), updated_at = ?,
                                        output = CASE WHEN device IS NOT NULL AND ? IS NOT NULL THEN ? ELSE output END
                        WHERE id = ? AND host_id = ?
                        """, arguments: [entry.position, status.rawValue, entry.exitCode, now, output, output, entry.task, host])
                }
            }
            let previous = try String.fetchOne(db, sql: "SELECT body FROM reply WHERE request = ?", arguments: [request]).map { Int($0) ?? 0 } ?? 0
            try db.execute(sql: "INSERT OR REPLACE INTO reply (request, host_id, body, complete, received_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [request, host, String(previous + entries.count), complete, now])
        case .approval(let request):
            try db.execute(sql: """
                INSERT OR IGNORE INTO approval (id, host_id, task, tool, summary, input, input_bytes, expires_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [request.id, host, request.task, request.tool, request.summary, request.input, request.inputBytes, request.expiresAt, now])
        case .approvalResolved(let resolution):
            try db.execute(sql: "UPDATE approval SET status = ?, answered_by = ?, reason = ? WHERE id = ? AND host_id = ?",
                           arguments: [resolution.outcome.rawValue, resolution.by, resolution.reason, resolution.approval, host])
        case .approvalRefused(let approval, let reason):
            try db.execute(sql: "UPDATE approval SET refusal = ? WHERE id = ? AND host_id = ?", arguments: [reason, approval, host])
            // Also as a reply: an answer given by id, for a request this device was never sent.
            try db.execute(sql: "INSERT OR REPLACE INTO reply (request, host_id, body, complete, received_at) VALUES (?, ?, ?, 1, ?)",
                           arguments: [CompanionStore.refusalReply(approval), host, reason, now])
        case .task, .cancel, .listActions, .sync, .approve:
            return
        }
    }
}
