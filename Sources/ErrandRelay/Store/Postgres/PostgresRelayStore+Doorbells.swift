public import ErrandProtocol
import NIOCore
import PostgresNIO

extension PostgresRelayStore {
    public func saveDoorbell(_ doorbell: Doorbell, maximum: Int) async throws -> DoorbellSave {
        let logger = self.logger
        let mailbox = bytea(doorbell.mailbox.bytes), id = bytea(doorbell.id), kind = doorbell.kind.rawValue
        let key = doorbell.subscriberKey.map(bytea), secret = doorbell.authSecret.map(bytea)
        return try await transaction { connection in
            // The mailbox's row lock makes the count and the insert one step across nodes.
            try await connection.query("SELECT 1 FROM mailbox WHERE id = \(mailbox) FOR UPDATE", logger: logger)
            let updated = try await connection.query("""
                UPDATE doorbell SET kind = \(kind), p256dh = \(key), auth = \(secret) WHERE mailbox = \(mailbox) AND id = \(id) RETURNING 1
                """, logger: logger).collect()
            if !updated.isEmpty { return .replaced }
            let inserted = try await !connection.query("""
                INSERT INTO doorbell (mailbox, id, kind, url, p256dh, auth, created_at)
                SELECT \(mailbox), \(id), \(kind), \(doorbell.url), \(key), \(secret), \(doorbell.createdAt)
                WHERE (SELECT count(*) FROM doorbell WHERE mailbox = \(mailbox)) < \(Int64(maximum))
                RETURNING 1
                """, logger: logger).collect().isEmpty
            return inserted ? .created : .full
        }
    }

    public func doorbells(of mailbox: MailboxID) async throws -> [Doorbell] {
        let rows = try await rows("""
            SELECT id, kind, url, p256dh, auth, created_at FROM doorbell WHERE mailbox = \(bytea(mailbox.bytes)) ORDER BY created_at, id
            """)
        var doorbells: [Doorbell] = []
        for row in rows {
            let (id, kind, url, key, secret, created) = try row.decode((ByteBuffer, String, String, ByteBuffer?, ByteBuffer?, Int64).self)
            guard let kind = DoorbellKind(rawValue: kind) else { continue }
            doorbells.append(Doorbell(mailbox: mailbox, id: bytes(id), kind: kind, url: url, subscriberKey: key.map(bytes),
                                      authSecret: secret.map(bytes), createdAt: created))
        }
        return doorbells
    }

    public func removeDoorbell(_ id: [UInt8], from mailbox: MailboxID) async throws -> Bool {
        try await rows("DELETE FROM doorbell WHERE mailbox = \(bytea(mailbox.bytes)) AND id = \(bytea(id)) RETURNING 1").count == 1
    }
}
