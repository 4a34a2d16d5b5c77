import ErrandCrypto
import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Mailboxes and their send tokens.
///
/// - `POST /v1/mailboxes` `{"key"}`: create, signed by the new key (with a registration token
///   or open registration) or by an existing owner sponsoring a device.
/// - `DELETE /v1/mailboxes/:mailbox`: close (the owner, or the host that created it for a device).
/// - `PUT|DELETE /v1/mailboxes/:mailbox/send-tokens/:hash`, `GET …/send-tokens` (owner).
struct MailboxRoutes {
    let core: RelayCore

    struct CreateRequest: Decodable { let key: String }
    struct CreateResponse: Encodable { let mailbox: String; let created: Bool }
    struct TokensResponse: Encodable { let tokens: [String] }

    func register(on router: Router<RelayRequestContext>) {
        router.post("/v1/mailboxes") { request, context in try await create(request, context) }
        router.delete("/v1/mailboxes/:mailbox") { request, context in try await close(request, context) }
        router.get("/v1/mailboxes/:mailbox/send-tokens") { request, context in try await listTokens(request, context) }
        router.put("/v1/mailboxes/:mailbox/send-tokens/:hash") { request, context in try await addToken(request, context) }
        router.delete("/v1/mailboxes/:mailbox/send-tokens/:hash") { request, context in try await removeToken(request, context) }
    }

    private func create(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let body = try await core.body(request, context, limit: 4096)
        let payload = try core.decode(CreateRequest.self, from: body)
        guard let keyBytes = try? ByteEncoding.bytes(base64URL: payload.key), let owner = try? Ed25519.PublicKey(bytes: keyBytes) else {
            throw core.refuse(.badRequest, "\"key\" must be a base64url Ed25519 public key")
        }
        let signer = try await core.authenticateSigner(request: request, body: body)
        let mailbox = MailboxID(owner: owner)
        var sponsor: MailboxID?
        if signer.key == owner {
            // Self-registration: proof of the key, plus an invitation unless registration is open.
            if try await core.store.mailboxExists(mailbox) {
                return try json(CreateResponse(mailbox: mailbox.description, created: false))
            }
            if !core.configuration.openRegistration {
                guard let bearer = request.headers[.authorization].flatMap(Self.bearerToken),
                      let tokenBytes = try? ByteEncoding.secret(base64URL: bearer) else {
                    throw core.refuse(.unauthenticated, "registration is closed: send 'Authorization: Bearer <token>' with a token from 'errand-relay invite'")
                }
                guard try await core.store.consumeInvite(TokenHash(of: tokenBytes), now: core.nowSeconds) else {
                    throw core.refuse(.forbidden, "the registration token is unknown, used or expired; ask the operator for a new one")
                }
            }
        } else {
            // A device's mailbox, created by the host it is pairing with (rules checked by the store).
            sponsor = MailboxID(owner: signer.key)
        }
        let result = try await core.store.createMailbox(mailbox, ownerKey: owner.bytes, sponsor: sponsor,
                                                        maximumSponsored: core.configuration.maximumSponsoredMailboxes, now: core.nowSeconds)
        switch result {
        case .created, .existed: break
        case .sponsorUnknown:
            throw core.refuse(.forbidden, "the signing key owns no mailbox here, so it cannot create one for another key")
        case .sponsorIsDevice:
            throw core.refuse(.forbidden, "a device's mailbox cannot create further mailboxes; only a host's can")
        case .sponsorLimitReached:
            throw core.refuse(.quotaExceeded, "this owner already created \(core.configuration.maximumSponsoredMailboxes) device mailboxes; close unused ones")
        }
        if result == .created {
            core.metrics.mailboxCreated()
            core.logger.info("mailbox created", metadata: ["mailbox": "\(mailbox.logPrefix)", "mailbox.sponsored": "\(sponsor != nil)"])
        }
        return try json(CreateResponse(mailbox: mailbox.description, created: result == .created), status: result == .created ? .created : .ok)
    }

    private func close(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let body = try await core.body(request, context, limit: 0)
        let signer = try await core.authenticateSigner(request: request, body: body)
        if MailboxID(owner: signer.key) == mailbox {
            guard try await core.store.deleteMailbox(mailbox) else {
                throw core.refuse(.notFound, "mailbox \(mailbox.logPrefix)… does not exist (or was closed)")
            }
            core.logger.info("mailbox closed", metadata: ["mailbox": "\(mailbox.logPrefix)"])
            return Response(status: .noContent)
        }
        // A host closing the mailbox it created for a device (revoked, or a pairing that failed).
        switch try await core.store.deleteSponsoredMailbox(mailbox, sponsor: MailboxID(owner: signer.key)) {
        case true?:
            core.logger.info("device mailbox closed by its host", metadata: ["mailbox": "\(mailbox.logPrefix)"])
            return Response(status: .noContent)
        case false?:
            throw core.refuse(.forbidden, "this key neither owns mailbox \(mailbox.logPrefix)… nor created it for a device")
        case nil:
            throw core.refuse(.notFound, "mailbox \(mailbox.logPrefix)… does not exist (or was closed)")
        }
    }

    private func listTokens(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        let tokens = try await core.store.sendTokens(of: mailbox)
        return try json(TokensResponse(tokens: tokens.map(\.description)))
    }

    private func addToken(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let hash = try tokenHash(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        let maximum = core.configuration.maximumSendTokens
        guard try await core.store.addSendToken(hash, to: mailbox, maximum: maximum, now: core.nowSeconds) else {
            throw core.refuse(.quotaExceeded, "this mailbox already holds \(maximum) send tokens; remove the tokens of devices that are gone (errand host revoke) first")
        }
        return Response(status: .noContent)
    }

    private func removeToken(_ request: Request, _ context: RelayRequestContext) async throws -> Response {
        let mailbox = try core.mailboxParameter(context)
        let hash = try tokenHash(context)
        _ = try await core.authenticateOwner(of: mailbox, request: request, body: core.body(request, context, limit: 0))
        guard try await core.store.removeSendToken(hash, from: mailbox) else {
            throw core.refuse(.notFound, "no such send token for this mailbox")
        }
        core.logger.info("send token revoked", metadata: ["mailbox": "\(mailbox.logPrefix)"])
        return Response(status: .noContent)
    }

    private func tokenHash(_ context: RelayRequestContext) throws -> TokenHash {
        do { return try TokenHash(context.parameters.require("hash")) } catch let error as RelayProtocolError {
            throw core.refuse(.badRequest, error.description)
        }
    }

    /// The token of an `Authorization: Bearer …` header.
    static func bearerToken(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}
