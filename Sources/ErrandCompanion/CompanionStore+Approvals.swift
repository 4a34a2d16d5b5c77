public import ErrandProtocol
import Foundation
import GRDB

/// An agent's approval request as this device knows it: the request as the host sent it, and
/// how it stands.
public struct CachedApproval: Sendable, Equatable {
    public let request: ApprovalRequest
    public let hostID: Int64
    public var id: String { request.id }
    /// `pending`, `allowed` or `denied`.
    public let status: String
    public let answeredBy: String?
    public let reason: String?
    /// Why the host did not count this device's answer (already answered, not allowed).
    public let refusal: String?

    public var isPending: Bool { status == "pending" }
}

extension CompanionStore {
    static let approvalColumns = "id, host_id, task, tool, summary, input, input_bytes, expires_at, status, answered_by, reason, refusal"

    static func approval(_ row: Row) -> CachedApproval {
        CachedApproval(request: ApprovalRequest(id: row[0], task: row[2], tool: row[3], summary: row[4], input: row[5], inputBytes: row[6],
                                                expiresAt: row[7]),
                       hostID: row[1], status: row[8], answeredBy: row[9], reason: row[10], refusal: row[11])
    }

    /// Requests still waiting for an answer (not expired), oldest first; of one host, or all.
    public func pendingApprovals(host: Int64? = nil, task: String? = nil) throws -> [CachedApproval] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(Self.approvalColumns) FROM approval
                WHERE status = 'pending' AND expires_at > ? AND (? IS NULL OR host_id = ?) AND (? IS NULL OR task = ?)
                ORDER BY received_at, rowid
                """, arguments: [Int64(Date().timeIntervalSince1970), host, host, task, task]).map(Self.approval)
        }
    }

    /// One request by its id or the start of it (at least 4 characters, matching one).
    public func approval(_ reference: String) throws -> CachedApproval? {
        try queue.read { db in
            if let row = try Row.fetchOne(db, sql: "SELECT \(Self.approvalColumns) FROM approval WHERE id = ?", arguments: [reference]) {
                return Self.approval(row)
            }
            guard reference.count >= 4 else { return nil }
            let rows = try Row.fetchAll(db, sql: "SELECT \(Self.approvalColumns) FROM approval WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                                        arguments: [reference.replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"])
            return rows.count == 1 ? Self.approval(rows[0]) : nil
        }
    }

    /// The reply key under which the host's refusal of this device's answer to `approval` is kept.
    public static func refusalReply(_ approval: String) -> String { "approval-refused:" + approval }

    /// Forgets an earlier refusal before answering again.
    public func clearRefusal(of approval: String) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE approval SET refusal = NULL WHERE id = ?", arguments: [approval])
            try db.execute(sql: "DELETE FROM reply WHERE request = ?", arguments: [Self.refusalReply(approval)])
        }
    }
}
