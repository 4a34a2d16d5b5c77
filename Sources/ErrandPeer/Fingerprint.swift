public import ErrandCrypto

/// A short, readable fingerprint of a public key: the first 8 bytes of its SHA-256 in four
/// groups of four hex digits ("3f2a 9c01 77de 0b54").
public enum Fingerprint {
    public static func of(_ key: Ed25519.PublicKey) -> String {
        let hex = ByteEncoding.hex(Array(SHA256.hash(key.bytes).prefix(8)))
        return stride(from: 0, to: hex.count, by: 4).map { offset in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return String(hex[start..<hex.index(start, offsetBy: 4)])
        }.joined(separator: " ")
    }
}
