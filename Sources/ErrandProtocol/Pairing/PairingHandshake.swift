public import ErrandCrypto

/// The companion's answer to a pairing offer: its keys, a proof that it read the offer's
/// one-time secret, and a signature by its new identity key.
///
/// Body: `0x01 ‖ companion Ed25519 (32) ‖ companion X25519 (32) ‖ companion ephemeral X25519 (32)
/// ‖ host send token (32) ‖ u16 name length ‖ name (UTF-8)`.
/// Then `proof = HMAC-SHA256(proof key, "errand pairing proof v1" ‖ transcript hash ‖ body)` with
/// `proof key = HKDF-SHA256(IKM = secret, salt = transcript hash, info = "errand/v1/pair-proof", 32)`,
/// and `signature = Ed25519(companion key, "errand pairing request v1" ‖ transcript hash ‖ body ‖ proof)`.
/// Encoded: `body ‖ proof ‖ signature`, padded (``LengthPadding``) and sealed (``SealedBox``) to the
/// host's X25519 key from the offer.
public struct PairingRequest: Sendable {
    public static let version: UInt8 = 1
    static let proofInfo = Array("errand/v1/pair-proof".utf8)
    static let proofLabel = Array("errand pairing proof v1".utf8)
    static let signatureLabel = Array("errand pairing request v1".utf8)

    /// The companion's Ed25519 identity for this host (it owns the companion's mailbox).
    public let companionSigningKey: Ed25519.PublicKey
    /// The companion's X25519 identity for this host.
    public let companionAgreementKey: X25519.PublicKey
    /// A one-use X25519 key; the host's reply is sealed to it and it feeds the session key.
    public let companionEphemeralKey: X25519.PublicKey
    /// The token the host will use to post to the companion's mailbox.
    public let hostSendToken: SendToken
    /// The name the person gave this device ("phone").
    public let deviceName: String

    public init(companionSigningKey: Ed25519.PublicKey, companionAgreementKey: X25519.PublicKey,
                companionEphemeralKey: X25519.PublicKey, hostSendToken: SendToken, deviceName: String) {
        self.companionSigningKey = companionSigningKey
        self.companionAgreementKey = companionAgreementKey
        self.companionEphemeralKey = companionEphemeralKey
        self.hostSendToken = hostSendToken
        self.deviceName = deviceName
    }

    /// The transcript the SAS, the proof and the session keys are bound to.
    public func transcript(offerURI: String) -> PairingTranscript {
        PairingTranscript(offerURI: offerURI, companionSigningKey: companionSigningKey, companionAgreementKey: companionAgreementKey)
    }

    var body: [UInt8] {
        var writer = ByteWriter()
        writer.append(Self.version)
        writer.append(companionSigningKey.bytes)
        writer.append(companionAgreementKey.bytes)
        writer.append(companionEphemeralKey.bytes)
        writer.append(hostSendToken.secret)
        writer.appendShortField(Array(deviceName.utf8))
        return writer.bytes
    }

    static func proof(body: [UInt8], transcriptHash: [UInt8], secret: SecretBytes) -> [UInt8] {
        let key = try! HKDF.deriveKey(inputKeyMaterial: secret, salt: transcriptHash, info: proofInfo, length: 32)
        return HMACSHA256.authenticationCode(for: proofLabel + transcriptHash + body, key: key)
    }

    /// Signs, proves and seals the request to the host named in `offer`.
    /// - Throws: ``PairingError`` when the offer's host key is unusable.
    public func sealed(for offer: PairingOffer, signer: Ed25519.SecretKey) throws(PairingError) -> Envelope {
        precondition(signer.publicKey == companionSigningKey, "the signer must be the companion's identity key")
        let transcriptHash = transcript(offerURI: offer.uri).hash
        let body = self.body
        let proof = Self.proof(body: body, transcriptHash: transcriptHash, secret: offer.secret)
        let signature = signer.signature(for: Self.signatureLabel + transcriptHash + body + proof)
        do {
            let sealed = try SealedBox.seal(LengthPadding.pad(body + proof + signature), to: offer.hostAgreementKey)
            return try Envelope(ciphertext: sealed)
        } catch {
            throw PairingError(.tampered, "the host key in the pairing code is not usable",
                               hint: "the code was altered or damaged; ask for a new code on the computer")
        }
    }

