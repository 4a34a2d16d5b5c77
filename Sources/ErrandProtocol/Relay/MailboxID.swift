public import ErrandCrypto

/// A relay mailbox's address: derived from the Ed25519 key that owns it, so nobody can claim
/// someone else's mailbox id, and short enough for URLs.
///
/// `id = SHA-256("errand mailbox v1\n" ‖ owner public key)[0..<16]`, written as base64url (22 characters).
public struct MailboxID: Hashable, Sendable, CustomStringConvertible {
    /// Identifier length: 16 bytes.
    public static let length = 16
    static let label = Array("errand mailbox v1\n".utf8)

    /// The identifier bytes.
    public let bytes: [UInt8]

    /// The mailbox owned by `owner`.
    public init(owner: Ed25519.PublicKey) {
        bytes = Array(SHA256.hash(parts: [Self.label, owner.bytes]).prefix(Self.length))
    }

    /// Wraps identifier bytes (e.g. read back from storage).
    public init(bytes: [UInt8]) throws(RelayProtocolError) {
        guard bytes.count == Self.length else { throw RelayProtocolError("a mailbox id must be 16 bytes") }
        self.bytes = bytes
    }

    /// Parses the base64url form used in URLs.
    /// - Throws: ``RelayProtocolError`` when the text is not base64url of 16 bytes.
    public init(_ text: some StringProtocol) throws(RelayProtocolError) {
        guard let bytes = try? ByteEncoding.bytes(base64URL: String(text)), bytes.count == Self.length else {
            throw RelayProtocolError("'\(text.prefix(40))' is not a mailbox id (22 base64url characters)")
        }
        self.bytes = bytes
    }

    /// base64url, 22 characters.
    public var description: String { ByteEncoding.base64URL(bytes) }

    /// The first 6 characters, for logs: enough to tell mailboxes apart, not to address one.
    public var logPrefix: String { String(description.prefix(6)) }
}

/// A capability to post into one mailbox. The owner registers only its SHA-256 hash at the relay,
/// hands the token to one device, and revokes the device by removing the hash.
public struct SendToken: Sendable, CustomStringConvertible {
    /// Token length: 32 random bytes.
    public static let length = 32

    /// The token itself (a secret).
    public let secret: SecretBytes

    /// A fresh random token.
    public init() { secret = .random(count: Self.length) }

    /// Wraps token bytes, e.g. read from a device's state.
    /// - Throws: ``RelayProtocolError`` unless 32 bytes.
    public init(secret: SecretBytes) throws(RelayProtocolError) {
        guard secret.count == Self.length else { throw RelayProtocolError("a send token must be 32 bytes") }
        self.secret = secret
    }

    /// Parses the base64url form carried in `Authorization: Bearer …`.
    public init(bearer text: some StringProtocol) throws(RelayProtocolError) {
        guard let bytes = try? ByteEncoding.bytes(base64URL: String(text)), bytes.count == Self.length else {
            throw RelayProtocolError("the send token is not 32 bytes of base64url")
        }
        secret = SecretBytes(copying: bytes)
    }

    /// The value for `Authorization: Bearer …`.
    public var bearer: String { secret.withUnsafeBytes { ByteEncoding.base64URL(Array($0)) } }

    /// What the relay stores: `SHA-256(token)`, base64url.
    public var hash: TokenHash { TokenHash(of: secret) }

    public var description: String { "SendToken(redacted)" }
}

/// SHA-256 of a bearer secret (send token or registration token): what the relay stores instead of the secret.
public struct TokenHash: Hashable, Sendable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    /// Hashes a secret.
    public init(of secret: SecretBytes) {
        bytes = SHA256.hash(secret)
    }

    /// Wraps digest bytes (e.g. read back from storage).
    public init(bytes: [UInt8]) throws(RelayProtocolError) {
        guard bytes.count == SHA256.digestLength else { throw RelayProtocolError("a token hash must be 32 bytes") }
        self.bytes = bytes
    }

    /// Parses the base64url form used in URLs.
    public init(_ text: some StringProtocol) throws(RelayProtocolError) {
        guard let bytes = try? ByteEncoding.bytes(base64URL: String(text)), bytes.count == SHA256.digestLength else {
            throw RelayProtocolError("'\(text.prefix(50))' is not a token hash (43 base64url characters)")
        }
        self.bytes = bytes
    }

    /// base64url, 43 characters.
    public var description: String { ByteEncoding.base64URL(bytes) }
}

/// A value received from or meant for the relay does not have the required form.
public struct RelayProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    public init(_ description: String) { self.description = description }
}
