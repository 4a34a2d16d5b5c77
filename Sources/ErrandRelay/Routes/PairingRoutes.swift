import ErrandCrypto
import ErrandProtocol
import HTTPTypes
import Hummingbird

/// Pairing slots: a short-lived rendezvous for exactly one companion request, one host receipt
/// (the host has that request) and one host reply.
///
/// Host (owner-signed): `POST /v1/mailboxes/:mailbox/pairing-slots` `{"slot", "ttl"?}`,
/// `GET …/pairing-slots/:slot/request`, `PUT …/pairing-slots/:slot/receipt`, `PUT …/pairing-slots/:slot/reply`,
/// `DELETE …/pairing-slots/:slot`.
/// Companion (`Errand-Claim: <base64url 32 random bytes>`): `PUT /v1/pairing-slots/:slot/request`,
/// `GET /v1/pairing-slots/:slot/receipt`, `GET /v1/pairing-slots/:slot/reply`. The first
/// companion's claim binds the slot; anyone else gets 409 (request) or 403 (receipt, reply).
struct PairingRoutes {
    let core: RelayCore

    struct CreateRequest: Decodable { let slot: String; let ttl: Int64? }
    struct CreateResponse: Encodable { let slot: String; let expiresAt: Int64 }

    func register(on router: Router<RelayRequestContext>) {
        router.post("/v1/mailboxes/:mailbox/pairing-slots") { request, context in try await create(request, context) }
        router.get("/v1/mailboxes/:mailbox/pairing-slots/:slot/request") { request, context in try await readRequest(request, context) }
        router.put("/v1/mailboxes/:mailbox/pairing-slots/:slot/receipt") { request, context in try await putHostPart(.receipt, request, context) }
        router.put("/v1/mailboxes/:mailbox/pairing-slots/:slot/reply") { request, context in try await putHostPart(.reply, request, context) }
        router.delete("/v1/mailboxes/:mailbox/pairing-slots/:slot") { request, context in try await cancel(request, context) }
        router.put("/v1/pairing-slots/:slot/request") { request, context in try await putRequest(request, context) }
        router.get("/v1/pairing-slots/:slot/receipt") { request, context in try await readReceipt(request, context) }
        router.get("/v1/pairing-slots/:slot/reply") { request, context in try await takeReply(request, context) }
    }

    private func create(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let body = try await core.body(request, context, limit: 1024)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: body)
        let payload = try core.decode(CreateRequest.self, from: body)
        guard let bytes = try? ByteEncoding.bytes(base64URL: payload.slot), let slot = try? PairingSlotID(bytes: bytes) else {
            throw core.refuse(.badRequest, "\"slot\" must be 16 bytes of base64url")
        }
        let ttl = payload.ttl ?? core.configuration.pairingSlotDefaultTTL
        guard (1...core.configuration.pairingSlotMaximumTTL).contains(ttl) else {
            throw core.refuse(.badRequest, "a pairing slot lives 1 to \(core.configuration.pairingSlotMaximumTTL) seconds, not \(ttl)")
        }
        let expiresAt = core.nowSeconds + ttl
        let maximumOpen = core.configuration.maximumOpenPairingSlots
        switch try await core.store.createSlot(slot, owner: mailbox, expiresAt: expiresAt, maximumOpen: maximumOpen, now: core.nowSeconds) {
        case .created: break
        case .exists: throw core.refuse(.slotAlreadyUsed, "a pairing slot with this id exists; pick a fresh random id")
        case .tooMany:
            throw core.refuse(.quotaExceeded, "this mailbox already has \(maximumOpen) pairing slots open; finish or cancel one, or wait until one expires")
        }
        return try json(CreateResponse(slot: payload.slot, expiresAt: expiresAt), status: .created)
    }

    private func readRequest(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let slot = try core.slotParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        switch try await core.store.slotRequest(slot, owner: mailbox, now: core.nowSeconds) {
        case .value(let bytes): return octets(bytes)
        case .empty: return Response(status: .noContent)
        case .notFound, .forbidden: throw core.refuse(.notFound, "no such pairing slot (it expired, was used, or was never opened)")
        }
    }

    /// `PUT …/receipt` and `PUT …/reply`: the host's two writes, once each, after the request.
    private func putHostPart(_ part: SlotHostPart, _ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let slot = try core.slotParameter(context)
        let body = try await core.body(request, context, limit: core.configuration.maximumEnvelopeBytes)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: body)
        _ = try core.envelope(body)
        switch try await core.store.putSlotPart(part, slot, owner: mailbox, bytes: body, now: core.nowSeconds) {
        case .accepted: return Response(status: .created)
        case .alreadyUsed: throw core.refuse(.slotAlreadyUsed, "this pairing slot already has a \(part.rawValue)")
        case .notFound: throw core.refuse(.notFound, "no such pairing slot, or no request in it yet")
        }
    }

    private func cancel(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let slot = try core.slotParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        guard try await core.store.deleteSlot(slot, owner: mailbox) else {
            throw core.refuse(.notFound, "no such pairing slot")
        }
        return Response(status: .noContent)
    }

    private func putRequest(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let slot = try core.slotParameter(context)
        let claim = try claimHash(request)
        let body = try await core.body(request, context, limit: core.configuration.maximumEnvelopeBytes)
        _ = try core.envelope(body)
        switch try await core.store.putSlotRequest(slot, request: body, claim: claim, now: core.nowSeconds) {
        case .accepted: return Response(status: .created)
        case .alreadyUsed:
            throw core.refuse(.slotAlreadyUsed, "slot already used: another device answered this pairing code first; start pairing again on the computer")
        case .notFound:
            throw core.refuse(.notFound, "no such pairing slot: the pairing code expired or was cancelled")
        }
    }

    private func takeReply(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let slot = try core.slotParameter(context)
        let claim = try claimHash(request)
        switch try await core.store.takeSlotReply(slot, claim: claim, now: core.nowSeconds) {
        case .value(let bytes): return octets(bytes)
        case .empty: return Response(status: .noContent)
        case .forbidden: throw core.refuse(.forbidden, "this pairing slot was claimed by another device")
        case .notFound: throw core.refuse(.notFound, "no such pairing slot: it expired, was cancelled or already answered")
        }
    }

    private func readReceipt(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let slot = try core.slotParameter(context)
        let claim = try claimHash(request)
        switch try await core.store.slotReceipt(slot, claim: claim, now: core.nowSeconds) {
        case .value(let bytes): return octets(bytes)
        case .empty: return Response(status: .noContent)
        case .forbidden: throw core.refuse(.forbidden, "this pairing slot was claimed by another device")
        case .notFound: throw core.refuse(.notFound, "no such pairing slot: it expired, was cancelled or already answered")
        }
    }

    private func claimHash(_ request: Request) throws -> TokenHash {
        guard let text = request.headers[.errandClaim], let secret = try? ByteEncoding.secret(base64URL: text), secret.count == 32 else {
            throw core.refuse(.unauthenticated, "pairing requests need 'Errand-Claim: <base64url of 32 random bytes>'")
        }
        return TokenHash(of: secret)
    }
}
