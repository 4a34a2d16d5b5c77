import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTransparency
import Testing

/// Signed requests name the relay they are for (its audit-log verifier key).
@Suite("Relay identity in signed requests")
struct RelayIdentityTests {
    @Test("A client that knew the relay at its address under another key fetches the new one and goes on")
    func newRelayAtSameAddress() async throws {
        let owner = Ed25519.SecretKey()
        var client: RelayClient?
        // The first relay: the client learns its key while it creates the mailbox.
        let port = try await TestRelay.with { relay in
            let client0 = RelayClient(baseURL: relay.url)
            client = client0
            try await client0.createMailbox(owner: owner)
            #expect(try await client0.fetch(owner: owner).envelopes.isEmpty)
            return Int(relay.url.split(separator: ":").last ?? "") ?? 0
        }
        guard let client else { return }
        // A new installation (new data folder, new key) at the same address, holding the mailbox.
        try await TestRelay.with({ $0.port = port }) { relay in
            #expect(relay.url == client.baseURL)
            try await relay.client.createMailbox(owner: owner)
            let token = SendToken()
            try await relay.client.addSendToken(token.hash, owner: owner)
            _ = try await relay.client.post(sampleEnvelope(), to: MailboxID(owner: owner.publicKey), token: token)
            // Its first signed request names the old key and is refused; it fetches the new key
            // and signs again.
            #expect(try await client.fetch(owner: owner).envelopes.count == 1)
        }
    }

    @Test("A client with a pinned key signs for it only: at a relay with another key it is refused, and says why")
    func pinnedKey() async throws {
        try await TestRelay.with { relay in
            let owner = Ed25519.SecretKey()
            try await relay.client.createMailbox(owner: owner)
            // Pinned to another relay's key (as a client paired with that relay, sent here by a
            // relay claiming to be it): its signed requests are no good here, and it does not
            // adopt this relay's key.
            let elsewhere = try NoteSigner(name: "errand-relay/elsewhere", secretKey: Ed25519.SecretKey()).verifier.description
            let misled = RelayClient(baseURL: relay.url, pinnedRelayKey: elsewhere)
            do {
                _ = try await misled.fetch(owner: owner)
                Issue.record("a request signed for another relay was accepted")
            } catch let error as RelayClientError {
                #expect(error.code == .unauthenticated)
                #expect(error.message.contains("not with the key pinned for it"))
            }
            do {
                _ = try await misled.fetch(owner: owner)
                Issue.record("the client adopted the relay's key")
            } catch let error as RelayClientError {
                #expect(error.code == .unauthenticated)
            }
            // Pinned to this relay's key, it works.
            let paired = RelayClient(baseURL: relay.url, pinnedRelayKey: try await relay.client.auditVerifierKey())
            #expect(try await paired.fetch(owner: owner).envelopes.isEmpty)
        }
    }
}
