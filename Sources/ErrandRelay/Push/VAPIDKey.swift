import Crypto
import ErrandCrypto
import Foundation

/// The relay's VAPID key (RFC 8292): a P-256 key pair that identifies this relay to browser push
/// services. Browsers subscribe with its public key; every push carries a JWT signed with it.
/// Kept in the data folder as `push-vapid.key` (PEM, mode 0600), made on first start.
struct VAPIDKey: Sendable {
    static let fileName = "push-vapid.key"

    let privateKey: P256.Signing.PrivateKey

    /// The public key as browsers take it (`applicationServerKey`): the 65-byte uncompressed
    /// point, base64url without padding.
    var publicKeyText: String { ByteEncoding.base64URL([UInt8](privateKey.publicKey.x963Representation)) }

    init(privateKey: P256.Signing.PrivateKey) { self.privateKey = privateKey }

    /// Loads the key from the data folder, making and saving it first when there is none.
    static func load(dataDirectory: String) throws -> VAPIDKey {
        let path = (dataDirectory as NSString).appendingPathComponent(fileName)
        if FileManager.default.fileExists(atPath: path) {
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw VAPIDKeyError("cannot read \(path): \(error.localizedDescription)")
            }
            do { return VAPIDKey(privateKey: try P256.Signing.PrivateKey(pemRepresentation: text)) } catch {
                throw VAPIDKeyError("\(path) is not a P-256 private key in PEM form; move it away to make a new one (browsers then have to subscribe again)")
            }
        }
        let key = P256.Signing.PrivateKey()
        do { try OwnerOnlyFile.write(Array(key.pemRepresentation.utf8), to: path) } catch {
            throw VAPIDKeyError("cannot write \(path): \(error)")
        }
        return VAPIDKey(privateKey: key)
    }

    /// The `Authorization` header for a push to `endpoint`: `vapid t=JWT, k=PUBLIC KEY`, the JWT
    /// (ES256) claiming `aud` (the endpoint's origin), `exp` (12 hours from `now`) and `sub`.
    func authorization(for endpoint: URL, contact: String, now: Date = Date()) throws -> String {
        guard let audience = PushDestinations.origin(of: endpoint.absoluteString) else { throw VAPIDKeyError("\(endpoint) has no origin") }
        let header = #"{"typ":"JWT","alg":"ES256"}"#
        let claims = try String(decoding: JSONSerialization.data(
            withJSONObject: ["aud": audience, "exp": Int(now.timeIntervalSince1970) + 12 * 3600, "sub": contact],
            options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
        let signingInput = ByteEncoding.base64URL(Array(header.utf8)) + "." + ByteEncoding.base64URL(Array(claims.utf8))
        let signature = try privateKey.signature(for: Data(signingInput.utf8))
        let token = signingInput + "." + ByteEncoding.base64URL([UInt8](signature.rawRepresentation))
        return "vapid t=\(token), k=\(publicKeyText)"
    }
}

struct VAPIDKeyError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
