import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import ErrandTestSupport
import ErrandTransparency
import Foundation
import Testing

@Suite("A peer's check of the relay's log")
struct AuditVerifierTests {
    @Test("A peer that first verified the empty log accepts the log growing from it")
    func growsFromTheEmptyLog() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let key = try #require(try host.store.pinnedAuditKey())
        let checker = AuditVerifier(client: world.client, verifier: try NoteVerifier(parsing: key), state: HostAuditState(store: host.store),
                                    evidenceFolder: world.folder.path("evidence"))
        let empty = try await checker.verify()
        #expect(empty.passed, "\(empty.findings)")
        #expect(empty.checkpointSize == 0)

        // Something is logged: the log grows from 0 leaves.
        let owner = Ed25519.SecretKey()
        let token = SendToken()
        try await world.client.createMailbox(owner: owner)
        try await world.client.addSendToken(token.hash, owner: owner)
        _ = try await world.client.post(try Envelope(ciphertext: SecureRandom.bytes(count: 64)), to: MailboxID(owner: owner.publicKey), token: token)
        var grown: AuditVerification?
        for _ in 0..<40 {
            let result = try await checker.verify()
            if result.checkpointSize > 0 { grown = result; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let result = try #require(grown, "the log never grew")
        #expect(result.passed, "\(result.findings)")
    }
}
