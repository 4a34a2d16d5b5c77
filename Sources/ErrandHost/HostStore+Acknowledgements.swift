public import ErrandProtocol
import ErrandCrypto
import Foundation
import GRDB

/// Acknowledgements owed to the relay: each envelope the host took from its mailbox stays here,
/// in the transaction that processed it, until the relay confirms that it deleted it. Only then
/// does the host count it `delivered` in its audit records, so a lost acknowledgement (the relay
/// or the host killed in between) is sent again and never read as the relay's fault.
extension HostStore {
    /// At most this many ids per acknowledgement (the relay's limit).
    public static let acknowledgementBatch = 1024

    /// Queues an acknowledgement inside the caller's transaction (once per envelope).
    static func queueAcknowledgement(_ db: Database, _ envelope: Envelope, at time: Int64) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO pending_ack (envelope_id, digest, queued_at) VALUES (?, ?, ?)",
                       arguments: [Data(envelope.id.bytes), Data(SHA256.hash(envelope.encoded)), time])
    }

    /// Envelopes whose acknowledgement the relay has not confirmed yet, oldest first.
    public func pendingAcknowledgements(limit: Int = HostStore.acknowledgementBatch) throws -> [EnvelopeID] {
        try queue.read { db in
            try Data.fetchAll(db, sql: "SELECT envelope_id FROM pending_ack ORDER BY rowid LIMIT ?", arguments: [limit])
                .map { try EnvelopeID(bytes: [UInt8]($0)) }
        }
    }

    /// The relay confirmed these acknowledgements: each becomes a `delivered` audit record (to
    /// find in the relay's log) and leaves the queue, in one transaction.
    public func confirmAcknowledged(_ ids: [EnvelopeID], mailbox: MailboxID, at time: Int64) throws {
        try queue.write { db in
            for id in ids {
                try db.execute(sql: """
                    INSERT OR IGNORE INTO audit_record (envelope_id, event, mailbox, digest, time)
                    SELECT envelope_id, ?, ?, digest, ? FROM pending_ack WHERE envelope_id = ?
                    """, arguments: [AuditLeaf.Event.delivered.rawValue, Data(mailbox.bytes), time, Data(id.bytes)])
                try db.execute(sql: "DELETE FROM pending_ack WHERE envelope_id = ?", arguments: [Data(id.bytes)])
            }
        }
    }
}
