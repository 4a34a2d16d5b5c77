public import ErrandCrypto
public import Foundation

/// Authenticates a request to the relay as the owner of an Ed25519 key, without a session:
/// every request carries its own signature, a timestamp and a fresh nonce, so a captured request
/// cannot be replayed (the relay remembers nonces for the whole validity window), and names the
/// relay it is for, so it cannot be replayed at another relay where the key owns a mailbox too.
///
/// Headers: `Errand-Key` (base64url public key), `Errand-Timestamp` (Unix seconds),
/// `Errand-Nonce` (base64url of 16 random bytes), `Errand-Signature` (base64url Ed25519 signature) over
///
/// ```
/// "errand-relay-request-v2" LF RELAY LF METHOD LF PATH-AND-QUERY LF TIMESTAMP LF NONCE LF hex(SHA-256(body))
/// ```
///
/// where RELAY is the relay's audit-log verifier key exactly as `GET /v1/log/key` serves it
/// (`name+hash+key`, without the line end).
public struct RequestSignature: Sendable, Equatable {
    /// Domain-separation label, the first line of the signed text.
    public static let label = "errand-relay-request-v2"
    /// How far a timestamp may be from the relay's clock, either way.
    public static let maximumClockSkew: TimeInterval = 120
    /// Nonce length: 16 bytes.
    public static let nonceLength = 16

    public static let keyHeader = "Errand-Key"
    public static let timestampHeader = "Errand-Timestamp"
    public static let nonceHeader = "Errand-Nonce"
    public static let signatureHeader = "Errand-Signature"

    /// The signer's public key.
    public let key: Ed25519.PublicKey
    /// Unix seconds when the request was signed.
    public let timestamp: Int64
    /// base64url of 16 random bytes.
    public let nonce: String
    /// The 64-byte signature.
    public let signature: [UInt8]

    /// Signs a request for the relay whose verifier key is `relay`.
    public init(signing method: String, pathAndQuery: String, body: [UInt8], for relay: String, with key: Ed25519.SecretKey, now: Date = Date()) {
        let timestamp = Int64(now.timeIntervalSince1970)
        let nonce = ByteEncoding.base64URL(SecureRandom.bytes(count: Self.nonceLength))
        self.key = key.publicKey
        self.timestamp = timestamp
        self.nonce = nonce
        self.signature = key.signature(for: Self.message(relay: relay, method: method, pathAndQuery: pathAndQuery, timestamp: timestamp, nonce: nonce, body: body))
    }

    /// Reads the four headers (values as received).
    /// - Throws: ``RelayProtocolError`` naming the missing or malformed header.
    public init(key: String?, timestamp: String?, nonce: String?, signature: String?) throws(RelayProtocolError) {
        guard let key, let timestamp, let nonce, let signature else {
            throw RelayProtocolError("the request is not signed (Errand-Key, Errand-Timestamp, Errand-Nonce and Errand-Signature are required)")
        }
        guard let keyBytes = try? ByteEncoding.bytes(base64URL: key), let publicKey = try? Ed25519.PublicKey(bytes: keyBytes) else {
            throw RelayProtocolError("Errand-Key is not a base64url Ed25519 public key")
        }
        guard let seconds = Int64(timestamp) else {
            throw RelayProtocolError("Errand-Timestamp is not Unix seconds")
        }
        guard let nonceBytes = try? ByteEncoding.bytes(base64URL: nonce), nonceBytes.count == Self.nonceLength else {
            throw RelayProtocolError("Errand-Nonce is not 16 bytes of base64url")
        }
        guard let signatureBytes = try? ByteEncoding.bytes(base64URL: signature), signatureBytes.count == Ed25519.signatureLength else {
            throw RelayProtocolError("Errand-Signature is not a 64-byte base64url signature")
        }
        self.key = publicKey
        self.timestamp = seconds
        self.nonce = nonce
        self.signature = signatureBytes
    }

    /// Header names and values to send.
    public var headers: [(name: String, value: String)] {
        [
            (Self.keyHeader, ByteEncoding.base64URL(key.bytes)),
            (Self.timestampHeader, String(timestamp)),
            (Self.nonceHeader, nonce),
            (Self.signatureHeader, ByteEncoding.base64URL(signature)),
        ]
    }

    /// Checks the signature over this request for the relay `relay` (its verifier key), and the
    /// timestamp against `now`. (Nonce freshness is the relay's job: it must remember nonces for
    /// ``maximumClockSkew`` × 2.)
    /// - Throws: ``RelayProtocolError`` for a stale timestamp or a bad signature.
    public func verify(method: String, pathAndQuery: String, body: [UInt8], relay: String, now: Date = Date()) throws(RelayProtocolError) {
        let skew = now.timeIntervalSince1970 - TimeInterval(timestamp)
        guard abs(skew) <= Self.maximumClockSkew else {
            throw RelayProtocolError("the request was signed \(Int(abs(skew))) seconds \(skew > 0 ? "ago" : "in the future"); check this device's clock")
        }
        let message = Self.message(relay: relay, method: method, pathAndQuery: pathAndQuery, timestamp: timestamp, nonce: nonce, body: body)
        guard key.isValidSignature(signature, for: message) else {
            throw RelayProtocolError("the request signature does not verify (it must cover this request and name this relay's key, \(relay.prefix(64)); clients of protocol v1 must be updated)")
        }
    }

    /// The exact bytes that are signed.
    public static func message(relay: String, method: String, pathAndQuery: String, timestamp: Int64, nonce: String, body: [UInt8]) -> [UInt8] {
        let text = [label, relay, method.uppercased(), pathAndQuery, String(timestamp), nonce, ByteEncoding.hex(SHA256.hash(body))]
            .joined(separator: "\n")
        return Array(text.utf8)
    }
}
