import ErrandCrypto
import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Posting, fetching and acknowledging envelopes.
///
/// - `POST /v1/mailboxes/:mailbox/envelopes` (body: envelope v1, `Authorization: Bearer <send token>`)
/// - `GET /v1/mailboxes/:mailbox/envelopes?after=SEQ&limit=N` (owner)
/// - `POST /v1/mailboxes/:mailbox/acks` `{"ids": [hex…]}` (owner)
struct EnvelopeRoutes {
    let core: RelayCore

    struct PostResponse: Encodable { let id: String; let seq: Int64; let duplicate: Bool }
    struct FetchResponse: Encodable {
        struct Item: Encodable { let seq: Int64; let envelope: String }
        let envelopes: [Item]
        let more: Bool
    }
    struct AckRequest: Decodable { let ids: [String] }
    struct AckResponse: Encodable { let deleted: Int }

    static let maximumFetch = 500
    static let maximumPageBytes = 2 * 1024 * 1024

    func register(on router: Router<RelayRequestContext>) {
        router.post("/v1/mailboxes/:mailbox/envelopes") { request, context in try await post(request, context) }
        router.get("/v1/mailboxes/:mailbox/envelopes") { request, context in try await fetch(request, context) }
        router.post("/v1/mailboxes/:mailbox/acks") { request, context in try await acknowledge(request, context) }
    }

    private func post(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        let mailbox = try core.mailboxParameter(context)
        guard let bearer = request.headers[.authorization].flatMap(MailboxRoutes.bearerToken) else {
            throw core.refuse(.unauthenticated, "posting needs 'Authorization: Bearer <send token>' from the mailbox's owner")
        }
        let token: SendToken
        do { token = try SendToken(bearer: bearer) } catch { throw core.refuse(.unauthenticated, error.description) }
        try await core.limitMailbox(mailbox, token: token.hash)
        let bytes = try await core.body(request, limit: core.configuration.maximumEnvelopeBytes)
        let envelope = try core.envelope(bytes)
        let now = core.nowSeconds
        let incoming = IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: bytes, storedAt: now,
                                        expiresAt: now + core.configuration.envelopeTTL)
        switch try await core.store.storeEnvelope(incoming, sendToken: token.hash, quota: core.configuration.mailboxQuota) {
        case .stored(let sequence):
            core.metrics.stored(bytes: bytes.count, duration: ContinuousClock.now - started)
            core.hub.notify(mailbox)
            return try json(PostResponse(id: envelope.id.description, seq: sequence, duplicate: false), status: .created)
        case .duplicate(let sequence):
            return try json(PostResponse(id: envelope.id.description, seq: sequence, duplicate: true))
        case .forbidden:
            throw core.refuse(.forbidden, "this send token is not valid for mailbox \(mailbox.logPrefix)… (revoked, or never registered)")
        case .quotaExceeded(let kind):
            let limit = kind == .envelopes ? "\(core.configuration.mailboxQuota.maximumEnvelopes) envelopes"
                                           : "\(core.configuration.mailboxQuota.maximumBytes) bytes"
            throw core.refuse(.quotaExceeded, "mailbox \(mailbox.logPrefix)… is full (\(limit) waiting); its owner must collect them first")
        }
    }

    private func fetch(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, limit: 0))
        let query = request.uri.queryParameters
        let after = query.get("after", as: Int64.self) ?? 0
        let limit = min(max(query.get("limit", as: Int.self) ?? 100, 1), Self.maximumFetch)
        let stored = try await core.store.envelopes(in: mailbox, after: after, limit: limit + 1)
        // At most `limit` envelopes and about 2 MiB per page (always at least one).
        var bytes = 0
        let page = stored.prefix(limit).prefix { envelope in
            defer { bytes += envelope.encoded.count }
            return bytes == 0 || bytes + envelope.encoded.count <= Self.maximumPageBytes
        }
        core.metrics.delivered(count: page.count)
        return try json(FetchResponse(
            envelopes: page.map { .init(seq: $0.sequence, envelope: ByteEncoding.base64URL($0.encoded)) },
            more: stored.count > page.count))
    }

    private func acknowledge(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let body = try await core.body(request, limit: 64 * 1024)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: body)
        let payload = try core.decode(AckRequest.self, from: body)
        guard payload.ids.count <= LiveFrame.maximumAcknowledgements else {
            throw core.refuse(.badRequest, "acknowledge at most \(LiveFrame.maximumAcknowledgements) envelopes at once")
        }
        let ids = try payload.ids.map { text -> EnvelopeID in
            guard let bytes = try? ByteEncoding.bytes(hex: text), let id = try? EnvelopeID(bytes: bytes) else {
                throw core.refuse(.badRequest, "'\(text.prefix(40))' is not an envelope id (32 hex digits)")
            }
            return id
        }
        let deleted = try await core.store.acknowledge(ids, in: mailbox)
        return try json(AckResponse(deleted: deleted))
    }
}
