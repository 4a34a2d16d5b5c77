public import ErrandCrypto

/// The in-band handshake that opens a mailbox's live connection.
///
/// After the WebSocket upgrade the relay sends a text frame `{"challenge": "<base64url 32 bytes>"}`.
/// The owner answers with a text frame `{"key": "<base64url Ed25519 public key>", "signature":
/// "<base64url>", "after": <sequence, optional>}` where the signature covers
///
/// ```
/// "errand-relay-live-v1" LF <mailbox id, base64url> LF <challenge, base64url>
/// ```
///
/// A fresh challenge per connection makes a captured answer useless. On failure the relay
/// sends `{"error": {...}}` and closes with code 1008.
public enum LiveAuthentication {
    public static let label = "errand-relay-live-v1"
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

    /// The bytes the owner signs.
    public static func message(mailbox: MailboxID, challenge: String) -> [UInt8] {
        Array("\(label)\n\(mailbox.description)\n\(challenge)".utf8)
    }

    /// The owner's answer to `challenge`.
    public static func answer(challenge: String, mailbox: MailboxID, key: Ed25519.SecretKey, after: Int64?) -> Answer {
        Answer(key: ByteEncoding.base64URL(key.publicKey.bytes),
               signature: ByteEncoding.base64URL(key.signature(for: message(mailbox: mailbox, challenge: challenge))),
               after: after)
    }
}
