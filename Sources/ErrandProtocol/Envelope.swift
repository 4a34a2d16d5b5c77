import ErrandCrypto

/// The 16-byte random identifier of an envelope; receivers use it to drop duplicates and the
/// relay uses it to make posts idempotent.
public struct EnvelopeID: Hashable, Sendable, CustomStringConvertible {
    /// Identifier length: 16 bytes.
    public static let length = 16

    /// The identifier bytes.
    public let bytes: [UInt8]

    /// - Throws: ``EnvelopeError`` (`.malformed`) unless `bytes` is 16 bytes long.
    public init(bytes: [UInt8]) throws(EnvelopeError) {
        guard bytes.count == Self.length else {
            throw EnvelopeError(.malformed, "envelope id must be 16 bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// A fresh random identifier.
    public static func random() -> EnvelopeID {
        EnvelopeID(unchecked: SecureRandom.bytes(count: length))
    }

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Lowercase hex, 32 characters.
    public var description: String { ByteEncoding.hex(bytes) }
}

/// Envelope v1: what the relay stores and forwards. Everything after the id is opaque to the relay.
///
/// ```
/// offset  size      field
/// 0       1         version = 0x01
/// 1       16        envelope id (random)
/// 17      16…65519  ciphertext (sealed by the peers; at least one 16-byte AEAD tag)
/// ```
/// The whole encoding is at most 65,536 bytes (64 KiB); larger payloads are split by the peers.
public struct Envelope: Hashable, Sendable {
    /// The only version this code reads and writes.
    public static let version: UInt8 = 1
    /// Version byte plus id.
    public static let headerLength = 1 + EnvelopeID.length
    /// Hard cap on the encoded envelope: 64 KiB.
    public static let maximumLength = 64 * 1024
    /// Shortest ciphertext: one AEAD tag.
    public static let minimumCiphertextLength = 16
    /// Longest ciphertext that fits under the cap.
    public static let maximumCiphertextLength = maximumLength - headerLength

    /// The envelope's identifier.
    public let id: EnvelopeID
    /// The sealed payload.
    public let ciphertext: [UInt8]

    /// An envelope around `ciphertext`.
    /// - Throws: ``EnvelopeError`` when the ciphertext is shorter than 16 bytes or makes the
    ///   envelope exceed 64 KiB.
    public init(id: EnvelopeID = .random(), ciphertext: [UInt8]) throws(EnvelopeError) {
        guard ciphertext.count >= Self.minimumCiphertextLength else {
            throw EnvelopeError(.truncated, "envelope ciphertext is \(ciphertext.count) bytes; a sealed payload has at least 16")
        }
        guard ciphertext.count <= Self.maximumCiphertextLength else {
            throw EnvelopeError(.oversized, "envelope would be \(ciphertext.count + Self.headerLength) bytes; the limit is 65536 (split larger payloads)")
        }
        self.id = id
        self.ciphertext = ciphertext
    }

    /// Parses an encoded envelope, strictly.
    /// - Throws: ``EnvelopeError``: `.truncated` (shorter than header plus one tag),
    ///   `.oversized` (over 64 KiB), `.unsupportedVersion` (first byte not 0x01).
    public init(parsing bytes: some Collection<UInt8>) throws(EnvelopeError) {
        let count = bytes.count
        guard count > 0 else {
            throw EnvelopeError(.truncated, "envelope is empty")
        }
        // Check the cap before copying anything.
        guard count <= Self.maximumLength else {
            throw EnvelopeError(.oversized, "envelope is \(count) bytes; the limit is 65536")
        }
        let version = bytes[bytes.startIndex]
        guard version == Self.version else {
            throw EnvelopeError(.unsupportedVersion, "envelope version \(version) is not supported (this Errand reads version 1)")
        }
        guard count >= Self.headerLength + Self.minimumCiphertextLength else {
            throw EnvelopeError(.truncated, "envelope is \(count) bytes; at least \(Self.headerLength + Self.minimumCiphertextLength) are needed")
        }
        let array = Array(bytes)
        self.id = try EnvelopeID(bytes: Array(array[1..<Self.headerLength]))
        self.ciphertext = Array(array[Self.headerLength...])
    }

    /// The encoded envelope (version ‖ id ‖ ciphertext).
    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.headerLength + ciphertext.count)
        out.append(Self.version)
        out.append(contentsOf: id.bytes)
        out.append(contentsOf: ciphertext)
        return out
    }
}

/// Why bytes are not a valid envelope.
public struct EnvelopeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure; compare against these.
    public struct Code: Hashable, Sendable {
        private let raw: UInt8
        private init(_ raw: UInt8) { self.raw = raw }
        /// Too short to hold a header and a sealed payload.
        public static let truncated = Code(1)
        /// Over the 64 KiB cap.
        public static let oversized = Code(2)
        /// A version this code does not read.
        public static let unsupportedVersion = Code(3)
        /// A field with the wrong shape.
        public static let malformed = Code(4)
    }

    /// The kind of failure.
    public let code: Code
    /// What is wrong, for people.
    public let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    public static func == (lhs: EnvelopeError, rhs: EnvelopeError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
