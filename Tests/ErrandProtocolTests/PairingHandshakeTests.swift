import ErrandCrypto
import ErrandProtocol
import Foundation
import Testing

/// A fixed sequence of ratchet keys and header nonces, for reproducible vectors.
final class FixedRandomness: RatchetRandomness, @unchecked Sendable {
    private var keys: [X25519.SecretKey]
    private var nonceCounter: UInt8 = 0
    init(keys: [X25519.SecretKey]) { self.keys = keys }
    func newKeyPair() -> X25519.SecretKey { keys.removeFirst() }
    func headerNonce() -> [UInt8] {
        nonceCounter += 1
        return [UInt8](repeating: nonceCounter, count: 24)
    }
}

/// A companion's side of one pairing, in memory.
struct CompanionAttempt {
    let signing = Ed25519.SecretKey()
    let agreement = X25519.SecretKey()
    let ephemeral = X25519.SecretKey()
    let hostToken = SendToken()
    var request: PairingRequest {
        PairingRequest(companionSigningKey: signing.publicKey, companionAgreementKey: agreement.publicKey,
                       companionEphemeralKey: ephemeral.publicKey, hostSendToken: hostToken, deviceName: "phone")
    }
}

@Suite("Pairing handshake")
struct PairingHandshakeTests {
    let hostSigning = Ed25519.SecretKey()
    let hostAgreement = X25519.SecretKey()

    func offer(now: Date = Date()) throws -> PairingOffer {
        try PairingOffer.make(relayURL: "http://127.0.0.1:1", hostSigningKey: hostSigning.publicKey,
                              hostAgreementKey: hostAgreement.publicKey, hostName: "studio", now: now)
    }

    @Test("Both sides derive the same keys and SAS; the session works; the host is authenticated")
    func happyPath() throws {
        let offer = try offer()
        let companion = CompanionAttempt()
        let sealedRequest = try companion.request.sealed(for: offer, signer: companion.signing)
        // The relay sees only a padded sealed box.
        #expect(sealedRequest.ciphertext.count == LengthPadding.minimumPaddedLength + SealedBox.overhead)

        let request = try PairingRequest.open(sealedRequest, offer: offer, hostAgreementKey: hostAgreement)
        #expect(request.deviceName == "phone")
        #expect(request.hostSendToken.hash == companion.hostToken.hash)
        let transcript = request.transcript(offerURI: offer.uri)
        let hostRatchet = X25519.SecretKey()
        let hostKeys = try PairingSessionKeys.host(secret: offer.secret, transcriptHash: transcript.hash,
                                                   hostAgreementKey: hostAgreement, hostRatchetKey: hostRatchet, request: request)
        let companionToken = SendToken()
        let reply = try PairingReply(.accepted(hostRatchetKey: hostRatchet.publicKey, companionSendToken: companionToken, hostName: "studio"))
            .sealed(request: request, offerURI: offer.uri, hostSigningKey: hostSigning, sessionKeys: hostKeys)

        let opened = try PairingReply.open(reply, offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        guard case .accepted(let ratchetKey, let token, let name) = opened.reply.outcome else {
            Issue.record("expected an accepted reply"); return
        }
        #expect(name == "studio")
        #expect(token.hash == companionToken.hash)
        let companionKeys = try PairingSessionKeys.companion(
            secret: offer.secret, transcriptHash: transcript.hash, companionAgreementKey: companion.agreement,
            companionEphemeralKey: companion.ephemeral, hostAgreementKey: offer.hostAgreementKey, hostRatchetKey: ratchetKey)
        try PairingReply.verifyConfirmation(opened.confirmation!, confirmedBody: opened.confirmedBody,
                                            transcriptHash: transcript.hash, keys: companionKeys)
        #expect(companionKeys.rootKey.constantTimeEquals(hostKeys.rootKey))
        #expect(ShortAuthenticationString(transcript: transcript, secret: offer.secret)
                == ShortAuthenticationString(transcript: companion.request.transcript(offerURI: offer.uri), secret: offer.secret))

        var companionSession = try SecureSession(
            ratchet: .initiator(sharedSecret: companionKeys.rootKey, headerKey: companionKeys.initiatorHeaderKey,
                                nextHeaderKey: companionKeys.responderNextHeaderKey, responderRatchetKey: ratchetKey),
            associatedData: companionKeys.associatedData)
        var hostSession = SecureSession(
            ratchet: .responder(sharedSecret: hostKeys.rootKey, headerKey: hostKeys.initiatorHeaderKey,
                                nextHeaderKey: hostKeys.responderNextHeaderKey, ratchetKeyPair: hostRatchet),
            associatedData: hostKeys.associatedData)
        #expect(try hostSession.open(companionSession.seal(text("hello host"))) == text("hello host"))
        #expect(try companionSession.open(hostSession.seal(text("hello phone"))) == text("hello phone"))
    }

