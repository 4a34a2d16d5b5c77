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
        try store.queue.read { db in try AuditRecordTable.records(db, filter: "host_id = ?", arguments: [host], pendingOnly: true).map(\.record) }
    }

    public func allRecords() throws -> [(record: AuditRecord, index: Int64?)] {
        try store.queue.read { db in try AuditRecordTable.records(db, filter: "host_id = ?", arguments: [host], pendingOnly: false) }
    }

    public func markVerified(_ record: AuditRecord, index: Int64) throws {
        try store.queue.write { db in try AuditRecordTable.markVerified(db, record, index: index) }
    }
}
