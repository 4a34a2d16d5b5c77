public import ErrandCrypto

/// The pairing transcript both sides hash: the exact offer URI and the companion's public keys.
///
/// Encoding: four frames, each `u32 big-endian length ‖ bytes`:
/// `"errand pairing transcript v1"`, the offer URI (UTF-8), the companion's Ed25519 public key,
/// the companion's X25519 public key.
public struct PairingTranscript: Sendable {
    /// Domain-separation label, the first frame.
    public static let label = "errand pairing transcript v1"

    /// The offer URI exactly as the host produced it and the companion read it.
    public let offerURI: String
    /// The companion's Ed25519 identity key.
    public let companionSigningKey: Ed25519.PublicKey
    /// The companion's X25519 key.
    public let companionAgreementKey: X25519.PublicKey

    public init(offerURI: String, companionSigningKey: Ed25519.PublicKey, companionAgreementKey: X25519.PublicKey) {
        self.offerURI = offerURI
        self.companionSigningKey = companionSigningKey
        self.companionAgreementKey = companionAgreementKey
    }

    /// The framed transcript bytes.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        for field in [Array(Self.label.utf8), Array(offerURI.utf8), companionSigningKey.bytes, companionAgreementKey.bytes] {
            let length = UInt32(field.count)
            out += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            out += field
        }
        return out
    }

    /// SHA-256 of ``encoded``.
    public var hash: [UInt8] { SHA256.hash(encoded) }
}

/// Six digits both the host and the companion show after pairing; the person checks they match.
///
/// Derivation: `HKDF-SHA256(IKM = offer secret, salt = SHA-256(transcript), info = "errand/v1/sas", L = 8)`,
/// read as a big-endian unsigned 64-bit integer, modulo 1,000,000, written with leading zeros.
/// Keying the SAS with the one-time secret (which never reaches the relay) means a relay that
/// swaps keys cannot search for keys that give a matching SAS.
public struct ShortAuthenticationString: Hashable, Sendable, CustomStringConvertible {
    /// HKDF info label.
    public static let info = "errand/v1/sas"

    /// Exactly six ASCII digits.
    public let digits: String

    /// Derives the SAS for a transcript and the offer's one-time secret.
    public init(transcript: PairingTranscript, secret: SecretBytes) {
        // 8 bytes is always a valid HKDF length.
        let output = try! HKDF.deriveKey(
            inputKeyMaterial: secret, salt: transcript.hash, info: Array(Self.info.utf8), length: 8)
        let value = output.withUnsafeBytes { bytes in
            bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        let number = String(value % 1_000_000)
        digits = String(repeating: "0", count: 6 - number.count) + number
    }

    /// Grouped for reading aloud: "048 213".
    public var description: String {
        "\(digits.prefix(3)) \(digits.suffix(3))"
    }
}
