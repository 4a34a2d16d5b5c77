import ErrandCrypto

/// One end of a paired session: a ``DoubleRatchet`` plus the associated data every message is
/// bound to. Payloads are padded (``LengthPadding``) before encryption and travel as the
/// ciphertext of an ``Envelope`` with a fresh random id. The envelope id is part of the associated
/// data, so a ciphertext cannot be re-sent under another id (receivers deduplicate by id).
public struct SecureSession: Sendable {
    /// Ratchet plus padding overhead: the largest payload one envelope can carry.
    public static let maximumPayloadLength: Int = {
        // Padding never grows a message by more than 1/2^k of its length plus the 0x80 marker;
        // find the largest payload whose padded, encrypted form fits.
        let budget = Envelope.maximumCiphertextLength - DoubleRatchet.encryptedHeaderLength - XChaCha20Poly1305.tagLength
        var length = budget
        while LengthPadding.paddedLength(forContentLength: length) > budget { length -= 1 }
        return length
    }()

    /// The ratchet state; persist ``DoubleRatchet/serialized`` after every call that changes it.
    public private(set) var ratchet: DoubleRatchet
    /// `"errand/v1/session" ‖ pairing transcript hash`; each message adds its envelope id.
    public let associatedData: [UInt8]

    public init(ratchet: DoubleRatchet, associatedData: [UInt8]) {
        self.ratchet = ratchet
        self.associatedData = associatedData
    }

    /// Pads, encrypts and wraps `payload`.
    /// - Throws: ``SessionError`` `.tooLarge` above ``maximumPayloadLength`` (split it first);
    ///   `.cannotSendYet` on a responder before its first message.
    public mutating func seal(_ payload: [UInt8], randomness: some RatchetRandomness = SystemRatchetRandomness(),
                              envelopeID: EnvelopeID = .random()) throws(SessionError) -> Envelope {
        guard payload.count <= Self.maximumPayloadLength else {
            throw SessionError(.tooLarge, "a message of \(payload.count) bytes does not fit in one envelope (at most \(Self.maximumPayloadLength)); split it into parts")
        }
        let message = try ratchet.encrypt(LengthPadding.pad(payload), associatedData: associatedData + envelopeID.bytes, randomness: randomness)
        return try! Envelope(id: envelopeID, ciphertext: message)
    }

    /// Decrypts and unpads an envelope. The session changes only if this succeeds.
    /// - Throws: ``SessionError`` as ``DoubleRatchet/decrypt(_:associatedData:randomness:)``,
    ///   or `.malformed` when the padding is wrong.
    public mutating func open(_ envelope: Envelope, randomness: some RatchetRandomness = SystemRatchetRandomness()) throws(SessionError) -> [UInt8] {
        var next = ratchet
        let padded = try next.decrypt(envelope.ciphertext, associatedData: associatedData + envelope.id.bytes, randomness: randomness)
        guard let payload = try? LengthPadding.unpad(padded) else {
            throw SessionError(.malformed, "the message's padding is invalid")
        }
        ratchet = next
        return payload
    }
}
