internal import CSodium

/// Anonymous public-key encryption (libsodium `crypto_box_seal`): anyone can seal to an
/// X25519 public key; only the holder of the secret key can open, and learns nothing about
/// the sender. Uses an ephemeral X25519 key, XSalsa20-Poly1305, and a BLAKE2b nonce.
public enum SealedBox {
    /// Bytes a sealed box adds to its message: 48 (ephemeral public key 32 + tag 16).
    public static let overhead = 48

    /// Seals `message` to `recipient`.
    /// - Throws: ``CryptoError/weakPublicKey`` when `recipient` is a small-order point (the
    ///   exchange would give an all-zero key; libsodium refuses it).
    public static func seal(_ message: [UInt8], to recipient: X25519.PublicKey) throws(CryptoError) -> [UInt8] {
        _ = Sodium.ready
        var status: Int32 = -1
        let sealed = [UInt8](unsafeUninitializedCapacity: message.count + overhead) { out, initialized in
            status = crypto_box_seal(out.baseAddress!, message, UInt64(message.count), recipient.bytes)
            // Never hand out a partly written buffer.
            initialized = status == 0 ? message.count + overhead : 0
        }
        guard status == 0 else { throw .weakPublicKey }
        return sealed
    }

    /// Opens a sealed box addressed to `recipient`.
    /// - Throws: ``CryptoError/wrongLength`` when shorter than the overhead;
    ///   ``CryptoError/authenticationFailed`` when it was not sealed to this key or was altered.
    public static func open(_ sealed: [UInt8], recipient: X25519.SecretKey) throws(CryptoError) -> [UInt8] {
        guard sealed.count >= overhead else {
            throw .wrongLength("sealed box", expected: "at least 48", actual: sealed.count)
        }
        _ = Sodium.ready
        var status: Int32 = -1
        let message = [UInt8](unsafeUninitializedCapacity: sealed.count - overhead) { out, initialized in
            status = recipient.secret.withUnsafeBytes { secret in
                crypto_box_seal_open(
                    out.baseAddress, sealed, UInt64(sealed.count), recipient.publicKey.bytes,
                    secret.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            initialized = status == 0 ? sealed.count - overhead : 0
        }
        guard status == 0 else { throw .authenticationFailed }
        return message
    }
}