    /// Opens a request found in the host's pairing slot. Nothing in it is trusted until
    /// ``UnverifiedPairingRequest/verify(offer:)`` succeeds; a host may still send a signed
    /// rejection to its ephemeral key.
    /// - Throws: ``PairingError`` `.unreadable` (not sealed to this host: an altered code or a
    ///   third party), `.malformed`.
    public static func unseal(_ envelope: Envelope, hostAgreementKey: X25519.SecretKey) throws(PairingError) -> UnverifiedPairingRequest {
        let unreadable = PairingError(.unreadable, "a pairing request arrived that was not sealed to this computer's key",
                                      hint: "the pairing code was altered, or someone other than your device answered it; start pairing again")
        guard let padded = try? SealedBox.open(envelope.ciphertext, recipient: hostAgreementKey),
              let plain = try? LengthPadding.unpad(padded) else { throw unreadable }
        var reader = ByteReader(plain)
        let malformed = PairingError(.malformed, "the pairing request is malformed",
                                     hint: "the device runs an incompatible version of Errand; update it and pair again")
        guard reader.readUInt8() == version,
              let signing = reader.read(32).flatMap({ try? Ed25519.PublicKey(bytes: $0) }),
              let agreement = reader.read(32).flatMap({ try? X25519.PublicKey(bytes: $0) }),
              let ephemeral = reader.read(32).flatMap({ try? X25519.PublicKey(bytes: $0) }),
              let tokenSecret = reader.readSecret(SendToken.length), let token = try? SendToken(secret: tokenSecret),
              let nameBytes = reader.readShortField(), let name = String(validating: nameBytes, as: UTF8.self) else { throw malformed }
        let bodyLength = reader.offset
        guard let proof = reader.read(HMACSHA256.tagLength), let signature = reader.read(Ed25519.signatureLength), reader.isAtEnd else {
            throw malformed
        }
        try DeviceName.validate(name)
        let claimed = PairingRequest(companionSigningKey: signing, companionAgreementKey: agreement,
                                     companionEphemeralKey: ephemeral, hostSendToken: token, deviceName: name)
        return UnverifiedPairingRequest(claimed: claimed, body: Array(plain[..<bodyLength]), proof: proof, signature: signature)
    }

    /// ``unseal(_:hostAgreementKey:)`` then ``UnverifiedPairingRequest/verify(offer:)``.
    public static func open(_ envelope: Envelope, offer: PairingOffer, hostAgreementKey: X25519.SecretKey) throws(PairingError) -> PairingRequest {
        try unseal(envelope, hostAgreementKey: hostAgreementKey).verify(offer: offer)
    }
}

/// A pairing request that was sealed to this host but whose proof and signature are not yet checked.
public struct UnverifiedPairingRequest: Sendable {
    /// What the request claims. Use it only to send a rejection before ``verify(offer:)`` succeeds.
    public let claimed: PairingRequest
    let body: [UInt8]
    let proof: [UInt8]
    let signature: [UInt8]

    /// Checks the proof of the offer's one-time secret, then the companion's signature.
    /// - Throws: ``PairingError`` `.wrongSecret` (no proof of this offer's secret: a wrong or
    ///   altered code, or a third party) or `.malformed` (bad signature).
    public func verify(offer: PairingOffer) throws(PairingError) -> PairingRequest {
        let transcriptHash = claimed.transcript(offerURI: offer.uri).hash
        let expected = PairingRequest.proof(body: body, transcriptHash: transcriptHash, secret: offer.secret)
        guard ConstantTime.equals(expected, proof) else {
            throw PairingError(.wrongSecret, "the device did not prove it read this pairing code (wrong one-time secret or an altered code)",
                               hint: "nothing was registered; start pairing again and scan the new code")
        }
        guard claimed.companionSigningKey.isValidSignature(signature, for: PairingRequest.signatureLabel + transcriptHash + body + proof) else {
            throw PairingError(.malformed, "the pairing request's signature does not verify",
                               hint: "the request was altered in transit; start pairing again")
        }
        return claimed
    }
}

/// The host's answer in the pairing slot, sealed to the companion's ephemeral key and signed by
/// the host's identity key (pinned from the QR code).
///
/// Body: `0x01 ‖ status (u8: 1 accepted, 2 declined, 3 rejected)`, and when accepted
/// `‖ host ratchet X25519 (32) ‖ companion send token (32) ‖ u16 name length ‖ host name ‖
/// confirmation (32)` with `confirmation = HMAC-SHA256(confirmation key, "errand pairing confirm v1" ‖
/// transcript hash ‖ body-before-confirmation)`. Then `signature = Ed25519(host key,
/// "errand pairing reply v1" ‖ request binding ‖ everything before it)`, where `request binding =
/// SHA-256(companion Ed25519 ‖ companion X25519 ‖ companion ephemeral)`. The signature does not
/// cover the offer URI, so a refusal still verifies when the companion's copy of the code was
/// altered; an accepted reply is bound to the exact URI by its confirmation.
public struct PairingReply: Sendable {
    /// What the host decided.
    public enum Outcome: Sendable {
        /// Paired: the host's first ratchet key and the token for posting to the host.
        case accepted(hostRatchetKey: X25519.PublicKey, companionSendToken: SendToken, hostName: String)
        /// The person at the computer said no.
        case declined
        /// The request failed the host's checks (no proof of the one-time secret).
        case rejected
    }

