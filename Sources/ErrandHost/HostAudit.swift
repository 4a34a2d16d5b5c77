import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

extension HostStore {
    /// The relay's audit-log verifier key pinned by this host (at init, or at its first pairing).
    public func pinnedAuditKey() throws -> String? {
        try queue.read { db in try String.fetchOne(db, sql: "SELECT audit_key FROM host_settings WHERE id = 1") }
    }

    public func pinAuditKey(_ key: String) throws {
        try queue.write { db in try db.execute(sql: "UPDATE host_settings SET audit_key = ? WHERE id = 1", arguments: [key]) }
    }

    /// Remembers an envelope event this host took part in, to check in the relay's log later.
    public func recordAudit(_ envelope: Envelope, mailbox: MailboxID, event: AuditLeaf.Event, at time: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO audit_record (envelope_id, event, mailbox, digest, time) VALUES (?, ?, ?, ?, ?)",
                           arguments: [Data(envelope.id.bytes), event.rawValue, Data(mailbox.bytes), Data(SHA256.hash(envelope.encoded)), time])
        }
    }
}

/// The host's audit state: the last verified checkpoint of its relay and the events to find.
public struct HostAuditState: AuditState {
    let store: HostStore

    public init(store: HostStore) { self.store = store }

    public func lastVerifiedCheckpoint() throws -> String? {
        try store.queue.read { db in try String.fetchOne(db, sql: "SELECT note FROM audit_checkpoint WHERE id = 1") }
    }

    public func saveVerifiedCheckpoint(_ note: String) throws {
        try store.queue.write { db in try db.execute(sql: "INSERT OR REPLACE INTO audit_checkpoint (id, note) VALUES (1, ?)", arguments: [note]) }
    }

    public func pendingRecords() throws -> [AuditRecord] {
        try store.queue.read { db in
            try Row.fetchAll(db, sql: "SELECT envelope_id, mailbox, digest, event, time FROM audit_record WHERE leaf_index IS NULL ORDER BY time").compactMap { row in
                guard let event = AuditLeaf.Event(rawValue: UInt8(row[3] as Int)) else { return nil }
                return AuditRecord(envelopeID: try EnvelopeID(bytes: [UInt8](row[0] as Data)), mailbox: try MailboxID(bytes: [UInt8](row[1] as Data)),
                                   digest: [UInt8](row[2] as Data), event: event, time: row[4])
            }
        }
    }

    public func allRecords() throws -> [(record: AuditRecord, index: Int64?)] {
        try store.queue.read { db in
            try Row.fetchAll(db, sql: "SELECT envelope_id, mailbox, digest, event, time, leaf_index FROM audit_record  ORDER BY time").compactMap { row in
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

    public func counts() throws -> (verified: Int, total: Int) {
        try store.queue.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(leaf_index), COUNT(*) FROM audit_record")!
            return (row[0], row[1])
        }
    }
}
