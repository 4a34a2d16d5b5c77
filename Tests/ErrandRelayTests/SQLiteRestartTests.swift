@testable import ErrandRelay
import ErrandProtocol
import ErrandTestSupport
import Foundation
import Testing

@Suite("SQLite store across restarts")
struct SQLiteRestartTests {
    @Test("Sequence numbers continue far above any issued before, even after the newest envelope was acknowledged")
    func sequenceSkipsAtStart() async throws {
        let folder = try ScratchFolder()
        let store = try SQLiteRelayStore(directory: folder.path)
        let (mailbox, token) = try await makeMailbox(store)
        let envelope = sampleEnvelope()
        let incoming = IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: 100, expiresAt: 10_000)
        guard case .stored(let first) = try await store.storeEnvelope(incoming, sendToken: token.hash, quota: .init(maximumEnvelopes: 10, maximumBytes: 100_000)) else {
            Issue.record("expected the envelope to be stored"); return
        }
        // Acknowledged: no row holds the highest number any more.
        #expect(try await store.acknowledge([envelope.id], in: mailbox) == 1)
        try await store.close()

        let reopened = try SQLiteRelayStore(directory: folder.path)
        let next = sampleEnvelope()
        let again = IncomingEnvelope(mailbox: mailbox, id: next.id, encoded: next.encoded, storedAt: 100, expiresAt: 10_000)
        guard case .stored(let second) = try await reopened.storeEnvelope(again, sendToken: token.hash, quota: .init(maximumEnvelopes: 10, maximumBytes: 100_000)) else {
            Issue.record("expected the envelope to be stored"); return
        }
        #expect(second > first + 999_999, "\(first) then \(second)")
        try await reopened.close()
    }
}
