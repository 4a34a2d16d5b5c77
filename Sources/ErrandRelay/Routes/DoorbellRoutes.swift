import ErrandCrypto
import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Doorbells: how a mailbox's owner asks to be told, without content, that something urgent waits.
///
/// - `GET /v1/push/key` (anyone): the relay's VAPID public key, for browsers' push subscriptions
/// - `POST /v1/mailboxes/:mailbox/doorbells` (owner) `{"kind", "url", "p256dh"?, "auth"?}`
/// - `GET /v1/mailboxes/:mailbox/doorbells` (owner)
/// - `DELETE /v1/mailboxes/:mailbox/doorbells/:doorbell` (owner)
struct DoorbellRoutes {
    let core: RelayCore

    struct KeyResponse: Encodable { let vapidPublicKey: String }
    struct SavedResponse: Encodable { let id: String; let kind: String; let created: Bool }
    struct ListResponse: Encodable {
        struct Item: Encodable { let id: String; let kind: String; let url: String; let createdAt: Int64 }
        let doorbells: [Item]
    }

    func register(on router: Router<RelayRequestContext>) {
        router.get("/v1/push/key") { _, _ in try key() }
        router.post("/v1/mailboxes/:mailbox/doorbells") { request, context in try await save(request, context) }
        router.get("/v1/mailboxes/:mailbox/doorbells") { request, context in try await list(request, context) }
        router.delete("/v1/mailboxes/:mailbox/doorbells/:doorbell") { request, context in try await remove(request, context) }
    }

    private func ringer() throws -> DoorbellRinger {
        guard let ringer = core.doorbells else {
            throw core.refuse(.notFound, "this relay does not ring doorbells (its operator set push.enabled = false)")
        }
        return ringer
    }

    private func key() throws -> Response {
        try json(KeyResponse(vapidPublicKey: ringer().vapid.publicKeyText))
    }

    private func save(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let ringer = try ringer()
        let mailbox = try core.mailboxParameter(context)
        let body = try await core.body(request, context, limit: 4096)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: body)
        let registration = try core.decode(DoorbellRegistration.self, from: body)
        let doorbell: Doorbell
        switch registration.doorbell(for: mailbox, destinations: ringer.destinations, now: core.nowSeconds) {
        case .success(let made): doorbell = made
        case .failure(let error): throw core.refuse(error.code, error.message)
        }
        let maximum = core.configuration.push.maximumPerMailbox
        let saved = try await core.store.saveDoorbell(doorbell, maximum: maximum)
        guard saved != .full else {
            throw core.refuse(.quotaExceeded, "this mailbox already has \(maximum) doorbells; remove one first (errand notify --off)")
        }
        core.logger.info("doorbell saved", metadata: ["mailbox": "\(mailbox.logPrefix)", "doorbell.kind": "\(doorbell.kind.rawValue)"])
        let created = saved == .created
        return try json(SavedResponse(id: doorbell.idText, kind: doorbell.kind.rawValue, created: created), status: created ? .created : .ok)
    }

    private func list(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        _ = try ringer()
        let mailbox = try core.mailboxParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        let doorbells = try await core.store.doorbells(of: mailbox)
        return try json(ListResponse(doorbells: doorbells.map { .init(id: $0.idText, kind: $0.kind.rawValue, url: $0.url, createdAt: $0.createdAt) }))
    }

    private func remove(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        _ = try ringer()
        let mailbox = try core.mailboxParameter(context)
        guard let id = try? ByteEncoding.bytes(base64URL: context.parameters.require("doorbell")), id.count == 16 else {
            throw core.refuse(.badRequest, "a doorbell id is 16 bytes, base64url (22 characters)")
        }
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        guard try await core.store.removeDoorbell(id, from: mailbox) else {
            throw core.refuse(.notFound, "this mailbox has no such doorbell")
        }
        return Response(status: .noContent)
    }
}
