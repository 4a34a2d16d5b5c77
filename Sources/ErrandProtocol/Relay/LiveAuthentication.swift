public import ErrandCrypto

/// The in-band handshake that opens a mailbox's live connection.
///
/// After the WebSocket upgrade the relay sends a text frame `{"challenge": "<base64url 32 bytes>"}`.
/// The owner answers with a text frame `{"key": "<base64url Ed25519 public key>", "signature":
/// "<base64url>", "after": <sequence, optional>}` where the signature covers
///
/// ```
/// "errand-relay-live-v2" LF RELAY LF <mailbox id, base64url> LF <challenge, base64url>
/// ```
///
/// where RELAY is the relay's verifier key as in ``RequestSignature`` (`GET /v1/log/key` without
/// the line end). A fresh challenge per connection makes a captured answer useless, and RELAY
/// keeps an answer from being relayed to another relay where the key owns a mailbox too (a relay
/// that forwards its own challenge to the other one gets an answer the other refuses). On failure the relay
/// sends `{"error": {...}}` and closes with code 1008.
public enum LiveAuthentication {
    public static let label = "errand-relay-live-v2"
    public static let challengeLength = 32

    /// The challenge frame the relay sends.
    public struct Challenge: Codable, Sendable {
        public let challenge: String
        public init(challenge: String) { self.challenge = challenge }
    }

    /// The owner's answer.
    public struct Answer: Codable, Sendable {
        public let key: String
        public let signature: String
        public let after: Int64?
        public init(key: String, signature: String, after: Int64?) {
            self.key = key
            self.signature = signature
            self.after = after
        }
    }

    /// The bytes the owner signs, for the relay whose verifier key is `relay`.
    public static func message(relay: String, mailbox: MailboxID, challenge: String) -> [UInt8] {
        Array("\(label)\n\(relay)\n\(mailbox.description)\n\(challenge)".utf8)
    }

    /// The owner's answer to `challenge` from the relay whose verifier key is `relay`.
    public static func answer(challenge: String, relay: String, mailbox: MailboxID, key: Ed25519.SecretKey,
                              after: Int64?) -> Answer {
        Answer(key: ByteEncoding.base64URL(key.publicKey.bytes),
               signature: ByteEncoding.base64URL(key.signature(for: message(relay: relay, mailbox: mailbox, challenge: challenge))),
               after: after)
    }
}