    static let confirmationLabel = Array("errand pairing confirm v1".utf8)
    static let signatureLabel = Array("errand pairing reply v1".utf8)

    public let outcome: Outcome

    public init(_ outcome: Outcome) { self.outcome = outcome }

    /// Signs and seals the reply to the companion's ephemeral key.
    public func sealed(
        request: PairingRequest, offerURI: String, hostSigningKey: Ed25519.SecretKey, sessionKeys: PairingSessionKeys?
    ) throws(PairingError) -> Envelope {
        let transcriptHash = request.transcript(offerURI: offerURI).hash
        var writer = ByteWriter()
        writer.append(PairingRequest.version)
        switch outcome {
        case .accepted(let ratchetKey, let token, let name):
            guard let sessionKeys else { preconditionFailure("an accepted reply needs session keys") }
            writer.append(UInt8(1))
            writer.append(ratchetKey.bytes)
            writer.append(token.secret)
            writer.appendShortField(Array(name.utf8))
            writer.append(HMACSHA256.authenticationCode(
                for: Self.confirmationLabel + transcriptHash + writer.bytes, key: sessionKeys.confirmationKey))
        case .declined: writer.append(UInt8(2))
        case .rejected: writer.append(UInt8(3))
        }
        writer.append(hostSigningKey.signature(for: Self.signatureLabel + Self.binding(request) + writer.bytes))
        do {
            return try Envelope(ciphertext: SealedBox.seal(LengthPadding.pad(writer.bytes), to: request.companionEphemeralKey))
        } catch {
            throw PairingError(.malformed, "the device's pairing key is not usable",
                               hint: "the device sent an invalid key; pair again")
        }
    }

    /// Opens the host's reply and checks the host's signature against the key from the QR code.
    /// The key confirmation of an accepted reply is checked by ``PairingSessionKeys`` — call
    /// ``verifyConfirmation(_:keys:)`` after deriving them.
    public static func open(
        _ envelope: Envelope, offer: PairingOffer, request: PairingRequest, ephemeralKey: X25519.SecretKey
    ) throws(PairingError) -> (reply: PairingReply, confirmation: [UInt8]?, confirmedBody: [UInt8]) {
        let forged = PairingError(.forged, "the pairing reply was not signed by the computer in the pairing code",
                                  hint: "someone interfered with pairing (possibly the relay); nothing was saved — pair again")
        guard let padded = try? SealedBox.open(envelope.ciphertext, recipient: ephemeralKey),
              let plain = try? LengthPadding.unpad(padded), plain.count > Ed25519.signatureLength else { throw forged }
        let signed = Array(plain[..<(plain.count - Ed25519.signatureLength)])
        let signature = Array(plain[(plain.count - Ed25519.signatureLength)...])
        guard offer.hostSigningKey.isValidSignature(signature, for: signatureLabel + binding(request) + signed) else { throw forged }
        var reader = ByteReader(signed)
        let malformed = PairingError(.malformed, "the pairing reply is malformed",
                                     hint: "the computer runs an incompatible version of Errand; update both and pair again")
        guard reader.readUInt8() == PairingRequest.version, let status = reader.readUInt8() else { throw malformed }
        switch status {
        case 1:
            guard let ratchet = reader.read(32).flatMap({ try? X25519.PublicKey(bytes: $0) }),
                  let tokenSecret = reader.readSecret(SendToken.length), let token = try? SendToken(secret: tokenSecret),
                  let nameBytes = reader.readShortField(), let name = String(validating: nameBytes, as: UTF8.self) else { throw malformed }
            let confirmedLength = reader.offset
            guard let confirmation = reader.read(HMACSHA256.tagLength), reader.isAtEnd else { throw malformed }
            return (PairingReply(.accepted(hostRatchetKey: ratchet, companionSendToken: token, hostName: name)),
                    confirmation, Array(signed[..<confirmedLength]))
        case 2: guard reader.isAtEnd else { throw malformed }; return (PairingReply(.declined), nil, [])
        case 3: guard reader.isAtEnd else { throw malformed }; return (PairingReply(.rejected), nil, [])
        default: throw malformed
        }
    }

