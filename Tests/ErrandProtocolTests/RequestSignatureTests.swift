import ErrandCrypto
import ErrandProtocol
import Foundation
import Testing

/// Signed relay requests (docs/protocol.md, "Signed requests" and the published test vector).
@Suite("Signed relay requests")
struct RequestSignatureTests {
    static let relay = "relay.example.com+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    static let body = Array(#"{"hash":"abc"}"#.utf8)
    static let nonce = ByteEncoding.base64URL(Array(0x70..<0x80))
    static let text = """
        errand-relay-request-v2
        relay.example.com+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k
        POST
        /v1/mailboxes/example/send-tokens
        1767225600
        cHFyc3R1dnd4eXp7fH1-fw
        45585041e3e804a5290a1b0957818dd5f06a7011af6c21b01aa22c8b199f38c3
        """
    /// Computed with Python's `cryptography` package, independently of this code.
    static let signature = "mtEWTIb82POu84ieaMkzmNqJpEqk9vIi9MxASDrXTgfBJmB4rV9P57OhsQFF-VHIJs6-rg0zaBOIecymjFO0BA"

    @Test("The published vector: signed text and signature")
    func vector() throws {
        let message = RequestSignature.message(relay: Self.relay, method: "post", pathAndQuery: "/v1/mailboxes/example/send-tokens",
                                               timestamp: 1_767_225_600, nonce: Self.nonce, body: Self.body)
        #expect(String(decoding: message, as: UTF8.self) == Self.text)
        let key = try Ed25519.SecretKey(seed: SecretBytes(copying: Array(0..<32)))
        #expect(ByteEncoding.base64URL(key.signature(for: message)) == Self.signature)
    }

    @Test("Verifies for the relay it names only, within the clock window")
    func verification() throws {
        let key = try Ed25519.SecretKey(seed: SecretBytes(copying: Array(0..<32)))
        let signed = try RequestSignature(key: ByteEncoding.base64URL(key.publicKey.bytes), timestamp: "1767225600",
                                          nonce: Self.nonce, signature: Self.signature)
        let then = Date(timeIntervalSince1970: 1_767_225_600)
        try signed.verify(method: "POST", pathAndQuery: "/v1/mailboxes/example/send-tokens", body: Self.body, relay: Self.relay, now: then)
        #expect(throws: RelayProtocolError.self) {
            try signed.verify(method: "POST", pathAndQuery: "/v1/mailboxes/example/send-tokens", body: Self.body,
                              relay: "relay.example.org+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", now: then)
        }
        #expect(throws: RelayProtocolError.self) {
            try signed.verify(method: "POST", pathAndQuery: "/v1/mailboxes/example/send-tokens", body: Self.body, relay: Self.relay,
                              now: then.addingTimeInterval(RequestSignature.maximumClockSkew + 1))
        }
    }
}
