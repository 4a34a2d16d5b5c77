import ErrandProtocol
import Foundation
public import GRDB

/// The `audit_record` table host and companion share (the companion's has a `host_id` column
/// to say which pairing a record belongs to): reading and marking records.
public enum AuditRecordTable {
    /// Records matching `filter` (an SQL condition, e.g. `host_id = ?`, or `1`), oldest first;
    /// only unproven ones when `pendingOnly`.
    public static func records(_ db: Database, filter: String, arguments: StatementArguments, pendingOnly: Bool) throws -> [(record: AuditRecord, index: Int64?)] {
        let pending = pendingOnly ? " AND leaf_index IS NULL" : ""
        return try Row.fetchAll(db, sql: "SELECT envelope_id, mailbox, digest, event, time, leaf_index FROM audit_record WHERE \(filter)\(pending) ORDER BY time",
                                arguments: arguments).compactMap { row in
            guard let event = AuditLeaf.Event(rawValue: UInt8(row[3] as Int)) else { return nil }
            let record = AuditRecord(envelopeID: try EnvelopeID(bytes: [UInt8](row[0] as Data)), mailbox: try MailboxID(bytes: [UInt8](row[1] as Data)),
                                     digest: [UInt8](row[2] as Data), event: event, time: row[4])
            return (record, row[5])
        }
    }

    /// Notes the leaf index a record was proven at.
    public static func markVerified(_ db: Database, _ record: AuditRecord, index: Int64) throws {
        try db.execute(sql: "UPDATE audit_record SET leaf_index = ? WHERE envelope_id = ? AND event = ?",
                       arguments: [index, Data(record.envelopeID.bytes), record.event.rawValue])
    }
}
