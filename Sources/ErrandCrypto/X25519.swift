internal import CSodium

/// X25519 Diffie–Hellman (RFC 7748) via libsodium's `crypto_scalarmult`.
public enum X25519 {
    /// Length of public keys, secret keys and shared secrets: 32 bytes.
    public static let keyLength = 32

    /// An X25519 public key (a Montgomery u-coordinate).
    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        /// The 32 key bytes.
        public let bytes: [UInt8]

        /// - Throws: ``CryptoError/wrongLength`` unless `bytes` is 32 bytes long.
        public init(bytes: [UInt8]) throws(CryptoError) {
            guard bytes.count == X25519.keyLength else {
                throw .wrongLength("X25519 public key", expected: "32", actual: bytes.count)
            }
            self.bytes = bytes
        }

        public var description: String { "X25519.PublicKey(\(ByteEncoding.hex(bytes)))" }
    }

    /// An X25519 secret key. Zeroed when released; never printed.
    public struct SecretKey: Sendable, CustomStringConvertible {
        /// The secret scalar (32 bytes; clamped by libsodium when used).
        public let secret: SecretBytes
        /// The matching public key.
        public let publicKey: PublicKey

        /// A new random key pair.
        public init() {
            _ = Sodium.ready
            var publicBytes = [UInt8](repeating: 0, count: X25519.keyLength)
            let secret = SecretBytes(count: X25519.keyLength) { buffer in
                _ = crypto_box_keypair(&publicBytes, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            self.secret = secret
            self.publicKey = try! PublicKey(bytes: publicBytes)
        }

        /// The key pair for a given 32-byte secret scalar.
        /// - Throws: ``CryptoError/wrongLength`` unless `secret` is 32 bytes.
        public init(secret: SecretBytes) throws(CryptoError) {
            guard secret.count == X25519.keyLength else {
                throw .wrongLength("X25519 secret key", expected: "32", actual: secret.count)
            }
            _ = Sodium.ready
            var publicBytes = [UInt8](repeating: 0, count: X25519.keyLength)
            let status = secret.withUnsafeBytes { buffer in
                crypto_scalarmult_base(&publicBytes, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            guard status == 0 else { throw CryptoError.operationFailed.detail("X25519 base-point multiplication failed") }
            self.secret = secret
            self.publicKey = try PublicKey(bytes: publicBytes)
        }

        /// The shared secret with `peer` (raw X25519 output: hash it through a KDF before use).
        /// - Throws: ``CryptoError/weakPublicKey`` when the result would be all zeros (a
        ///   small-order peer key), so a malicious peer cannot force a known secret.
        public func sharedSecret(with peer: PublicKey) throws(CryptoError) -> SecretBytes {
            _ = Sodium.ready
            var status: Int32 = 0
            let shared = secret.withUnsafeBytes { mine in
                SecretBytes(count: X25519.keyLength) { out in
                    status = crypto_scalarmult(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        mine.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        peer.bytes)
                }
            }
            // libsodium already returns -1 for an all-zero result; check again to be explicit.
            guard status == 0, !shared.isAllZero else { throw .weakPublicKey }
            return shared
        }

        public var description: String { "X25519.SecretKey(public: \(ByteEncoding.hex(publicKey.bytes)), secret redacted)" }
    }
}
