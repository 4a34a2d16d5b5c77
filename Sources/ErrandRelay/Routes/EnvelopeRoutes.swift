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
/// - `POST /v1/envelopes` (body: ``EnvelopeBatch``, each envelope with its own send token)
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
        router.post("/v1/envelopes") { request, context in try await postBatch(request, context) }
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
        let urgent = try urgentFlag(request)
        let bytes = try await core.body(request, context, limit: core.configuration.maximumEnvelopeBytes)
        let envelope = try core.envelope(bytes)
        let now = core.nowSeconds
        let incoming = IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: bytes, storedAt: now,
                                        expiresAt: now + core.configuration.envelopeTTL)
        switch try await core.store.storeEnvelope(incoming, sendToken: token.hash, quota: core.configuration.mailboxQuota) {
        case .stored(let sequence):
            core.metrics.stored(bytes: bytes.count, duration: ContinuousClock.now - started)
            if !core.storePublishesArrivals { core.hub.notify(mailbox) }
            if urgent { core.doorbells?.urgentArrived(mailbox) }
            return try json(PostResponse(id: envelope.id.description, seq: sequence, duplicate: false), status: .created)
        case .duplicate(let sequence):
            return try json(PostResponse(id: envelope.id.description, seq: sequence, duplicate: true))
        case .forbidden:
            throw core.refuse(.forbidden, forbiddenMessage(mailbox))
        case .quotaExceeded(let kind):
            throw core.refuse(.quotaExceeded, quotaMessage(mailbox, kind))
        }
    }

    /// Stores a batch in one commit and answers 200 with one result per item. Items are checked
    /// one by one (envelope, rate, token, quota), in order; after a refusal for a mailbox, the
    /// batch's later items for that mailbox are `not_attempted`, so a mailbox keeps its order.
    private func postBatch(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        let body = try await core.body(request, context, limit: EnvelopeBatch.maximumBodyBytes)
        let batch: EnvelopeBatch
        do { batch = try EnvelopeBatch(parsing: body) } catch { throw core.refuse(.badRequest, error.description) }
        let urgentItems = try urgentItems(request, count: batch.items.count)
        // Each envelope counts as a request for the per-address limit (the request itself was
        // counted on the way in): a batch is not a way around it.
        if batch.items.count > 1 { try await core.limitClient(core.clientIP(request, context), cost: Double(batch.items.count - 1)) }
        let now = core.nowSeconds
        var results = [EnvelopeBatch.Result?](repeating: nil, count: batch.items.count)
        var refused: Set<MailboxID> = []
        var posts: [(index: Int, post: EnvelopePost)] = []
        for (index, item) in batch.items.enumerated() {
            guard !refused.contains(item.mailbox) else {
                results[index] = notAttempted(item.mailbox)
                continue
            }
            do {
                let hash = item.token.hash
                guard item.envelope.count <= core.configuration.maximumEnvelopeBytes else {
                    throw core.refuse(.tooLarge, "the envelope is \(item.envelope.count) bytes; this relay takes at most \(core.configuration.maximumEnvelopeBytes)")
                }
                let envelope = try core.envelope(item.envelope)
                try await core.limitMailbox(item.mailbox, token: hash)
                posts.append((index, EnvelopePost(
                    IncomingEnvelope(mailbox: item.mailbox, id: envelope.id, encoded: item.envelope, storedAt: now,
                                     expiresAt: now + core.configuration.envelopeTTL),
                    sendToken: hash)))
            } catch let error as RelayError {
                refused.insert(item.mailbox)
                results[index] = .refused(error.code, error.message, retryAfterSeconds: error.retryAfterSeconds)
            }
        }
        let outcomes = posts.isEmpty ? [] : try await core.store.storeEnvelopes(posts.map(\.post), quota: core.configuration.mailboxQuota)
        guard outcomes.count == posts.count else {
            throw core.refuse(.internalError, "the store answered \(outcomes.count) outcomes for \(posts.count) envelopes")
        }
        var arrived: Set<MailboxID> = [], urgentMailboxes: Set<MailboxID> = []
        let elapsed = ContinuousClock.now - started
        for ((index, post), outcome) in zip(posts, outcomes) {
            let mailbox = post.envelope.mailbox
            switch outcome {
            case .stored(let sequence)?:
                core.metrics.stored(bytes: post.envelope.encoded.count, duration: elapsed)
                arrived.insert(mailbox)
                if urgentItems.contains(index) { urgentMailboxes.insert(mailbox) }
                results[index] = .stored(sequence: sequence, duplicate: false)
            case .duplicate(let sequence)?:
                results[index] = .stored(sequence: sequence, duplicate: true)
            case .forbidden?:
                core.metrics.refused(.forbidden)
                results[index] = .refused(.forbidden, forbiddenMessage(mailbox))
            case .quotaExceeded(let kind)?:
                core.metrics.refused(.quotaExceeded)
                results[index] = .refused(.quotaExceeded, quotaMessage(mailbox, kind))
            case nil:
                results[index] = notAttempted(mailbox)
            }
        }
        if !core.storePublishesArrivals {
            for mailbox in arrived { core.hub.notify(mailbox) }
        }
        for mailbox in urgentMailboxes { core.doorbells?.urgentArrived(mailbox) }
        return try json(EnvelopeBatch.Response(results: results.map { $0 ?? .refused(.internalError, "this envelope was not handled") }))
    }

    /// `Errand-Urgent: 1` on a single post: ring the mailbox's doorbells if it is offline.
    private func urgentFlag(_ request: Request) throws -> Bool {
        guard let value = request.headers[.errandUrgent] else { return false }
        switch value.trimmingCharacters(in: .whitespaces) {
        case "1": return true
        case "0": return false
        default: throw core.refuse(.badRequest, "Errand-Urgent must be 1 or 0, not '\(value.prefix(20))'")
        }
    }

    /// `Errand-Urgent-Items: 0,3` on a batch: the (zero-based, ascending) items that are urgent.
    private func urgentItems(_ request: Request, count: Int) throws -> Set<Int> {
        guard let value = request.headers[.errandUrgentItems] else { return [] }
        var items: Set<Int> = []
        var previous = -1
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            let text = part.trimmingCharacters(in: .whitespaces)
            guard text.count <= 3, text.allSatisfy({ $0.isASCII && $0.isNumber }), let index = Int(text), index > previous, index < count else {
                throw core.refuse(.badRequest, "Errand-Urgent-Items must list item numbers of this batch (0 to \(count - 1)), ascending, separated by commas")
            }
            items.insert(index)
            previous = index
        }
        return items
    }

    private func notAttempted(_ mailbox: MailboxID) -> EnvelopeBatch.Result {
        core.metrics.refused(.notAttempted)
        return .refused(.notAttempted, "an earlier envelope for mailbox \(mailbox.logPrefix)… in this batch was refused; this one was not stored, to keep the mailbox's order")
    }

    private func forbiddenMessage(_ mailbox: MailboxID) -> String {
        "this send token is not valid for mailbox \(mailbox.logPrefix)… (revoked, or never registered)"
    }

    private func quotaMessage(_ mailbox: MailboxID, _ kind: QuotaKind) -> String {
        let limit = kind == .envelopes ? "\(core.configuration.mailboxQuota.maximumEnvelopes) envelopes"
                                       : "\(core.configuration.mailboxQuota.maximumBytes) bytes"
        return "mailbox \(mailbox.logPrefix)… is full (\(limit) waiting); its owner must collect them first"
    }

    private func fetch(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        let after = try core.integerParameter(request, "after", in: 0...Int64.max, default: 0)
        let limit = Int(try core.integerParameter(request, "limit", in: 1...Int64(Self.maximumFetch), default: 100))
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
        let body = try await core.body(request, context, limit: 64 * 1024)
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
