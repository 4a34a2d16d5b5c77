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
        try store.queue.read { db in try AuditRecordTable.records(db, filter: "1", arguments: StatementArguments(), pendingOnly: true).map(\.record) }
    }

    public func allRecords() throws -> [(record: AuditRecord, index: Int64?)] {
        try store.queue.read { db in try AuditRecordTable.records(db, filter: "1", arguments: StatementArguments(), pendingOnly: false) }
    }

    public func markVerified(_ record: AuditRecord, index: Int64) throws {
        try store.queue.write { db in try AuditRecordTable.markVerified(db, record, index: index) }
    }
}
