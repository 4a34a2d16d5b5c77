internal import CSodium

/// Ed25519 signatures (RFC 8032) via libsodium's `crypto_sign_*` detached API.
public enum Ed25519 {
    /// Public key length: 32 bytes.
    public static let publicKeyLength = 32
    /// Seed length: 32 bytes (the RFC 8032 "secret key").
    public static let seedLength = 32
    /// Signature length: 64 bytes.
    public static let signatureLength = 64

    /// An Ed25519 public key.
    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        /// The 32 key bytes.
        public let bytes: [UInt8]

        /// - Throws: ``CryptoError/wrongLength`` unless `bytes` is 32 bytes long.
        public init(bytes: [UInt8]) throws(CryptoError) {
            guard bytes.count == Ed25519.publicKeyLength else {
                throw .wrongLength("Ed25519 public key", expected: "32", actual: bytes.count)
            }
            self.bytes = bytes
        }

        /// Checks a detached signature over `message`.
        /// - Throws: ``CryptoError/wrongLength`` for a signature that is not 64 bytes,
        ///   ``CryptoError/invalidSignature`` when it does not verify.
        public func verify(signature: [UInt8], for message: [UInt8]) throws(CryptoError) {
            guard signature.count == Ed25519.signatureLength else {
                throw .wrongLength("Ed25519 signature", expected: "64", actual: signature.count)
            }
            guard isValidSignature(signature, for: message) else { throw .invalidSignature }
        }

        /// Whether `signature` is a valid signature of `message` by this key.
        public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            guard signature.count == Ed25519.signatureLength else { return false }
            _ = Sodium.ready
            return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
        }

        public var description: String { "Ed25519.PublicKey(\(ByteEncoding.hex(bytes)))" }
    }

    /// An Ed25519 signing key. Zeroed when released; never printed.
    public struct SecretKey: Sendable, CustomStringConvertible {
        /// libsodium's 64-byte expanded form (seed ‖ public key).
        private let expanded: SecretBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A new random signing key.
        public init() {
            try! self.init(seed: SecretBytes.random(count: Ed25519.seedLength))
        }

        /// The signing key for a 32-byte seed (RFC 8032's "secret key").
        /// - Throws: ``CryptoError/wrongLength`` unless `seed` is 32 bytes.
        public init(seed: SecretBytes) throws(CryptoError) {
            guard seed.count == Ed25519.seedLength else {
                throw .wrongLength("Ed25519 seed", expected: "32", actual: seed.count)
            }
            _ = Sodium.ready
            var publicBytes = [UInt8](repeating: 0, count: Ed25519.publicKeyLength)
            var status: Int32 = 0
            let expanded = seed.withUnsafeBytes { seedBuffer in
                SecretBytes(count: Int(crypto_sign_secretkeybytes())) { out in
                    status = crypto_sign_seed_keypair(
                        &publicBytes,
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        seedBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            guard status == 0 else { throw CryptoError.operationFailed.detail("Ed25519 key derivation failed") }
            self.expanded = expanded
            self.publicKey = try PublicKey(bytes: publicBytes)
        }

        /// The 32-byte seed, for saving the key (see ``SecretKeyFile``).
        public var seed: SecretBytes {
            expanded.withUnsafeBytes { buffer in
                SecretBytes(count: Ed25519.seedLength) { out in
                    out.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[0..<Ed25519.seedLength]))
                }
            }
        }

        /// A 64-byte detached signature of `message` (deterministic, as RFC 8032 specifies).
        public func signature(for message: [UInt8]) -> [UInt8] {
            _ = Sodium.ready
            return [UInt8](unsafeUninitializedCapacity: Ed25519.signatureLength) { out, initialized in
                expanded.withUnsafeBytes { key in
                    _ = crypto_sign_detached(
                        out.baseAddress!, nil, message, UInt64(message.count),
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
                initialized = Ed25519.signatureLength
            }
        }

        public var description: String { "Ed25519.SecretKey(public: \(ByteEncoding.hex(publicKey.bytes)), secret redacted)" }
    }
}
