public import ErrandProtocol
import Foundation
import GRDB

extension SQLiteRelayStore {
    public func saveDoorbell(_ doorbell: Doorbell, maximum: Int) async throws -> DoorbellSave {
        try await writer.write { db in
            let mailbox = Data(doorbell.mailbox.bytes), id = Data(doorbell.id)
            try db.execute(sql: """
                UPDATE doorbell SET kind = ?, p256dh = ?, auth = ? WHERE mailbox = ? AND id = ?
                """, arguments: [doorbell.kind.rawValue, doorbell.subscriberKey.map { Data($0) }, doorbell.authSecret.map { Data($0) }, mailbox, id])
            if db.changesCount == 1 { return .replaced }
            try db.execute(sql: """
                INSERT INTO doorbell (mailbox, id, kind, url, p256dh, auth, created_at)
                SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE (SELECT count(*) FROM doorbell WHERE mailbox = ?1) < ?8
                """, arguments: [mailbox, id, doorbell.kind.rawValue, doorbell.url, doorbell.subscriberKey.map { Data($0) },
                                 doorbell.authSecret.map { Data($0) }, doorbell.createdAt, maximum])
            return db.changesCount == 1 ? .created : .full
        }
    }

    public func doorbells(of mailbox: MailboxID) async throws -> [Doorbell] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, kind, url, p256dh, auth, created_at FROM doorbell WHERE mailbox = ? ORDER BY created_at, id",
                             arguments: [Data(mailbox.bytes)]).compactMap { row in
                guard let kind = DoorbellKind(rawValue: row[1]) else { return nil }
                return Doorbell(mailbox: mailbox, id: [UInt8](row[0] as Data), kind: kind, url: row[2],
                                subscriberKey: (row[3] as Data?).map { [UInt8]($0) }, authSecret: (row[4] as Data?).map { [UInt8]($0) },
                                createdAt: row[5])
            }
        }
    }

    public func removeDoorbell(_ id: [UInt8], from mailbox: MailboxID) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM doorbell WHERE mailbox = ? AND id = ?", arguments: [Data(mailbox.bytes), Data(id)])
            return db.changesCount == 1
        }
    }
}