    @Test("Wrong secret: the request opens but the proof fails")
    func wrongSecret() throws {
        let real = try offer()
        let guessed = try PairingOffer(uri: real.uri.replacingOccurrences(of: "t=\(ByteEncoding.base64URL(real.secret))",
                                                                          with: "t=\(ByteEncoding.base64URL(SecureRandom.bytes(count: 16)))"))
        let companion = CompanionAttempt()
        let sealed = try companion.request.sealed(for: guessed, signer: companion.signing)
        #expect(throws: PairingError(.wrongSecret, "", hint: "")) { try PairingRequest.open(sealed, offer: real, hostAgreementKey: hostAgreement) }
    }

    @Test("Altered codes: another host key makes the request unreadable; another expiry or relay breaks the proof")
    func alteredOffer() throws {
        let real = try offer()
        let attacker = X25519.SecretKey()
        let swapped = try PairingOffer(uri: real.uri.replacingOccurrences(of: "x=\(ByteEncoding.base64URL(real.hostAgreementKey.bytes))",
                                                                          with: "x=\(ByteEncoding.base64URL(attacker.publicKey.bytes))"))
        let companion = CompanionAttempt()
        #expect(throws: PairingError(.unreadable, "", hint: "")) {
            try PairingRequest.open(companion.request.sealed(for: swapped, signer: companion.signing), offer: real, hostAgreementKey: self.hostAgreement)
        }
        let later = try PairingOffer(uri: real.uri.replacingOccurrences(of: "e=\(Int(real.expiresAt.timeIntervalSince1970))",
                                                                        with: "e=\(Int(real.expiresAt.timeIntervalSince1970) + 60)"))
        #expect(throws: PairingError(.wrongSecret, "", hint: "")) {
            try PairingRequest.open(companion.request.sealed(for: later, signer: companion.signing), offer: real, hostAgreementKey: self.hostAgreement)
        }
    }

    @Test("A request whose signature does not match its companion key is refused")
    func badSignature() throws {
        let offer = try offer()
        let companion = CompanionAttempt()
        let sealed = try companion.request.sealed(for: offer, signer: companion.signing)
        var plain = try LengthPadding.unpad(SealedBox.open(sealed.ciphertext, recipient: hostAgreement))
        plain[plain.count - 1] ^= 1
        let forged = try Envelope(ciphertext: SealedBox.seal(LengthPadding.pad(plain), to: hostAgreement.publicKey))
        #expect(throws: PairingError(.malformed, "", hint: "")) { try PairingRequest.open(forged, offer: offer, hostAgreementKey: hostAgreement) }
    }

    @Test("A relay cannot forge the host's reply or substitute its ratchet key")
    func forgedReply() throws {
        let offer = try offer()
        let companion = CompanionAttempt()
        let request = try PairingRequest.open(companion.request.sealed(for: offer, signer: companion.signing), offer: offer, hostAgreementKey: hostAgreement)
        // Signed by someone else.
        let impostor = Ed25519.SecretKey()
        let ratchet = X25519.SecretKey()
        let keys = try PairingSessionKeys.host(secret: offer.secret, transcriptHash: request.transcript(offerURI: offer.uri).hash,
                                               hostAgreementKey: hostAgreement, hostRatchetKey: ratchet, request: request)
        let forged = try PairingReply(.accepted(hostRatchetKey: ratchet.publicKey, companionSendToken: SendToken(), hostName: "studio"))
            .sealed(request: request, offerURI: offer.uri, hostSigningKey: impostor, sessionKeys: keys)
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReply.open(forged, offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        }
        // Garbage sealed to the right ephemeral key.
        let garbage = try Envelope(ciphertext: SealedBox.seal(LengthPadding.pad(SecureRandom.bytes(count: 120)), to: companion.ephemeral.publicKey))
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReply.open(garbage, offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        }
        // Correctly signed, but confirmation keyed with keys the companion does not share.
        let wrongKeys = try PairingSessionKeys.host(secret: SecretBytes.random(count: 16), transcriptHash: request.transcript(offerURI: offer.uri).hash,
                                                    hostAgreementKey: hostAgreement, hostRatchetKey: ratchet, request: request)
        let mismatched = try PairingReply(.accepted(hostRatchetKey: ratchet.publicKey, companionSendToken: SendToken(), hostName: "studio"))
            .sealed(request: request, offerURI: offer.uri, hostSigningKey: hostSigning, sessionKeys: wrongKeys)
        let opened = try PairingReply.open(mismatched, offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        let companionKeys = try PairingSessionKeys.companion(
            secret: offer.secret, transcriptHash: request.transcript(offerURI: offer.uri).hash, companionAgreementKey: companion.agreement,
            companionEphemeralKey: companion.ephemeral, hostAgreementKey: offer.hostAgreementKey, hostRatchetKey: ratchet.publicKey)
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReply.verifyConfirmation(opened.confirmation!, confirmedBody: opened.confirmedBody,
                                                transcriptHash: request.transcript(offerURI: offer.uri).hash, keys: companionKeys)
        }
    }

    @Test("A receipt verifies only for this request, from the host in the code")
    func receipt() throws {
        let offer = try offer()
        let companion = CompanionAttempt()
        try PairingReceipt.verify(PairingReceipt.sealed(for: companion.request, hostSigningKey: hostSigning),
                                  offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        // For another request (the one a relay swapped in): sealed to its ephemeral key, so it does not open.
        let other = CompanionAttempt()
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReceipt.verify(PairingReceipt.sealed(for: other.request, hostSigningKey: self.hostSigning),
                                      offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        }
        // Sealed to this device but signed over another request's keys (same ephemeral key, other identity).
        let mixed = PairingRequest(companionSigningKey: other.signing.publicKey, companionAgreementKey: companion.agreement.publicKey,
                                   companionEphemeralKey: companion.ephemeral.publicKey, hostSendToken: companion.hostToken, deviceName: "phone")
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReceipt.verify(PairingReceipt.sealed(for: mixed, hostSigningKey: self.hostSigning),
                                      offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        }
        // Signed by anyone but the host in the code.
        #expect(throws: PairingError(.forged, "", hint: "")) {
            try PairingReceipt.verify(PairingReceipt.sealed(for: companion.request, hostSigningKey: Ed25519.SecretKey()),
                                      offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
        }
    }

    @Test("Declined and rejected replies are signed and read back")
    func declined() throws {
        let offer = try offer()
        let companion = CompanionAttempt()
        for outcome in [PairingReply.Outcome.declined, .rejected] {
            let reply = try PairingReply(outcome).sealed(request: companion.request, offerURI: offer.uri, hostSigningKey: hostSigning, sessionKeys: nil)
            let opened = try PairingReply.open(reply, offer: offer, request: companion.request, ephemeralKey: companion.ephemeral)
            switch (outcome, opened.reply.outcome) {
            case (.declined, .declined), (.rejected, .rejected): break
            default: Issue.record("outcome changed in transit")
            }
        }
    }

    @Test("Device names: printable, 1–64 bytes")
    func names() {
        #expect(DeviceName.isAcceptable("Ana's phone 📱"))
        #expect(!DeviceName.isAcceptable(""))
        #expect(!DeviceName.isAcceptable(String(repeating: "a", count: 65)))
        #expect(!DeviceName.isAcceptable("phone\u{202E}evil"))
        #expect(!DeviceName.isAcceptable("two\nlines"))
        // A taken name gets the next free number, shortened so it stays within 64 bytes.
        let taken: Set<String> = ["phone", "phone-2"]
        #expect(DeviceName.unique("phone") { taken.contains($0) } == "phone-3")
        #expect(DeviceName.unique("tablet") { taken.contains($0) } == "tablet")
        let long = String(repeating: "é", count: 32)
        let numbered = DeviceName.unique(long) { $0 == long }
        #expect(numbered.hasSuffix("-2") && numbered.utf8.count <= 64 && DeviceName.isAcceptable(numbered))
    }
}