    /// `SHA-256(companion Ed25519 ‖ companion X25519 ‖ companion ephemeral)`: which request a reply answers.
    static func binding(_ request: PairingRequest) -> [UInt8] {
        SHA256.hash(request.companionSigningKey.bytes + request.companionAgreementKey.bytes + request.companionEphemeralKey.bytes)
    }

    /// Checks an accepted reply's key confirmation: the host derived the same session keys.
    public static func verifyConfirmation(
        _ confirmation: [UInt8], confirmedBody: [UInt8], transcriptHash: [UInt8], keys: PairingSessionKeys
    ) throws(PairingError) {
        let expected = HMACSHA256.authenticationCode(for: confirmationLabel + transcriptHash + confirmedBody, key: keys.confirmationKey)
        guard ConstantTime.equals(expected, confirmation) else {
            throw PairingError(.forged, "the computer's session keys do not match this device's",
                               hint: "someone interfered with pairing; nothing was saved — pair again")
        }
    }
}

/// The host's receipt: "I have this request", before it asks the person. Signed with the host's
/// key over the request's keys and sealed to the companion's ephemeral key, so the companion shows
/// its SAS only once it knows the host holds *its* request (a relay that withheld it and handed the
/// host another one, made to give the same SAS, is caught: that receipt does not open or verify).
///
/// `receipt = 0x01 ‖ Ed25519(host key, "errand pairing receipt v1" ‖ request binding)`, padded and
/// sealed to the companion's ephemeral key in an Envelope v1.
public enum PairingReceipt {
    static let signatureLabel = Array("errand pairing receipt v1".utf8)

    /// Signs and seals the receipt for `request`.
    public static func sealed(for request: PairingRequest, hostSigningKey: Ed25519.SecretKey) throws(PairingError) -> Envelope {
        let signed = [PairingRequest.version] + hostSigningKey.signature(for: signatureLabel + PairingReply.binding(request))
        do {
            return try Envelope(ciphertext: SealedBox.seal(LengthPadding.pad(signed), to: request.companionEphemeralKey))
        } catch {
            throw PairingError(.malformed, "the device's pairing key is not usable", hint: "the device sent an invalid key; pair again")
        }
    }

    /// Checks that the receipt is the host's (from the QR code) for this very request.
    public static func verify(_ envelope: Envelope, offer: PairingOffer, request: PairingRequest, ephemeralKey: X25519.SecretKey) throws(PairingError) {
        guard let padded = try? SealedBox.open(envelope.ciphertext, recipient: ephemeralKey),
              let plain = try? LengthPadding.unpad(padded), plain.count == 1 + Ed25519.signatureLength, plain[0] == PairingRequest.version,
              offer.hostSigningKey.isValidSignature(Array(plain[1...]), for: signatureLabel + PairingReply.binding(request)) else {
            throw PairingError(.forged, "the computer received another request than this device's: someone else answered this pairing code",
                               hint: "do not confirm on the computer; cancel there and start pairing again ('errand host pair') for a fresh code")
        }
    }
}

/// The keys a pairing produces, derived identically on both sides.
///
/// `IKM = secret ‖ DH(host X25519, companion X25519) ‖ DH(host X25519, companion ephemeral) ‖
/// DH(host ratchet, companion X25519) ‖ DH(host ratchet, companion ephemeral)`;
/// `HKDF-SHA256(IKM, salt = transcript hash, info = "errand/v1/pair-session", 128)` →
/// root key ‖ initiator header key (HKa) ‖ responder next header key (NHKb) ‖ confirmation key.
public struct PairingSessionKeys: Sendable {
    static let info = Array("errand/v1/pair-session".utf8)
    static let associatedDataLabel = Array("errand/v1/session".utf8)

    public let rootKey: SecretBytes
    public let initiatorHeaderKey: SecretBytes
    public let responderNextHeaderKey: SecretBytes
    public let confirmationKey: SecretBytes
    /// Associated data of every session message: `"errand/v1/session" ‖ transcript hash`.
    public let associatedData: [UInt8]

    /// The host's derivation.
    public static func host(
        secret: SecretBytes, transcriptHash: [UInt8], hostAgreementKey: X25519.SecretKey, hostRatchetKey: X25519.SecretKey,
        request: PairingRequest
    ) throws(PairingError) -> PairingSessionKeys {
        try derive(secret: secret, transcriptHash: transcriptHash, exchanges: [
            (hostAgreementKey, request.companionAgreementKey), (hostAgreementKey, request.companionEphemeralKey),
            (hostRatchetKey, request.companionAgreementKey), (hostRatchetKey, request.companionEphemeralKey),
        ])
    }

