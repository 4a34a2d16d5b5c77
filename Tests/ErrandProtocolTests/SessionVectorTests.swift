import ErrandCrypto
@testable import ErrandProtocol
import Foundation
import Testing

/// The published handshake and session vector (docs/protocol.md, "Test vectors"), from the
/// fixed keys of the pairing-offer vector plus the ones below. `scripts/check-session-vectors.py`
/// recomputes the same values with another implementation.
enum SessionVector {
    static let companionEphemeral = try! X25519.SecretKey(secret: SecretBytes(copying: Vector.range(0xA0)))
    static let hostRatchet = try! X25519.SecretKey(secret: SecretBytes(copying: Vector.range(0xC0)))
    static let companionRatchet = try! X25519.SecretKey(secret: SecretBytes(copying: Vector.range(0x10)))
    static let hostSendToken = try! SendToken(secret: SecretBytes(copying: Vector.range(0xE0)))
    static let envelopeID = try! EnvelopeID(bytes: Vector.range(0x30, 16))

    static func request() -> PairingRequest {
        PairingRequest(companionSigningKey: Vector.companionSigning.publicKey, companionAgreementKey: Vector.companionAgreement.publicKey,
                       companionEphemeralKey: companionEphemeral.publicKey, hostSendToken: hostSendToken, deviceName: "phone")
    }

    // Expected values.
    static let requestBody = "01174553b456dddfc6908ecab1c101fe6ab21e2baa0617795b7d43a63482993fd5493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23ce0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000570686f6e65"
    static let proof = "6c67c948cb8161977768ac314be0e2da84464973b1fdf91d3efb0f6fcb08d850"
    static let requestBinding = "b64821a1028b96deb65306a7e458f5482c547ccf94d4076d98f4f32ffc88812d"
    static let rootKey = "108077a09a9dd7ff4fd58c3d4fd0b54f4e636c1df867e77e7f515597ba3eb16d"
    static let initiatorHeaderKey = "dc0c1ab21c0cac89e08b1512d657eb88a3c6a5efed35623ae196fe026a216d45"
    static let responderNextHeaderKey = "3961c0cee16f6bab88c16169c5ff0ac3382098c7128f78a4e511b1b5a8b7f395"
    static let confirmationKey = "3693bb63699e74341a3ef9bf2dd06d457154fcf4744939717acbe790366a9a6c"
    static let firstMessage = "01303132333435363738393a3b3c3d3e3f010101010101010101010101010101010101010101010101b66c5c516aef562d0e4a6b1651c30afbd63442cd3a465516dd808355eec089b1bf762f715d72323dafe52dc607d186c3459c4216a6e2aefb2549eff29407e0b03c8bac8e7a51b9e1377067455024b9fc4da5d774344086ad62c707a61c08e2e661551b8a6b0ecfb36fc4f8fcb0b0477a1e80b3f5b7ed28cfe37de4365127e54b6a4c025f4e72c6fc59a4f2a19395da7e3471ee5207737dd88f2bc9035175c71cdc7a5e6457d361ae78fde21fc07e1cd838e86c3a2cb95ee4228654e41d17b8518e877460f19e6f9e0fc934eced87af1a0243e4ece50aed580e1d4144dfabbf2a76f5628e18726b23755a9d382481b9475ff8f625572813e331cbaa4f0ad27ffc8f0b519ff810c7d3fd0be01ce5f56ed59d7cb38f6311be27c8b8795757407c70ef7131ae75ba810b1bd77cda49f8bbc552f8b9f2286414da47bc7f0452e4b4420037f523e22d5999"
}

@Suite("Handshake and session test vector")
struct SessionVectorTests {
    @Test("Request body, proof, session keys and the first session message, byte for byte")
    func vector() throws {
        let offer = try Vector.offer()
        let request = SessionVector.request()
        let transcriptHash = request.transcript(offerURI: offer.uri).hash
        let body = request.body
        let proof = PairingRequest.proof(body: body, transcriptHash: transcriptHash, secret: offer.secret)
        let hostKeys = try PairingSessionKeys.host(secret: offer.secret, transcriptHash: transcriptHash, hostAgreementKey: Vector.hostAgreement,
                                                   hostRatchetKey: SessionVector.hostRatchet, request: request)
        let companionKeys = try PairingSessionKeys.companion(
            secret: offer.secret, transcriptHash: transcriptHash, companionAgreementKey: Vector.companionAgreement,
            companionEphemeralKey: SessionVector.companionEphemeral, hostAgreementKey: offer.hostAgreementKey,
            hostRatchetKey: SessionVector.hostRatchet.publicKey)
        #expect(companionKeys.rootKey.constantTimeEquals(hostKeys.rootKey))
        let randomness = FixedRandomness(keys: [SessionVector.companionRatchet])
        var companion = try SecureSession(
            ratchet: .initiator(sharedSecret: companionKeys.rootKey, headerKey: companionKeys.initiatorHeaderKey,
                                nextHeaderKey: companionKeys.responderNextHeaderKey, responderRatchetKey: SessionVector.hostRatchet.publicKey,
                                randomness: randomness),
            associatedData: companionKeys.associatedData)
        let first = try companion.seal(Array("hello".utf8), randomness: randomness, envelopeID: SessionVector.envelopeID)

        let hex = { (bytes: [UInt8]) in ByteEncoding.hex(bytes) }
        let values: [(String, String, String)] = [
            ("requestBody", hex(body), SessionVector.requestBody),
            ("proof", hex(proof), SessionVector.proof),
            ("requestBinding", hex(PairingReply.binding(request)), SessionVector.requestBinding),
            ("rootKey", hex(hostKeys.rootKey.unsafeCopyToArray()), SessionVector.rootKey),
            ("initiatorHeaderKey", hex(hostKeys.initiatorHeaderKey.unsafeCopyToArray()), SessionVector.initiatorHeaderKey),
            ("responderNextHeaderKey", hex(hostKeys.responderNextHeaderKey.unsafeCopyToArray()), SessionVector.responderNextHeaderKey),
            ("confirmationKey", hex(hostKeys.confirmationKey.unsafeCopyToArray()), SessionVector.confirmationKey),
            ("firstMessage", hex(first.encoded), SessionVector.firstMessage),
        ]
        for (name, actual, expected) in values {
            #expect(actual == expected, "\(name) = \(actual)")
        }

        // And the host opens it.
        var host = SecureSession(
            ratchet: .responder(sharedSecret: hostKeys.rootKey, headerKey: hostKeys.initiatorHeaderKey,
                                nextHeaderKey: hostKeys.responderNextHeaderKey, ratchetKeyPair: SessionVector.hostRatchet),
            associatedData: hostKeys.associatedData)
        #expect(try host.open(first) == Array("hello".utf8))
    }
}
