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
    static let proof = "baa97141bcd8f0e9a8324bf8c1e6fb9912d9061002aeae8d9dbcdb1cc4c4d24e"
    static let requestBinding = "b64821a1028b96deb65306a7e458f5482c547ccf94d4076d98f4f32ffc88812d"
    static let rootKey = "e2bec5d7a7bbd9fb9f322d7704e593fa99a1c52c513dab65f385738545b8a948"
    static let initiatorHeaderKey = "30acc76f6eb249afdb6c7ce3be699d750dda0e441bc34593ef43d5f750089be6"
    static let responderNextHeaderKey = "368bdca7b908d2f8f6331d57202bca69ea291c616ae1997517c0491b0191c6b3"
    static let confirmationKey = "1e721ab52f35b04b8fabd28c7c7e43e3147b741498d2a3505d050e8814ef1635"
    static let firstMessage = "01303132333435363738393a3b3c3d3e3f0101010101010101010101010101010101010101010101011492556edec273aaeb21805a6a4185d4cd13ba362c3bee6051795277968227c65fb46424ca1cfb0f98f42dcf6fdf9a3bd59eb1fc3cd2515a2d80318e706b6afab778f8e082e20688f5b8c3ddbc287099d2bf3dd8c9987439ea33921ddfa8aa115c452a2cb49b217bfaf3b510a922be82d1e459255904026fb999f6f9ac18d44fb311f44b8eac9b1f8eaab53cb15c6bb0e6a956f410edc56bc34f335cd160001a2af73a908cf4880fb1444e8a868005cb78122759171803bf9db5f78f5978bc1d906931749e2ddc7f3e2984e04480eb8eed3a10e02188e782b980d7da3a39a58d985cdbf4c7bef675294081086f3ec046be743f6c72d61bc94d2e128a56a756a21108c49e551894831c1fc997ff8390a6c51d4169dfc44a38c0d91e37e5ef92bb7df3be49bddd2f930defabc2e0205bc496fe4172e04a2b61c728e5fcac3047e8b2b35835d9c67043"
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
