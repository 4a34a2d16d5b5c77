import Crypto
import ErrandCrypto
import Foundation

/// Message encryption for Web Push (RFC 8291): one `aes128gcm` record (RFC 8188) for a push
/// subscription's P-256 key and authentication secret, under a fresh sender key and salt.
/// Built from swift-crypto's ECDH, HKDF-SHA-256 and AES-128-GCM.
enum WebPushEncryption {
    /// The record size written in the header (the payload is always one short record).
    static let recordSize: UInt32 = 4096

    enum Failure: Error, CustomStringConvertible {
        case badSubscriberKey, badAuthSecret, tooLong
        var description: String {
            switch self {
            case .badSubscriberKey: "the subscription's p256dh is not an uncompressed P-256 public key (65 bytes)"
            case .badAuthSecret: "the subscription's auth secret is not 16 bytes"
            case .tooLong: "the payload does not fit one record"
            }
        }
    }

    /// Encrypts `plaintext` for a subscription.
    /// - Parameters:
    ///   - subscriberKey: the subscription's `p256dh` (65-byte uncompressed point).
    ///   - authSecret: the subscription's `auth` (16 bytes).
    ///   - senderKey, salt: fresh for every message; given only by tests (RFC 8291 Appendix A).
    /// - Returns: the request body: header (salt ‖ record size ‖ key id length ‖ sender key) ‖ ciphertext.
    static func encrypt(_ plaintext: [UInt8], subscriberKey: [UInt8], authSecret: [UInt8],
                        senderKey: P256.KeyAgreement.PrivateKey = .init(),
                        salt: [UInt8] = SecureRandom.bytes(count: 16)) throws -> [UInt8] {
        guard subscriberKey.count == 65, subscriberKey.first == 0x04,
              let subscriber = try? P256.KeyAgreement.PublicKey(x963Representation: subscriberKey) else { throw Failure.badSubscriberKey }
        guard authSecret.count == 16 else { throw Failure.badAuthSecret }
        guard plaintext.count + 1 + 16 <= Int(recordSize) else { throw Failure.tooLong }
        let senderPublic = [UInt8](senderKey.publicKey.x963Representation)
        let shared = try senderKey.sharedSecretFromKeyAgreement(with: subscriber)
        // IKM = HKDF(salt: auth secret, IKM: ECDH secret, info: "WebPush: info" 0x00 ‖ ua_public ‖ as_public, 32)
        let keyInfo = Array("WebPush: info".utf8) + [0] + subscriberKey + senderPublic
        let ikm = shared.hkdfDerivedSymmetricKey(using: Crypto.SHA256.self, salt: authSecret, sharedInfo: keyInfo, outputByteCount: 32)
        let prk = HKDF<Crypto.SHA256>.extract(inputKeyMaterial: ikm, salt: salt)
        let contentKey = HKDF<Crypto.SHA256>.expand(pseudoRandomKey: prk, info: Array("Content-Encoding: aes128gcm".utf8) + [0], outputByteCount: 16)
        let nonce = HKDF<Crypto.SHA256>.expand(pseudoRandomKey: prk, info: Array("Content-Encoding: nonce".utf8) + [0], outputByteCount: 12)
        // One record, the last: the plaintext, then the delimiter 0x02, no padding.
        let sealed = try AES.GCM.seal(plaintext + [0x02], using: contentKey,
                                      nonce: AES.GCM.Nonce(data: nonce.withUnsafeBytes { Data($0) }))
        var body = salt
        withUnsafeBytes(of: recordSize.bigEndian) { body += $0 }
        body.append(UInt8(senderPublic.count))
        body += senderPublic
        body += sealed.ciphertext
        body += sealed.tag
        return body
    }
}
