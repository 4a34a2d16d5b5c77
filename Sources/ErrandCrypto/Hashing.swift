internal import CSodium

/// SHA-256 (FIPS 180-4) via libsodium's `crypto_hash_sha256`.
public enum SHA256 {
    /// Digest length: 32 bytes.
    public static let digestLength = 32

    /// The SHA-256 digest of `message`.
    public static func hash(_ message: [UInt8]) -> [UInt8] {
        _ = Sodium.ready
        return [UInt8](unsafeUninitializedCapacity: digestLength) { out, initialized in
            _ = crypto_hash_sha256(out.baseAddress!, message, UInt64(message.count))
            initialized = digestLength
        }
    }

    /// The SHA-256 digest of secret bytes, without copying them.
    public static func hash(_ secret: SecretBytes) -> [UInt8] {
        _ = Sodium.ready
        return secret.withUnsafeBytes { input in
            [UInt8](unsafeUninitializedCapacity: digestLength) { out, initialized in
                _ = crypto_hash_sha256(out.baseAddress!, input.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(input.count))
                initialized = digestLength
            }
        }
    }

    /// The SHA-256 digest of several parts hashed as one message (no copy into one buffer).
    public static func hash(parts: [[UInt8]]) -> [UInt8] {
        _ = Sodium.ready
        var state = crypto_hash_sha256_state()
        crypto_hash_sha256_init(&state)
        for part in parts { crypto_hash_sha256_update(&state, part, UInt64(part.count)) }
        return [UInt8](unsafeUninitializedCapacity: digestLength) { out, initialized in
            _ = crypto_hash_sha256_final(&state, out.baseAddress!)
            initialized = digestLength
        }
    }
}

/// BLAKE2b (RFC 7693) via libsodium's `crypto_generichash`, unkeyed or keyed.
public enum BLAKE2b {
    /// Allowed output lengths: 16…64 bytes.
    public static let outputLengths = 16...64
    /// Allowed key lengths: 16…64 bytes (or no key).
    public static let keyLengths = 16...64

    /// The BLAKE2b digest of `message`, `outputLength` bytes long (default 32).
    /// - Parameter key: optional secret key (16–64 bytes) for a keyed hash / MAC.
    /// - Throws: ``CryptoError/wrongLength`` for an output or key length out of range.
    public static func hash(_ message: [UInt8], outputLength: Int = 32, key: SecretBytes? = nil) throws(CryptoError) -> [UInt8] {
        guard outputLengths.contains(outputLength) else {
            throw .wrongLength("BLAKE2b output", expected: "16 to 64", actual: outputLength)
        }
        if let key, !keyLengths.contains(key.count) {
            throw .wrongLength("BLAKE2b key", expected: "16 to 64", actual: key.count)
        }
        _ = Sodium.ready
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, initialized in
            if let key {
                key.withUnsafeBytes { keyBuffer in
                    _ = crypto_generichash(
                        out.baseAddress!, outputLength, message, UInt64(message.count),
                        keyBuffer.baseAddress!.assumingMemoryBound(to: UInt8.self), keyBuffer.count)
                }
            } else {
                _ = crypto_generichash(out.baseAddress!, outputLength, message, UInt64(message.count), nil, 0)
            }
            initialized = outputLength
        }
    }
}
