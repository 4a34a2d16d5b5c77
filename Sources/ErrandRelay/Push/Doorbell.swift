import Crypto
import ErrandCrypto
public import ErrandProtocol
import Foundation

/// How a doorbell rings.
public enum DoorbellKind: String, Sendable, Codable, CaseIterable {
    /// RFC 8030 Web Push with VAPID (browsers; UnifiedPush distributors speak it too).
    case webPush = "webpush"
    /// An ntfy topic URL (ntfy.sh or a self-hosted server).
    case ntfy
    /// A plain HTTPS webhook.
    case webhook
}

/// A way to tell a mailbox's owner that something urgent is waiting, registered by the owner.
/// It carries no content: the relay only says "look".
public struct Doorbell: Sendable, Equatable {
    public let mailbox: MailboxID
    /// `SHA-256("errand doorbell v1\n" ‖ url)[0..<16]`: one doorbell per URL and mailbox.
    public let id: [UInt8]
    public let kind: DoorbellKind
    public let url: String
    /// Web Push: the subscription's P-256 key (65 bytes) and authentication secret (16 bytes);
    /// nil for a subscription that takes no payload, and for the other kinds.
    public let subscriberKey: [UInt8]?
    public let authSecret: [UInt8]?
    public let createdAt: Int64

    public init(mailbox: MailboxID, kind: DoorbellKind, url: String, subscriberKey: [UInt8]?, authSecret: [UInt8]?, createdAt: Int64) {
        self.mailbox = mailbox
        id = Self.id(of: url)
        self.kind = kind
        self.url = url
        self.subscriberKey = subscriberKey
        self.authSecret = authSecret
        self.createdAt = createdAt
    }

    /// Rebuilds a stored doorbell.
    init(mailbox: MailboxID, id: [UInt8], kind: DoorbellKind, url: String, subscriberKey: [UInt8]?, authSecret: [UInt8]?, createdAt: Int64) {
        self.mailbox = mailbox
        self.id = id
        self.kind = kind
        self.url = url
        self.subscriberKey = subscriberKey
        self.authSecret = authSecret
        self.createdAt = createdAt
    }

    public static func id(of url: String) -> [UInt8] {
        Array(ErrandCrypto.SHA256.hash(Array("errand doorbell v1\n\(url)".utf8)).prefix(16))
    }

    public var idText: String { ByteEncoding.base64URL(id) }
}

/// The body of `POST /v1/mailboxes/{id}/doorbells`.
struct DoorbellRegistration: Decodable {
    let kind: String
    let url: String
    let p256dh: String?
    let auth: String?

    /// The doorbell, or why it is refused (`.badRequest` for a malformed one, `.forbidden` for a
    /// destination the relay may not call).
    func doorbell(for mailbox: MailboxID, destinations: PushDestinations, now: Int64) -> Result<Doorbell, RelayError> {
        guard let kind = DoorbellKind(rawValue: kind) else {
            return .failure(RelayError(.badRequest, "kind must be one of \(DoorbellKind.allCases.map(\.rawValue).joined(separator: ", ")), not '\(self.kind.prefix(40))'"))
        }
        if let problem = destinations.refusal(of: url) { return .failure(RelayError(.forbidden, problem)) }
        var key: [UInt8]?, secret: [UInt8]?
        switch (kind, p256dh, auth) {
        case (.webPush, let p256dh?, let auth?):
            guard let bytes = try? ByteEncoding.bytes(base64URL: p256dh), bytes.count == 65, bytes.first == 0x04,
                  (try? P256.KeyAgreement.PublicKey(x963Representation: bytes)) != nil else {
                return .failure(RelayError(.badRequest, "p256dh must be the subscription's P-256 public key: 65 bytes, uncompressed, base64url"))
            }
            guard let authBytes = try? ByteEncoding.bytes(base64URL: auth), authBytes.count == 16 else {
                return .failure(RelayError(.badRequest, "auth must be the subscription's 16-byte authentication secret, base64url"))
            }
            (key, secret) = (bytes, authBytes)
        case (.webPush, nil, nil): break
        case (.webPush, _, _): return .failure(RelayError(.badRequest, "a Web Push subscription needs both p256dh and auth, or neither"))
        case (_, nil, nil): break
        default: return .failure(RelayError(.badRequest, "p256dh and auth belong to Web Push subscriptions only"))
        }
        return .success(Doorbell(mailbox: mailbox, kind: kind, url: url, subscriberKey: key, authSecret: secret, createdAt: now))
    }
}
