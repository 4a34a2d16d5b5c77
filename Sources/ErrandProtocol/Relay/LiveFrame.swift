/// Binary WebSocket frames on a mailbox's live connection (`GET /v1/mailboxes/{id}/live`).
///
/// Relay → owner:
/// - `0x01 ‖ u64 seq ‖ envelope` — one stored envelope and its sequence number.
/// - `0x02 ‖ u64 seq` — everything stored up to `seq` has been sent; what follows is live.
///
/// Owner → relay:
/// - `0x03 ‖ id₁ ‖ id₂ ‖ …` — acknowledge (and delete) envelopes by their 16-byte ids.
public enum LiveFrame: Sendable, Equatable {
    case envelope(sequence: UInt64, envelope: [UInt8])
    case caughtUp(sequence: UInt64)
    case acknowledge([EnvelopeID])

    /// Most ids one acknowledgement frame may carry.
    public static let maximumAcknowledgements = 1024

    /// The frame's bytes.
    public var encoded: [UInt8] {
        switch self {
        case .envelope(let sequence, let envelope):
            return [0x01] + Self.bigEndian(sequence) + envelope
        case .caughtUp(let sequence):
            return [0x02] + Self.bigEndian(sequence)
        case .acknowledge(let ids):
            return [0x03] + ids.flatMap(\.bytes)
        }
    }

    /// Parses a frame.
    /// - Throws: ``RelayProtocolError`` for an unknown type or a wrong length.
    public init(parsing bytes: [UInt8]) throws(RelayProtocolError) {
        guard let type = bytes.first else { throw RelayProtocolError("empty live frame") }
        switch type {
        case 0x01:
            guard bytes.count > 9 else { throw RelayProtocolError("envelope frame too short") }
            self = .envelope(sequence: Self.readBigEndian(bytes[1..<9]), envelope: Array(bytes[9...]))
        case 0x02:
            guard bytes.count == 9 else { throw RelayProtocolError("caught-up frame must be 9 bytes") }
            self = .caughtUp(sequence: Self.readBigEndian(bytes[1..<9]))
        case 0x03:
            let body = bytes.count - 1
            guard body > 0, body % EnvelopeID.length == 0, body / EnvelopeID.length <= Self.maximumAcknowledgements else {
                throw RelayProtocolError("acknowledgement frame must carry 1 to 1024 envelope ids of 16 bytes")
            }
            var ids: [EnvelopeID] = []
            ids.reserveCapacity(body / EnvelopeID.length)
            var offset = 1
            while offset < bytes.count {
                ids.append(try! EnvelopeID(bytes: Array(bytes[offset..<(offset + EnvelopeID.length)])))
                offset += EnvelopeID.length
            }
            self = .acknowledge(ids)
        default:
            throw RelayProtocolError("unknown live frame type \(type)")
        }
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    static func readBigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
