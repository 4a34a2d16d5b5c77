internal import CSodium

/// HMAC-SHA256 (RFC 2104 / RFC 4231) via libsodium's `crypto_auth_hmacsha256_*` streaming API,
/// which accepts keys of any length.
public enum HMACSHA256 {
    /// Tag length: 32 bytes.
    public static let tagLength = 32

    /// The HMAC-SHA256 tag of `message` under `key`.
    public static func authenticationCode(for message: [UInt8], key: SecretBytes) -> [UInt8] {
        key.withUnsafeBytes { keyBuffer in
            message.withUnsafeBytes { messageBuffer in
                authenticationCode(for: [messageBuffer], key: keyBuffer)
            }
        }
    }

    /// HMAC over the concatenation of `parts`, streamed so that secret inputs are never copied
    /// into temporary arrays. The internal state is wiped afterwards.
    static func authenticationCode(for parts: [UnsafeRawBufferPointer], key: UnsafeRawBufferPointer) -> [UInt8] {
        _ = Sodium.ready
        var state = crypto_auth_hmacsha256_state()
        var empty: UInt8 = 0
        if let base = key.baseAddress, key.count > 0 {
            crypto_auth_hmacsha256_init(&state, base.assumingMemoryBound(to: UInt8.self), key.count)
        } else {
            crypto_auth_hmacsha256_init(&state, &empty, 0)
        }
        for part in parts {
            if let base = part.baseAddress, part.count > 0 {
                crypto_auth_hmacsha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(part.count))
            }
        }
        var tag = [UInt8](repeating: 0, count: tagLength)
        crypto_auth_hmacsha256_final(&state, &tag)
        sodium_memzero(&state, MemoryLayout<crypto_auth_hmacsha256_state>.size)
        return tag
    }

    /// Checks `tag` against the HMAC of `message` in constant time.
    /// - Throws: ``CryptoError/invalidSignature`` when it does not match.
    public static func verify(_ tag: [UInt8], for message: [UInt8], key: SecretBytes) throws(CryptoError) {
        guard ConstantTime.equals(tag, authenticationCode(for: message, key: key)) else {
            throw CryptoError.invalidSignature.detail("HMAC-SHA256 tag does not match")
        }
    }
}

/// HKDF with HMAC-SHA256 (RFC 5869), built on ``HMACSHA256`` because libsodium 1.0.18 has no HKDF.
public enum HKDF {
    /// Largest output: 255 × 32 = 8160 bytes.
    public static let maximumOutputLength = 255 * HMACSHA256.tagLength

    /// HKDF-Extract: a 32-byte pseudorandom key from input keying material and a salt
    /// (an empty salt means 32 zero bytes, as the RFC says).
    public static func extract(salt: [UInt8], inputKeyMaterial: SecretBytes) -> SecretBytes {
        let effectiveSalt = salt.isEmpty ? [UInt8](repeating: 0, count: HMACSHA256.tagLength) : salt
        // PRK = HMAC(key: salt, message: IKM)
        var prk = effectiveSalt.withUnsafeBytes { saltBuffer in
            inputKeyMaterial.withUnsafeBytes { ikm in
                HMACSHA256.authenticationCode(for: [ikm], key: saltBuffer)
            }
        }
        defer { sodium_memzero(&prk, prk.count) }
        return SecretBytes(copying: prk)
    }

    /// HKDF-Expand: `length` bytes of output keying material from a pseudorandom key.
    /// - Throws: ``CryptoError/wrongLength`` when `length` exceeds 8160 or `prk` is shorter than 32 bytes.
    public static func expand(pseudorandomKey prk: SecretBytes, info: [UInt8], length: Int) throws(CryptoError) -> SecretBytes {
        guard (0...maximumOutputLength).contains(length) else {
            throw .wrongLength("HKDF output", expected: "0 to 8160", actual: length)
        }
        guard prk.count >= HMACSHA256.tagLength else {
            throw .wrongLength("HKDF pseudorandom key", expected: "at least 32", actual: prk.count)
        }
        return SecretBytes(count: length) { out in
            var previous: [UInt8] = []
            var offset = 0
            var counter: UInt8 = 1
            while offset < length {
                // T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i)
                var block = prk.withUnsafeBytes { key in
                    previous.withUnsafeBytes { previousBuffer in
                        info.withUnsafeBytes { infoBuffer in
                            withUnsafeBytes(of: counter) { counterBuffer in
                                HMACSHA256.authenticationCode(for: [previousBuffer, infoBuffer, counterBuffer], key: key)
                            }
                        }
                    }
                }
                let take = Swift.min(block.count, length - offset)
                out.baseAddress!.advanced(by: offset).copyMemory(from: block, byteCount: take)
                offset += take
                counter &+= 1
                sodium_memzero(&previous, previous.count)
                previous = block
                sodium_memzero(&block, block.count)
            }
            sodium_memzero(&previous, previous.count)
        }
    }

    /// Extract-then-expand in one call.
    public static func deriveKey(
        inputKeyMaterial: SecretBytes, salt: [UInt8], info: [UInt8], length: Int
    ) throws(CryptoError) -> SecretBytes {
        try expand(pseudorandomKey: extract(salt: salt, inputKeyMaterial: inputKeyMaterial), info: info, length: length)
    }
}
