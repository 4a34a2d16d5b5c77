import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

extension CompanionStore {
    /// Remembers an envelope event this device took part in, to check in the relay's log later.
    public func recordAudit(_ envelope: Envelope, mailbox: MailboxID, event: AuditLeaf.Event, host: Int64, at time: Int64) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO audit_record (envelope_id, event, host_id, mailbox, digest, time) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [Data(envelope.id.bytes), event.rawValue, host, Data(mailbox.bytes), Data(SHA256.hash(envelope.encoded)), time])
        }
    }

    /// The pinned audit-log verifier key of a paired host's relay, if the pairing code had one.
    public func auditVerifierKey(for host: Int64) throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT audit_verifier_key FROM host WHERE id = ?", arguments: [host]) }
    }
}

/// A paired host's audit state on this device: the last verified checkpoint of its relay and the
/// envelope events still to find in the log.
public struct CompanionAuditState: AuditState {
    let store: CompanionStore
    let host: Int64

    public init(store: CompanionStore, host: Int64) {
        self.store = store
        self.host = host
    }

    public func lastVerifiedCheckpoint() throws -> String? {
        try store.queue.read { db in try String.fetchOne(db, sql: "SELECT note FROM audit_checkpoint WHERE host_id = ?", arguments: [host]) }
    }

    public func saveVerifiedCheckpoint(_ note: String) throws {
        try store.queue.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO audit_checkpoint (host_id, note) VALUES (?, ?)", arguments: [host, note])
        }
    }

    public func pendingRecords() throws -> [AuditRecord] {
        try store.queue.read { db in
            try Row.fetchAll(db, sql: "SELECT envelope_id, mailbox, digest, event, time FROM audit_record WHERE host_id = ? AND leaf_index IS NULL ORDER BY time",
                             arguments: [host]).compactMap { row in
                guard let event = AuditLeaf.Event(rawValue: UInt8(row[3] as Int)) else { return nil }
                return AuditRecord(envelopeID: try EnvelopeID(bytes: [UInt8](row[0] as Data)), mailbox: try MailboxID(bytes: [UInt8](row[1] as Data)),
                                   digest: [UInt8](row[2] as Data), event: event, time: row[4])
            }
        }
    }

    public func allRecords() throws -> [(record: AuditRecord, index: Int64?)] {
        try store.queue.read { db in
            try Row.fetchAll(db, sql: "SELECT envelope_id, mailbox, digest, event, time, leaf_index FROM audit_record WHERE host_id = ? ORDER BY time", arguments: [host]).compactMap { row in
                guard let event = AuditLeaf.Event(rawValue: UInt8(row[3] as Int)) else { return nil }
                let record = AuditRecord(envelopeID: try EnvelopeID(bytes: [UInt8](row[0] as Data)), mailbox: try MailboxID(bytes: [UInt8](row[1] as Data)),
                                         digest: [UInt8](row[2] as Data), event: event, time: row[4])
                return (record, row[5])
            }
        }
    }

    public func markVerified(_ record: AuditRecord, index: Int64) throws {
        try store.queue.write { db in
            try db.execute(sql: "UPDATE audit_record SET leaf_index = ? WHERE envelope_id = ? AND event = ?",
                           arguments: [index, Data(record.envelopeID.bytes), record.event.rawValue])
        }
    }

    /// Verified records, and all records, of this host.
    public func counts() throws -> (verified: Int, total: Int) {
        try store.queue.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(leaf_index), COUNT(*) FROM audit_record WHERE host_id = ?", arguments: [host])!
            return (row[0], row[1])
        }
    }
}
