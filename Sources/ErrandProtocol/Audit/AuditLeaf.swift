import ErrandCrypto

/// One entry of the relay's transparency log: an envelope event that reveals nothing a public
/// reader could link to a mailbox or a person, while the sender and the recipient (who know the
/// mailbox, the envelope id and its bytes) can recompute it and find it.
///
/// `leaf = 0x01 ‖ event (u8) ‖ hour (u32 BE, Unix time / 3600) ‖ commitment (32)`, 38 bytes, with
/// `commitment = SHA-256("errand audit leaf v1" ‖ event ‖ mailbox id (16) ‖ envelope id (16) ‖
/// SHA-256(envelope bytes))`. The event type is inside the commitment, so the stored, delivered
/// and expired leaves of one envelope cannot be linked either.
public struct AuditLeaf: Sendable, Equatable {
    /// What happened to the envelope.
    public enum Event: UInt8, Sendable, CaseIterable {
        case stored = 1
        case delivered = 2
        case expired = 3
    }

    public static let version: UInt8 = 1
    public static let length = 38
    static let label = Array("errand audit leaf v1".utf8)

    public let event: Event
    public let hour: UInt32
    public let commitment: [UInt8]

    public init(event: Event, mailbox: MailboxID, envelopeID: EnvelopeID, envelopeDigest: [UInt8], time: Int64) {
        self.event = event
        self.hour = UInt32(clamping: max(0, time) / 3600)
        self.commitment = SHA256.hash(parts: [Self.label, [event.rawValue], mailbox.bytes, envelopeID.bytes, envelopeDigest])
    }

    /// Parses the 38 leaf bytes.
    public init(bytes: [UInt8]) throws(EnvelopeError) {
        guard bytes.count == Self.length, bytes[0] == Self.version, let event = Event(rawValue: bytes[1]) else {
            throw EnvelopeError(.malformed, "not an audit leaf")
        }
        self.event = event
        self.hour = bytes[2..<6].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        self.commitment = Array(bytes[6...])
    }

    /// The leaf bytes.
    public var bytes: [UInt8] {
        [Self.version, event.rawValue, UInt8(hour >> 24), UInt8(hour >> 16 & 0xFF), UInt8(hour >> 8 & 0xFF), UInt8(hour & 0xFF)] + commitment
    }
}
