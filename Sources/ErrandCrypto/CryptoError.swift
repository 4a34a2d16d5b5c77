/// An error from an ``ErrandCrypto`` operation.
///
/// Compare with the static members (`error == .authenticationFailed`); the ``description``
/// carries the specifics (which input had which wrong size, which file could not be read).
/// Errors never contain key material.
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case wrongLength
        case authenticationFailed
        case invalidSignature
        case weakPublicKey
        case invalidPadding
        case invalidEncoding
        case keyFileUnreadable
        case keyFileInsecure
        case fileUnwritable
        case operationFailed
    }

    private let code: Code
    /// What happened, in words a person can act on.
    public let description: String

    private init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    public static func == (lhs: CryptoError, rhs: CryptoError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// An input (key, nonce, signature, output length, …) has a size the primitive does not accept.
    public static let wrongLength = CryptoError(.wrongLength, "input has the wrong length")
    /// AEAD or sealed-box decryption failed: wrong key, or the data was tampered with.
    public static let authenticationFailed = CryptoError(
        .authenticationFailed, "authentication failed: wrong key, or the data was altered")
    /// An Ed25519 signature (or HMAC tag) does not verify.
    public static let invalidSignature = CryptoError(.invalidSignature, "signature does not verify")
    /// An X25519 exchange produced the all-zero secret (a small-order public key).
    public static let weakPublicKey = CryptoError(
        .weakPublicKey, "the peer's X25519 public key is of small order (shared secret would be all zeros)")
    /// Padded data does not end in a valid padding block.
    public static let invalidPadding = CryptoError(.invalidPadding, "padding is invalid")
    /// Text is not valid hex or base64url.
    public static let invalidEncoding = CryptoError(.invalidEncoding, "text is not validly encoded")
    /// A key file is missing, truncated or of the wrong kind.
    public static let keyFileUnreadable = CryptoError(.keyFileUnreadable, "key file cannot be read")
    /// A key file can be read by other users, or belongs to someone else.
    public static let keyFileInsecure = CryptoError(.keyFileInsecure, "key file permissions are too open")
    /// A key file (or another owner-only file) could not be written.
    public static let fileUnwritable = CryptoError(.fileUnwritable, "file cannot be written")
    /// libsodium reported a failure it does not explain (should not happen).
    public static let operationFailed = CryptoError(.operationFailed, "libsodium operation failed")

    /// The same kind of error with a more specific description.
    func detail(_ description: String) -> CryptoError {
        CryptoError(code, description)
    }

    static func wrongLength(_ what: String, expected: String, actual: Int) -> CryptoError {
        wrongLength.detail("\(what) must be \(expected) bytes, got \(actual)")
    }
}