    /// The companion's derivation.
    public static func companion(
        secret: SecretBytes, transcriptHash: [UInt8], companionAgreementKey: X25519.SecretKey, companionEphemeralKey: X25519.SecretKey,
        hostAgreementKey: X25519.PublicKey, hostRatchetKey: X25519.PublicKey
    ) throws(PairingError) -> PairingSessionKeys {
        try derive(secret: secret, transcriptHash: transcriptHash, exchanges: [
            (companionAgreementKey, hostAgreementKey), (companionEphemeralKey, hostAgreementKey),
            (companionAgreementKey, hostRatchetKey), (companionEphemeralKey, hostRatchetKey),
        ])
    }

    private static func derive(
        secret: SecretBytes, transcriptHash: [UInt8], exchanges: [(X25519.SecretKey, X25519.PublicKey)]
    ) throws(PairingError) -> PairingSessionKeys {
        var parts: [SecretBytes] = [secret]
        for (mine, theirs) in exchanges {
            do { parts.append(try mine.sharedSecret(with: theirs)) } catch {
                throw PairingError(.malformed, "a pairing key is not usable (a weak X25519 key)", hint: "pair again")
            }
        }
        let total = parts.reduce(0) { $0 + $1.count }
        let inputKeyMaterial = SecretBytes(count: total) { out in
            var offset = 0
            for part in parts {
                part.withUnsafeBytes { raw in
                    UnsafeMutableRawBufferPointer(rebasing: out[offset..<offset + raw.count]).copyMemory(from: raw)
                }
                offset += part.count
            }
        }
        let output = try! HKDF.deriveKey(inputKeyMaterial: inputKeyMaterial, salt: transcriptHash, info: info, length: 128)
        return output.withUnsafeBytes { raw in
            PairingSessionKeys(
                rootKey: SecretBytes(copying: raw[0..<32]), initiatorHeaderKey: SecretBytes(copying: raw[32..<64]),
                responderNextHeaderKey: SecretBytes(copying: raw[64..<96]), confirmationKey: SecretBytes(copying: raw[96..<128]),
                associatedData: associatedData(transcriptHash: transcriptHash))
        }
    }

    /// `"errand/v1/session" ‖ transcript hash`: what every message of the session is bound to.
    public static func associatedData(transcriptHash: [UInt8]) -> [UInt8] {
        associatedDataLabel + transcriptHash
    }
}

/// Device and host names: 1–64 bytes of UTF-8 with no control, format (bidi override), line or
/// paragraph separator, or surrogate characters — a name must not disguise itself or move the cursor.
public enum DeviceName {
    public static let maximumLength = 64
    private static let refused: Set<Unicode.GeneralCategory> = [.control, .format, .lineSeparator, .paragraphSeparator, .surrogate]

    /// Whether `name` follows the rule.
    public static func isAcceptable(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maximumLength
            && !name.unicodeScalars.contains(where: { refused.contains($0.properties.generalCategory) })
    }

    /// The first of `name`, `name-2`, `name-3`, … (shortened to fit) that `isTaken` says is free.
    public static func unique(_ name: String, isTaken: (String) throws -> Bool) rethrows -> String {
        var candidate = name
        var number = 2
        while try isTaken(candidate) {
            let tail = "-\(number)"
            var base = name
            while base.utf8.count + tail.utf8.count > maximumLength { base.removeLast() }
            candidate = base + tail
            number += 1
        }
        return candidate
    }

    /// - Throws: ``PairingError`` `.malformed` saying what is wrong with the name.
    public static func validate(_ name: String) throws(PairingError) {
        guard isAcceptable(name) else {
            throw PairingError(.malformed, "a device name must be 1 to \(maximumLength) bytes of printable text",
                               hint: "choose a plain, shorter name with --name")
        }
    }
}

/// Why pairing failed, with what to do about it.
public struct PairingError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        /// Not sealed to this host (altered code or a third party).
        case unreadable
        /// No proof of the one-time secret.
        case wrongSecret
        /// Bad structure or a key that cannot be used.
        case malformed
        /// The reply is not from the host in the QR code, or its keys do not match.
        case forged
        /// The pairing code itself was altered.
        case tampered
    }

    public let code: Code
    /// What happened.
    public let message: String
    /// What to do next.
    public let hint: String

    public init(_ code: Code, _ message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
    public static func == (lhs: PairingError, rhs: PairingError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
