public import ErrandProtocol
import GRDB

/// An approval request as the host keeps it (`approval` table), for the host's log.
public struct ApprovalRecord: Sendable, Equatable {
    public let id: String
    public let task: String
    public let tool: String
    public let status: String
    public let answeredBy: String?
    public let reason: String?
    public let createdAt: Int64
    public let answeredAt: Int64?
}

extension HostStore {
    /// Records a request waiting for an answer.
    func insertApproval(_ request: ApprovalRequest, at time: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "INSERT INTO approval (id, task, tool, input, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [request.id, request.task, request.tool, request.input, time, request.expiresAt])
        }
    }

    /// Settles a pending request; false when it was already settled (the first answer wins).
    func settleApproval(_ id: String, outcome: ApprovalResolution.Outcome, by device: String?, reason: String?, at time: Int64) throws -> Bool {
        try queue.write { db in
            try db.execute(sql: """
                UPDATE approval SET status = ?, answered_by = ?, reason = ?, answered_at = ? WHERE id = ? AND status = 'pending'
                """, arguments: [outcome.rawValue, device, reason, time, id])
            return db.changesCount == 1
        }
    }

    /// One request as recorded, nil when unknown.
    public func approval(_ id: String) throws -> ApprovalRecord? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT id, task, tool, status, answered_by, reason, created_at, answered_at FROM approval WHERE id = ?",
                             arguments: [id]).map(Self.approvalRecord)
        }
    }

    /// Every request, oldest first.
    public func approvals() throws -> [ApprovalRecord] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, task, tool, status, answered_by, reason, created_at, answered_at FROM approval ORDER BY created_at, rowid")
                .map(Self.approvalRecord)
        }
    }

    /// Requests a host that stopped left pending: denied, as the agent that asked is gone.
    func denyPendingApprovals(reason: String, at time: Int64) throws -> [ApprovalRecord] {
        try queue.write { db in
            let pending = try Row.fetchAll(db, sql: """
                SELECT id, task, tool, status, answered_by, reason, created_at, answered_at FROM approval WHERE status = 'pending'
                """).map(Self.approvalRecord)
            try db.execute(sql: "UPDATE approval SET status = 'denied', reason = ?, answered_at = ? WHERE status = 'pending'", arguments: [reason, time])
            return pending
        }
    }

    static func approvalRecord(_ row: Row) -> ApprovalRecord {
        ApprovalRecord(id: row[0], task: row[1], tool: row[2], status: row[3], answeredBy: row[4], reason: row[5], createdAt: row[6], answeredAt: row[7])
    }
}
