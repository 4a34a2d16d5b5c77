internal import CSodium

/// Hex and base64url (no padding) encodings, backed by libsodium's constant-time codecs.
public enum ByteEncoding {
    /// Lowercase hexadecimal.
    public static func hex(_ bytes: [UInt8]) -> String {
        _ = Sodium.ready
        let capacity = bytes.count * 2 + 1
        var out = [CChar](repeating: 0, count: capacity)
        bytes.withUnsafeBufferPointer { input in
            _ = sodium_bin2hex(&out, capacity, input.baseAddress, input.count)
        }
        return String(decoding: out.prefix(bytes.count * 2).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decodes hexadecimal (either case, no separators).
    /// - Throws: ``CryptoError/invalidEncoding`` for odd length or a non-hex character.
    public static func bytes(hex text: String) throws(CryptoError) -> [UInt8] {
        _ = Sodium.ready
        let input = Array(text.utf8)
        if input.isEmpty { return [] }
        guard input.count % 2 == 0 else {
            throw CryptoError.invalidEncoding.detail("hex text has an odd number of digits")
        }
        var out = [UInt8](repeating: 0, count: input.count / 2)
        var written = 0
        let status = input.withUnsafeBufferPointer { inp in
            inp.withMemoryRebound(to: CChar.self) { chars in
                sodium_hex2bin(&out, out.count, chars.baseAddress, chars.count, nil, &written, nil)
            }
        }
        guard status == 0, written == out.count else {
            throw CryptoError.invalidEncoding.detail("text is not valid hexadecimal")
        }
        return out
    }

    /// Base64 with the URL-safe alphabet (`-`, `_`) and no `=` padding (RFC 4648 §5).
    public static func base64URL(_ bytes: [UInt8]) -> String {
        base64(bytes, variant: sodium_base64_VARIANT_URLSAFE_NO_PADDING)
    }

    /// Standard base64 with padding (RFC 4648 §4).
    public static func base64(_ bytes: [UInt8]) -> String {
        base64(bytes, variant: sodium_base64_VARIANT_ORIGINAL)
    }

    /// Decodes base64url without padding, strictly (no padding, whitespace or other alphabet).
    /// - Throws: ``CryptoError/invalidEncoding``.
    public static func bytes(base64URL text: String) throws(CryptoError) -> [UInt8] {
        try decodeBase64(text, variant: sodium_base64_VARIANT_URLSAFE_NO_PADDING)
    }

    /// Decodes standard padded base64, strictly.
    /// - Throws: ``CryptoError/invalidEncoding``.
    public static func bytes(base64 text: String) throws(CryptoError) -> [UInt8] {
        try decodeBase64(text, variant: sodium_base64_VARIANT_ORIGINAL)
    }

    /// base64url of secret bytes. The scratch buffer is wiped; the returned string is not
    /// (keep it only as long as it must exist, e.g. a pairing URI).
    public static func base64URL(_ secret: SecretBytes) -> String {
        secret.withUnsafeBytes { input in
            base64(input, variant: sodium_base64_VARIANT_URLSAFE_NO_PADDING)
        }
    }

    /// Decodes base64url (no padding, strict) straight into secret storage; the scratch buffer is wiped.
    /// - Throws: ``CryptoError/invalidEncoding``.
    public static func secret(base64URL text: String) throws(CryptoError) -> SecretBytes {
        _ = Sodium.ready
        let input = Array(text.utf8)
        if input.isEmpty { return SecretBytes(count: 0) { _ in } }
        var written = 0
        var status: Int32 = -1
        let scratch = SecretBytes(count: input.count * 3 / 4 + 1) { out in
            status = input.withUnsafeBufferPointer { inp in
                inp.withMemoryRebound(to: CChar.self) { chars in
                    sodium_base642bin(out.baseAddress!.assumingMemoryBound(to: UInt8.self), out.count,
                                      chars.baseAddress, chars.count, nil, &written, nil,
                                      sodium_base64_VARIANT_URLSAFE_NO_PADDING)
                }
            }
        }
        guard status == 0 else {
            throw CryptoError.invalidEncoding.detail("text is not valid base64")
        }
        return scratch.withUnsafeBytes { SecretBytes(copying: $0.prefix(written)) }
    }

    private static func base64(_ bytes: [UInt8], variant: Int32) -> String {
        bytes.withUnsafeBytes { base64($0, variant: variant) }
    }

    private static func base64(_ bytes: UnsafeRawBufferPointer, variant: Int32) -> String {
        _ = Sodium.ready
        let capacity = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: capacity)
        defer { sodium_memzero(&out, out.count) }
        _ = sodium_bin2base64(&out, capacity, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, variant)
        return out.withUnsafeBytes { String(decoding: $0.prefix(capacity - 1), as: UTF8.self) }
    }

    private static func decodeBase64(_ text: String, variant: Int32) throws(CryptoError) -> [UInt8] {
        _ = Sodium.ready
        let input = Array(text.utf8)
        if input.isEmpty { return [] }
        var out = [UInt8](repeating: 0, count: input.count * 3 / 4 + 1)
        var written = 0
        // A nil end pointer makes libsodium reject anything after the last valid character.
        let status = input.withUnsafeBufferPointer { inp in
            inp.withMemoryRebound(to: CChar.self) { chars in
                sodium_base642bin(&out, out.count, chars.baseAddress, chars.count, nil, &written, nil, variant)
            }
        }
        guard status == 0 else {
            throw CryptoError.invalidEncoding.detail("text is not valid base64")
        }
        return Array(out.prefix(written))
    }
}
