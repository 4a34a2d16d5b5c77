public import AsyncHTTPClient
public import ErrandCrypto
public import ErrandProtocol
import Foundation
public import Logging
public import NIOCore
import NIOHTTP1
import Synchronization

/// The relay's HTTP API for hosts and companions: mailboxes, send tokens, envelopes, pairing
/// slots. Owner requests are signed (``RequestSignature``); posts carry a send token only.
///
/// Idempotent calls (posts, reads, acks) retry transient failures with jittered backoff;
/// every refusal surfaces as ``RelayClientError`` with the relay's code and message.
public struct RelayClient: Sendable {
    /// The relay's base URL, e.g. `http://127.0.0.1:8080`.
    public let baseURL: String
    let httpClient: HTTPClient
    let logger: Logger
    /// How many times an idempotent call is tried before giving up.
    public var maximumAttempts = 5
    /// Per-request timeout.
    public var timeout: TimeAmount = .seconds(30)
    /// The relay's verifier key, which signed requests name (pinned, or fetched once; shared by copies).
    private let identity = RelayIdentity()
    /// The verifier key pinned for this relay (at pairing), if any: signed requests always name it.
    public let pinnedRelayKey: String?

    /// The HTTP client relay clients share unless given one: it does not retry refused
    /// connections itself (``RelayClient`` retries with its own backoff, so an unreachable relay
    /// is reported in seconds, not at the request timeout) and gives up connecting after 10 s.
    public static let sharedHTTPClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Whether two relay addresses name the same relay (as a client would use them: trailing
    /// slashes aside).
    public static func sameRelay(_ a: String, _ b: String) -> Bool {
        func trimmed(_ url: String) -> Substring {
            var url = Substring(url)
            while url.hasSuffix("/") { url.removeLast() }
            return url
        }
        return trimmed(a) == trimmed(b)
    }

    /// Whether `url` is plain `http://` to a machine other than this one: its traffic (sealed
    /// envelopes, but also tokens, timing and sizes) crosses the network without TLS.
    /// Loopback (`localhost`, 127.0.0.0/8, `::1`) is not counted.
    public static func isUnencryptedRemote(_ url: String) -> Bool {
        guard let parsed = URL(string: url), parsed.scheme?.lowercased() == "http" else { return false }
        var host = (parsed.host ?? "").lowercased()
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return false }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }), octets[0] == "127" { return false }
        return true
    }

    /// - Parameter pinnedRelayKey: the relay's audit-log verifier key as pinned at pairing.
    ///   Signed requests then always name it, so they are good at that relay only, whatever a
    ///   relay at this address claims; without one, the key is fetched from the relay once.
    public init(baseURL: String, pinnedRelayKey: String? = nil, httpClient: HTTPClient = RelayClient.sharedHTTPClient,
                logger: Logger = Logger(label: "errand.relay-client")) {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.pinnedRelayKey = pinnedRelayKey
        self.httpClient = httpClient
        self.logger = logger
        identity.value.withLock { $0 = pinnedRelayKey }
    }

    // MARK: Health

    /// Whether the relay answers `/healthz` with 200.
    public func isHealthy() async -> Bool {
        (try? await send(.GET, "/healthz", retry: false).status) == 200
    }

    /// Whether the relay serves the web companion at `/app/`: false when it answers 404 (turned
    /// off, or a relay from before the web companion), nil when it could not be asked.
    public func servesWebCompanion() async -> Bool? {
        do {
            return try await send(.GET, "/app/", retry: false).status == 200
        } catch {
            return error.status == 404 ? false : nil
        }
    }

    // MARK: Audit log (public reads)

    /// The relay's audit-log verifier key (`name+hash+key`).
    public func auditVerifierKey() async throws(RelayClientError) -> String {
        String(decoding: try await send(.GET, "/v1/log/key").body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The latest signed checkpoint (a C2SP signed note).
    public func auditCheckpoint() async throws(RelayClientError) -> String {
        String(decoding: try await send(.GET, "/checkpoint").body, as: UTF8.self)
    }

    /// The bytes at a public path of the relay (tiles, entry bundles).
    public func raw(path: String) async throws(RelayClientError) -> [UInt8] {
        try await send(.GET, path).body
    }

    /// The index of the integrated leaf with this leaf hash, or nil.
    public func auditLeafIndex(leafHash: [UInt8]) async throws(RelayClientError) -> Int64? {
        struct Answer: Decodable { let index: Int64 }
        do {
            return try decode(Answer.self, try await send(.GET, "/v1/log/leaf?hash=\(ByteEncoding.base64URL(leafHash))")).index
        } catch where error.code == .notFound {
            return nil
        }
    }

    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
    public func auditInclusionProof(index: Int64, size: Int64) async throws(RelayClientError) -> [[UInt8]] {
        try proof(try await send(.GET, "/v1/log/inclusion?index=\(index)&size=\(size)"))
    }

    /// RFC 9162 consistency proof between sizes.
    public func auditConsistencyProof(from size1: Int64, to size2: Int64) async throws(RelayClientError) -> [[UInt8]] {
        try proof(try await send(.GET, "/v1/log/consistency?from=\(size1)&to=\(size2)"))
    }

    private func proof(_ response: RawResponse) throws(RelayClientError) -> [[UInt8]] {
        struct Answer: Decodable { let proof: [String] }
        let answer = try decode(Answer.self, response)
        var hashes: [[UInt8]] = []
        for text in answer.proof {
            guard let data = Data(base64Encoded: text) else { throw RelayClientError(.protocolViolation, "a proof hash is not base64") }
            hashes.append(Array(data))
        }
        return hashes
    }

    // MARK: Mailboxes

    /// Creates (or confirms) the mailbox owned by `owner`. `invite` is a registration token from
    /// `errand-relay invite`, needed unless the relay has open registration.
    /// - Returns: the mailbox id and whether it was created now.
    @discardableResult
    public func createMailbox(owner: Ed25519.SecretKey, invite: String? = nil) async throws(RelayClientError) -> (MailboxID, created: Bool) {
        var headers: [(String, String)] = []
        if let invite { headers.append(("Authorization", "Bearer \(invite)")) }
        return try await createMailbox(for: owner.publicKey, signer: owner, headers: headers)
    }

    /// Creates a mailbox for a device's key, sponsored by `sponsor` (an existing mailbox owner).
    @discardableResult
    public func createDeviceMailbox(for device: Ed25519.PublicKey, sponsor: Ed25519.SecretKey) async throws(RelayClientError) -> (MailboxID, created: Bool) {
        try await createMailbox(for: device, signer: sponsor, headers: [])
    }

    private func createMailbox(for key: Ed25519.PublicKey, signer: Ed25519.SecretKey, headers: [(String, String)]) async throws(RelayClientError) -> (MailboxID, created: Bool) {
        struct Body: Encodable { let key: String }
        struct Answer: Decodable { let mailbox: String; let created: Bool }
        let body = try encode(Body(key: ByteEncoding.base64URL(key.bytes)))
        let response = try await send(.POST, "/v1/mailboxes", body: body, signer: signer, headers: headers, retry: false)
        let answer = try decode(Answer.self, response)
        return (MailboxID(owner: key), answer.created)
    }

    /// Closes the owner's mailbox, deleting everything in it.
    public func closeMailbox(owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.DELETE, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))", signer: owner)
    }

    /// Closes the mailbox of `device` that `sponsor` (its host) created, deleting everything in
    /// it (a revoked device, a pairing that failed). One already gone counts as closed.
    public func closeDeviceMailbox(of device: Ed25519.PublicKey, sponsor: Ed25519.SecretKey) async throws(RelayClientError) {
        do {
            _ = try await send(.DELETE, "/v1/mailboxes/\(MailboxID(owner: device))", signer: sponsor)
        } catch where error.code == .notFound {}
    }

    // MARK: Send tokens

    /// Lets the holder of `token` post into the owner's mailbox.
    public func addSendToken(_ token: TokenHash, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.PUT, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/send-tokens/\(token)", signer: owner)
    }

    /// Revokes a send token: posts with it are refused from now on.
    public func removeSendToken(_ token: TokenHash, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.DELETE, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/send-tokens/\(token)", signer: owner)
    }

    // MARK: Doorbells

    /// A doorbell as the relay lists it.
    public struct DoorbellInfo: Sendable, Decodable, Equatable {
        public let id: String
        public let kind: String
        public let url: String
        public let createdAt: Int64
    }

    /// Registers (or updates) a doorbell for the owner's mailbox: `kind` is `webpush`, `ntfy` or
    /// `webhook`; `p256dh` and `auth` (base64url) only for Web Push.
    /// - Returns: the doorbell's id.
    @discardableResult
    public func saveDoorbell(kind: String, url: String, p256dh: String? = nil, auth: String? = nil,
                             owner: Ed25519.SecretKey) async throws(RelayClientError) -> String {
        struct Body: Encodable { let kind: String; let url: String; let p256dh: String?; let auth: String? }
        struct Answer: Decodable { let id: String }
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(Body(kind: kind, url: url, p256dh: p256dh, auth: auth))) } catch {
            throw RelayClientError(.protocolViolation, "cannot encode the doorbell")
        }
        let response = try await send(.POST, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/doorbells", body: body, signer: owner,
                                      headers: [("Content-Type", "application/json")])
        return try decode(Answer.self, response).id
    }

    /// The owner's doorbells.
    public func doorbells(owner: Ed25519.SecretKey) async throws(RelayClientError) -> [DoorbellInfo] {
        struct Answer: Decodable { let doorbells: [DoorbellInfo] }
        return try decode(Answer.self, try await send(.GET, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/doorbells", signer: owner)).doorbells
    }

    /// Removes one of the owner's doorbells.
    public func removeDoorbell(_ id: String, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.DELETE, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/doorbells/\(id)", signer: owner)
    }

    /// The relay's VAPID public key (base64url), for a browser's push subscription.
    public func pushKey() async throws(RelayClientError) -> String {
        struct Answer: Decodable { let vapidPublicKey: String }
        return try decode(Answer.self, try await send(.GET, "/v1/push/key")).vapidPublicKey
    }

    /// The hashes of the owner's send tokens.
    public func sendTokens(owner: Ed25519.SecretKey) async throws(RelayClientError) -> [TokenHash] {
        struct Answer: Decodable { let tokens: [String] }
        let response = try await send(.GET, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/send-tokens", signer: owner)
        return try decode(Answer.self, response).tokens.compactMap { try? TokenHash($0) }
    }

    // MARK: Envelopes

    /// Where a posted envelope landed.
    public struct Receipt: Sendable, Equatable {
        public let sequence: Int64
        /// The relay already had this envelope (a retried post).
        public let duplicate: Bool

        public init(sequence: Int64, duplicate: Bool) {
            self.sequence = sequence
            self.duplicate = duplicate
        }
    }

    /// Posts an envelope; when this returns, the relay has it on disk. Safe to retry.
    /// - Parameter urgent: ring the mailbox's doorbells if nobody is connected to it.
    public func post(_ envelope: Envelope, to mailbox: MailboxID, token: SendToken, urgent: Bool = false) async throws(RelayClientError) -> Receipt {
        struct Answer: Decodable { let seq: Int64; let duplicate: Bool }
        var headers = [("Authorization", "Bearer \(token.bearer)"), ("Content-Type", "application/octet-stream")]
        if urgent { headers.append((EnvelopeBatch.urgentHeader, "1")) }
        let response = try await send(.POST, "/v1/mailboxes/\(mailbox)/envelopes", body: envelope.encoded, headers: headers)
        let answer = try decode(Answer.self, response)
        return Receipt(sequence: answer.seq, duplicate: answer.duplicate)
    }

    /// Posts several envelopes (each to its mailbox, with its token) in as few requests as the
    /// batch limits allow (``EnvelopeBatch/maximumItems``, ``EnvelopeBatch/maximumBodyBytes``),
    /// each one commit at the relay. Returns one result per item, in order: a receipt, or the
    /// refusal of that item. After a refusal for a mailbox, its later items are refused with
    /// `not_attempted` and not stored, so what is stored keeps its order. A relay without batches
    /// (404) gets one post per envelope. Safe to retry (ids dedupe).
    /// - Throws: when a request as a whole fails (unreachable, malformed, refused).
    public func post(batch items: [EnvelopeBatch.Item]) async throws(RelayClientError) -> [Result<Receipt, RelayClientError>] {
        var results: [Result<Receipt, RelayClientError>] = []
        results.reserveCapacity(items.count)
        var refused: Set<MailboxID> = []
        var start = items.startIndex
        var batches = true
        while start < items.endIndex {
            var end = start
            var bytes = 0
            while end < items.endIndex, end - start < EnvelopeBatch.maximumItems,
                  end == start || bytes + EnvelopeBatch.itemHeaderLength + items[end].envelope.count <= EnvelopeBatch.maximumBodyBytes {
                bytes += EnvelopeBatch.itemHeaderLength + items[end].envelope.count
                end += 1
            }
            let chunk = items[start..<end]
            start = end
            let sending = chunk.filter { !refused.contains($0.mailbox) }
            var answers: [Result<Receipt, RelayClientError>] = []
            if batches && !sending.isEmpty {
                do { answers = try await postSplitting(Array(sending)) } catch where error.code == .notFound && error.status == 404 {
                    batches = false
                }
            }
            if !batches {
                // One post each, keeping the rule that a refusal stops the mailbox.
                var stopped: Set<MailboxID> = []
                for item in sending {
                    guard !stopped.contains(item.mailbox) else {
                        answers.append(.failure(Self.notAttempted(item.mailbox)))
                        continue
                    }
                    do throws(RelayClientError) {
                        let envelope: Envelope
                        do { envelope = try Envelope(parsing: item.envelope) } catch {
                            throw RelayClientError(.refused(.invalidEnvelope), error.description, status: 400)
                        }
                        answers.append(.success(try await post(envelope, to: item.mailbox, token: item.token, urgent: item.urgent)))
                    } catch {
                        guard case .refused = error.kind else { throw error }
                        stopped.insert(item.mailbox)
                        answers.append(.failure(error))
                    }
                }
            }
            var next = answers.makeIterator()
            let heldBack = refused  // the mailboxes whose items were not sent in this request
            for item in chunk {
                if heldBack.contains(item.mailbox) {
                    results.append(.failure(Self.notAttempted(item.mailbox)))
                    continue
                }
                guard let answer = next.next() else { throw RelayClientError(.protocolViolation, "the relay answered too few results") }
                if case .failure = answer { refused.insert(item.mailbox) }
                results.append(answer)
            }
        }
        return results
    }

    /// One batch, halved again and again while something in front of the relay (a proxy with a
    /// smaller body limit than the relay's) refuses its size with 413, down to single envelopes;
    /// only a single envelope refused for its size is reported, as that envelope's refusal.
    /// A mailbox refused in the first half is not attempted in the second, as within one batch.
    private func postSplitting(_ items: [EnvelopeBatch.Item]) async throws(RelayClientError) -> [Result<Receipt, RelayClientError>] {
        do {
            return try await postOnce(batch: items)
        } catch where error.status == 413 {
            guard items.count > 1 else {
                return [.failure(RelayClientError(.refused(.tooLarge), "the envelope is larger than the relay (or a proxy in front of it) accepts: \(error.message)",
                                                  status: 413))]
            }
            logger.debug("a batch was refused for its size; posting it in halves", metadata: ["envelopes": "\(items.count)"])
            let half = items.count / 2
            let firstItems = Array(items[..<half]), rest = Array(items[half...])
            let first = try await postSplitting(firstItems)
            var stopped: Set<MailboxID> = []
            for (item, result) in zip(firstItems, first) { if case .failure = result { stopped.insert(item.mailbox) } }
            let sending = rest.filter { !stopped.contains($0.mailbox) }
            var later = (sending.isEmpty ? [] : try await postSplitting(sending)).makeIterator()
            var results = first
            for item in rest {
                if stopped.contains(item.mailbox) {
                    results.append(.failure(Self.notAttempted(item.mailbox)))
                } else {
                    guard let answer = later.next() else { throw RelayClientError(.protocolViolation, "the relay answered too few results") }
                    results.append(answer)
                }
            }
            return results
        }
    }

    /// One `POST /v1/envelopes` request.
    private func postOnce(batch items: [EnvelopeBatch.Item]) async throws(RelayClientError) -> [Result<Receipt, RelayClientError>] {
        var headers = [("Content-Type", EnvelopeBatch.contentType)]
        if let urgent = EnvelopeBatch.urgentItems(items) { headers.append((EnvelopeBatch.urgentItemsHeader, urgent)) }
        let response = try await send(.POST, "/v1/envelopes", body: EnvelopeBatch(items: items).encoded, headers: headers)
        let answer = try decode(EnvelopeBatch.Response.self, response)
        guard answer.results.count == items.count else {
            throw RelayClientError(.protocolViolation, "the relay answered \(answer.results.count) results for \(items.count) envelopes")
        }
        return answer.results.map { result in
            if result.isStored, let sequence = result.seq {
                return .success(Receipt(sequence: sequence, duplicate: result.status == 200))
            }
            let code = result.code.flatMap(RelayErrorCode.init(rawValue:)) ?? (result.status == 429 ? .rateLimited : .badRequest)
            return .failure(RelayClientError(.refused(code), result.message ?? "the relay refused this envelope (HTTP \(result.status))",
                                             status: result.status, retryAfterSeconds: result.retryAfterSeconds))
        }
    }

    private static func notAttempted(_ mailbox: MailboxID) -> RelayClientError {
        RelayClientError(.refused(.notAttempted), "an earlier envelope for mailbox \(mailbox.logPrefix)… was refused; this one was not sent, to keep the order",
                         status: 424)
    }

    /// A page of stored envelopes.
    public struct Page: Sendable {
        public let envelopes: [(sequence: Int64, envelope: Envelope)]
        /// More are waiting after the last one.
        public let more: Bool
    }

    /// Envelopes waiting in the owner's mailbox after `after`, oldest first.
    public func fetch(owner: Ed25519.SecretKey, after: Int64 = 0, limit: Int = 100) async throws(RelayClientError) -> Page {
        struct Answer: Decodable {
            struct Item: Decodable { let seq: Int64; let envelope: String }
            let envelopes: [Item]
            let more: Bool
        }
        let response = try await send(.GET, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/envelopes?after=\(after)&limit=\(limit)", signer: owner)
        let answer = try decode(Answer.self, response)
        var envelopes: [(Int64, Envelope)] = []
        for item in answer.envelopes {
            guard let bytes = try? ByteEncoding.bytes(base64URL: item.envelope), let envelope = try? Envelope(parsing: bytes) else {
                throw RelayClientError(.protocolViolation, "the relay returned an envelope that does not parse")
            }
            envelopes.append((item.seq, envelope))
        }
        return Page(envelopes: envelopes, more: answer.more)
    }

    /// Deletes delivered envelopes from the owner's mailbox.
    @discardableResult
    public func acknowledge(_ ids: [EnvelopeID], owner: Ed25519.SecretKey) async throws(RelayClientError) -> Int {
        struct Body: Encodable { let ids: [String] }
        struct Answer: Decodable { let deleted: Int }
        let body = try encode(Body(ids: ids.map(\.description)))
        let response = try await send(.POST, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/acks", body: body, signer: owner)
        return try decode(Answer.self, response).deleted
    }

    // MARK: Pairing slots (host side)

    /// Opens a pairing slot for `ttl` seconds; returns its expiry (Unix seconds).
    @discardableResult
    public func openPairingSlot(_ slot: PairingSlotID, owner: Ed25519.SecretKey, ttl: Int64) async throws(RelayClientError) -> Int64 {
        struct Body: Encodable { let slot: String; let ttl: Int64 }
        struct Answer: Decodable { let expiresAt: Int64 }
        let body = try encode(Body(slot: slot.description, ttl: ttl))
        let response = try await send(.POST, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/pairing-slots", body: body, signer: owner, retry: false)
        return try decode(Answer.self, response).expiresAt
    }

    /// The companion's sealed request in the slot, or nil while there is none.
    public func pairingRequest(_ slot: PairingSlotID, owner: Ed25519.SecretKey) async throws(RelayClientError) -> [UInt8]? {
        let response = try await send(.GET, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/pairing-slots/\(slot)/request", signer: owner)
        return response.status == 204 ? nil : response.body
    }

    /// Puts the host's sealed reply into the slot.
    /// Puts the host's sealed receipt for the request it read (before asking the person).
    public func putPairingReceipt(_ receipt: Envelope, slot: PairingSlotID, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.PUT, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/pairing-slots/\(slot)/receipt",
                           body: receipt.encoded, signer: owner, retry: false)
    }

    public func putPairingReply(_ reply: Envelope, slot: PairingSlotID, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.PUT, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/pairing-slots/\(slot)/reply",
                           body: reply.encoded, signer: owner, retry: false)
    }

    /// Closes a slot early.
    public func cancelPairingSlot(_ slot: PairingSlotID, owner: Ed25519.SecretKey) async throws(RelayClientError) {
        _ = try await send(.DELETE, "/v1/mailboxes/\(MailboxID(owner: owner.publicKey))/pairing-slots/\(slot)", signer: owner)
    }

    // MARK: Pairing slots (companion side)

    /// Puts the companion's sealed request into the slot; `claim` (32 random bytes, kept secret)
    /// is needed later to collect the reply.
    public func putPairingRequest(_ request: Envelope, slot: PairingSlotID, claim: SecretBytes) async throws(RelayClientError) {
        _ = try await send(.PUT, "/v1/pairing-slots/\(slot)/request", body: request.encoded,
                           headers: [("Errand-Claim", ByteEncoding.base64URL(claim))], retry: false)
    }

    /// The host's sealed reply, or nil while there is none. Not retried: the relay hands the reply
    /// out once and deletes the slot, so a retry after a lost answer would only find it gone.
    /// The host's receipt for this device's request, or nil while there is none (the slot stays).
    public func pairingReceipt(slot: PairingSlotID, claim: SecretBytes) async throws(RelayClientError) -> [UInt8]? {
        let response = try await send(.GET, "/v1/pairing-slots/\(slot)/receipt", headers: [("Errand-Claim", ByteEncoding.base64URL(claim))],
                                      retry: false)
        return response.status == 204 ? nil : response.body
    }

    public func takePairingReply(slot: PairingSlotID, claim: SecretBytes) async throws(RelayClientError) -> [UInt8]? {
        let response = try await send(.GET, "/v1/pairing-slots/\(slot)/reply", headers: [("Errand-Claim", ByteEncoding.base64URL(claim))],
                                      retry: false)
        return response.status == 204 ? nil : response.body
    }

    // MARK: Transport

    struct RawResponse: Sendable {
        let status: Int
        let body: [UInt8]
    }

    /// The relay's verifier key, as signed requests name it: the pinned one, or from
    /// `/v1/log/key` the first time.
    func relayIdentity() async throws(RelayClientError) -> String {
        if let known = identity.value.withLock({ $0 }) { return known }
        let fetched = try await auditVerifierKey()
        guard !fetched.isEmpty, !fetched.contains("\n") else {
            throw RelayClientError(.protocolViolation, "the relay's /v1/log/key answer is not a verifier key")
        }
        identity.value.withLock { $0 = fetched }
        return fetched
    }

    /// Forgets a fetched (not pinned) relay key, so the next signature fetches it again; false
    /// when the key is pinned or was not fetched yet.
    func forgetFetchedRelayIdentity() -> Bool {
        guard pinnedRelayKey == nil else { return false }
        return identity.value.withLock { known in
            defer { known = nil }
            return known != nil
        }
    }

    /// Sends a request (signed when `signer` is given), retrying transient failures when `retry`.
    func send(_ method: HTTPMethod, _ pathAndQuery: String, body: [UInt8] = [], signer: Ed25519.SecretKey? = nil,
              headers: [(String, String)] = [], retry: Bool = true) async throws(RelayClientError) -> RawResponse {
        var backoff = Backoff()
        var attempt = 1
        var refreshedIdentity = false
        while true {
            do {
                return try await sendOnce(method, pathAndQuery, body: body, signer: signer, headers: headers)
            } catch where signer != nil && error.code == .unauthenticated && !refreshedIdentity && identity.value.withLock({ $0 }) != nil {
                refreshedIdentity = true
                if let pinnedRelayKey {
                    // Signed for the pinned key: say so if the relay here now has another one.
                    if let current = try? await auditVerifierKey(), current != pinnedRelayKey {
                        throw RelayClientError(.refused(.unauthenticated),
                                               "the relay at \(baseURL) signs its log with \(current.prefix(60))…, not with the key pinned for it "
                                                   + "(\(pinnedRelayKey.prefix(60))…): it is another relay, or it was reinstalled with a new key. "
                                                   + "Requests signed for the pinned key are refused there; if the change is expected, set this "
                                                   + "device up (host) or pair it (companion) with that relay again.",
                                               status: error.status)
                    }
                    throw error
                }
                // Signed for the relay's key as it was when first fetched: the relay may have a new
                // one (a new installation at the same address). Fetch it again and sign once more.
                identity.value.withLock { $0 = nil }
            } catch {
                guard retry, error.isTransient, attempt < maximumAttempts else { throw error }
                let delay = error.retryAfterSeconds.map { Duration.seconds($0) } ?? backoff.next()
                logger.debug("relay request failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(error.message)"])
                try? await Task.sleep(for: delay)
                attempt += 1
            }
        }
    }

    private func sendOnce(_ method: HTTPMethod, _ pathAndQuery: String, body: [UInt8], signer: Ed25519.SecretKey?,
                          headers: [(String, String)]) async throws(RelayClientError) -> RawResponse {
        var request = HTTPClientRequest(url: baseURL + pathAndQuery)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let signer {
            // Signed afresh on every attempt: each try needs its own nonce.
            let signature = RequestSignature(signing: method.rawValue, pathAndQuery: pathAndQuery, body: body,
                                             for: try await relayIdentity(), with: signer)
            for (name, value) in signature.headers { request.headers.add(name: name, value: value) }
        }
        if !body.isEmpty {
            request.body = .bytes(ByteBuffer(bytes: body))
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
                request.headers.add(name: "Content-Type", value: "application/json")
            }
        }
        let status: Int
        let bytes: [UInt8]
        let retryAfter: Int?
        do {
            let response = try await httpClient.execute(request, timeout: timeout)
            status = Int(response.status.code)
            retryAfter = response.headers.first(name: "Retry-After").flatMap { Int($0) }
            // Pages are at most about 2 MiB of envelopes (base64 in JSON): 8 MiB is ample.
            let buffer = try await response.body.collect(upTo: 8 * 1024 * 1024)
            bytes = Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw RelayClientError(.protocolViolation, "the relay's answer is larger than 8 MiB")
        } catch {
            throw RelayClientError(.unreachable, "cannot reach the relay at \(baseURL): \(Self.describe(error))")
        }
        guard (200..<300).contains(status) else {
            if let refusal = try? JSONDecoder().decode(RelayErrorBody.self, from: Data(bytes)),
               let code = RelayErrorCode(rawValue: refusal.error.code) {
                throw RelayClientError(.refused(code), refusal.error.message, status: status,
                                       retryAfterSeconds: refusal.error.retryAfterSeconds ?? retryAfter)
            }
            let code: RelayErrorCode = status == 429 ? .rateLimited : status >= 500 ? .unavailable : .badRequest
            throw RelayClientError(.refused(code), "the relay answered HTTP \(status)", status: status, retryAfterSeconds: retryAfter)
        }
        return RawResponse(status: status, body: bytes)
    }

    private func encode(_ value: some Encodable) throws(RelayClientError) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(value)) } catch {
            throw RelayClientError(.protocolViolation, "cannot encode the request")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: RawResponse) throws(RelayClientError) -> T {
        do { return try JSONDecoder().decode(type, from: Data(response.body)) } catch {
            throw RelayClientError(.protocolViolation, "the relay's answer (HTTP \(response.status)) is not the expected JSON")
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}

/// The relay's verifier key once known, shared by the copies of a ``RelayClient``.
private final class RelayIdentity: Sendable {
    let value = Mutex<String?>(nil)
}
