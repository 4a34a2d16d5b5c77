internal import CSodium

/// XChaCha20-Poly1305-IETF authenticated encryption with associated data
/// (draft-irtf-cfrg-xchacha), via libsodium's `crypto_aead_xchacha20poly1305_ietf_*`.
///
/// The 24-byte nonce is large enough to pick at random for every message.
public enum XChaCha20Poly1305 {
    /// Key length: 32 bytes.
    public static let keyLength = 32
    /// Nonce length: 24 bytes.
    public static let nonceLength = 24
    /// Authentication tag length: 16 bytes (appended to the ciphertext).
    public static let tagLength = 16

    /// A 32-byte AEAD key. Zeroed when released; never printed.
    public struct Key: Sendable, CustomStringConvertible {
        /// The key bytes.
        public let secret: SecretBytes

        /// A new random key.
        public init() { secret = .random(count: XChaCha20Poly1305.keyLength) }

        /// Wraps existing key material.
        /// - Throws: ``CryptoError/wrongLength`` unless `secret` is 32 bytes.
        public init(_ secret: SecretBytes) throws(CryptoError) {
            guard secret.count == XChaCha20Poly1305.keyLength else {
                throw .wrongLength("XChaCha20-Poly1305 key", expected: "32", actual: secret.count)
            }
            self.secret = secret
        }

        public var description: String { "XChaCha20Poly1305.Key(redacted)" }
    }

    /// Encrypts `plaintext` and authenticates it together with `associatedData`.
    /// - Returns: ciphertext followed by the 16-byte tag (`plaintext.count + 16` bytes).
    /// - Throws: ``CryptoError/wrongLength`` unless `nonce` is 24 bytes.
    public static func seal(
        _ plaintext: [UInt8], key: Key, nonce: [UInt8], associatedData: [UInt8] = []
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == nonceLength else {
            throw .wrongLength("XChaCha20-Poly1305 nonce", expected: "24", actual: nonce.count)
        }
        _ = Sodium.ready
        let outputLength = plaintext.count + tagLength
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, initialized in
            var written: UInt64 = 0
            key.secret.withUnsafeBytes { keyBuffer in
                _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                    out.baseAddress!, &written,
                    plaintext, UInt64(plaintext.count),
                    associatedData, UInt64(associatedData.count),
                    nil, nonce,
                    keyBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            initialized = Int(written)
        }
    }

    /// Encrypts with a fresh random nonce.
    /// - Returns: nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes).
    public static func seal(_ plaintext: [UInt8], key: Key, associatedData: [UInt8] = []) -> [UInt8] {
        let nonce = SecureRandom.bytes(count: nonceLength)
        // The nonce length is right by construction, so this cannot throw.
        return nonce + (try! seal(plaintext, key: key, nonce: nonce, associatedData: associatedData))
    }

    /// Decrypts and verifies ciphertext ‖ tag.
    /// - Throws: ``CryptoError/wrongLength`` for a bad nonce or input shorter than a tag;
    ///   ``CryptoError/authenticationFailed`` when the key, nonce, associated data or any
    ///   ciphertext bit is wrong.
    public static func open(
        _ ciphertext: [UInt8], key: Key, nonce: [UInt8], associatedData: [UInt8] = []
    ) throws(CryptoError) -> [UInt8] {
        guard nonce.count == nonceLength else {
            throw .wrongLength("XChaCha20-Poly1305 nonce", expected: "24", actual: nonce.count)
        }
        guard ciphertext.count >= tagLength else {
            throw .wrongLength("XChaCha20-Poly1305 ciphertext", expected: "at least 16", actual: ciphertext.count)
        }
        _ = Sodium.ready
        var status: Int32 = -1
        let plaintext = [UInt8](unsafeUninitializedCapacity: ciphertext.count - tagLength) { out, initialized in
            var written: UInt64 = 0
            status = key.secret.withUnsafeBytes { keyBuffer in
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    out.baseAddress, &written, nil,
                    ciphertext, UInt64(ciphertext.count),
                    associatedData, UInt64(associatedData.count),
                    nonce,
                    keyBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            initialized = status == 0 ? Int(written) : 0
        }
        guard status == 0 else { throw .authenticationFailed }
        return plaintext
    }

    /// Decrypts the output of ``seal(_:key:associatedData:)`` (nonce ‖ ciphertext ‖ tag).
    /// - Throws: as ``open(_:key:nonce:associatedData:)``.
    public static func open(combined: [UInt8], key: Key, associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard combined.count >= nonceLength + tagLength else {
            throw .wrongLength("XChaCha20-Poly1305 message", expected: "at least 40", actual: combined.count)
        }
        return try open(
            Array(combined[nonceLength...]), key: key,
            nonce: Array(combined[..<nonceLength]), associatedData: associatedData)
    }
}
