import ErrandCrypto
import ErrandProtocol
import ErrandTransparency
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// What every route shares: configuration, store, live hub, limiters, metrics, clock.
final class RelayCore: Sendable {
    let configuration: RelayConfiguration
    let store: any RelayStore
    let hub: LiveHub
    let watchdog: WriteWatchdog
    let metrics: RelayMetrics
    let logger: Logger
    let ipLimiter: RateLimiter<String>
    let mailboxLimiter: RateLimiter<MailboxSender>
    private let clock: @Sendable () -> Date
    let clientAddresses: ClientAddressResolver
    /// Open connections per client address (``ConnectionLimitChannel``).
    let connectionsPerAddress: ConnectionsPerAddress
    /// Whether the warning about `X-Forwarded-For` from an untrusted peer was given.
    private let warnedOfUntrustedProxy = Atomic<Bool>(false)
    /// `/healthz`'s view of the store, asked at most once a second.
    let storeHealth: StoreHealth
    /// Whether the store hands the hub what it stores, in commit order (then routes need not ring).
    let storePublishesArrivals: Bool

    let audit: AuditLog
    /// The audit log's verifier key (`name+hash+key`): the relay's name in signed requests.
    let identity: String
    /// Deadlines of request bodies being read.
    let bodyDeadlines = BodyDeadlines()
    /// Rings doorbells for urgent envelopes (nil when `push.enabled` is off).
    let doorbells: DoorbellRinger?

    init(configuration: RelayConfiguration, store: any RelayStore, metrics: RelayMetrics, logger: Logger, audit: AuditLog,
         vapid: VAPIDKey? = nil, clock: @escaping @Sendable () -> Date = Date.init) {
        self.audit = audit
        identity = audit.signer.verifier.description
        self.configuration = configuration
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        watchdog = WriteWatchdog(limit: .seconds(configuration.writeTimeoutSeconds))
        clientAddresses = ClientAddressResolver(trustedProxies: configuration.trustedProxies,
                                                ipv6PrefixLength: configuration.ipv6PrefixLength)
        connectionsPerAddress = ConnectionsPerAddress(maximum: configuration.maximumConnectionsPerIP)
        storeHealth = StoreHealth { [store] in try await store.ping() }
        let hub = LiveHub()
        self.hub = hub
        storePublishesArrivals = store.publishArrivals { event in
            switch event {
            case .stored(let mailbox, let envelopes): hub.publish(mailbox, envelopes)
            case .unknown: hub.forgetPublished()
            }
        }
        doorbells = configuration.push.enabled ? vapid.map { vapid in
            DoorbellRinger(configuration: configuration.push, vapid: vapid, store: store, hub: hub, metrics: metrics, logger: logger)
        } : nil
        ipLimiter = RateLimiter(rate: configuration.requestsPerSecondPerIP, burst: configuration.requestBurstPerIP)
        mailboxLimiter = RateLimiter(rate: configuration.postsPerSecondPerMailbox, burst: configuration.postBurstPerMailbox)
    }

    var now: Date { clock() }
    var nowSeconds: Int64 { Int64(clock().timeIntervalSince1970) }

    /// Counts a refusal and returns it for throwing.
    func refuse(_ code: RelayErrorCode, _ message: String, retryAfterSeconds: Int? = nil) -> RelayError {
        metrics.refused(code)
        return RelayError(code, message, retryAfterSeconds: retryAfterSeconds)
    }

    /// Checks an owner-signed request: signature, clock, fresh nonce, and that the signer owns `mailbox`.
    /// - Returns: the verified signature (its key is the owner's).
    func authenticateOwner(of mailbox: MailboxID, request: Request, body: [UInt8]) async throws -> RequestSignature {
        // Cheap checks first: nothing is written for a request that cannot be the owner's.
        let signature = try verifySignature(request: request, body: body)
        guard MailboxID(owner: signature.key) == mailbox else {
            throw refuse(.forbidden, "this key does not own mailbox \(mailbox.logPrefix)…")
        }
        guard try await store.mailboxExists(mailbox) else {
            throw refuse(.notFound, "mailbox \(mailbox.logPrefix)… does not exist (or was closed)")
        }
        try await recordNonce(signature)
        return signature
    }

    /// Checks a signed request's signature, clock and nonce (any signer).
    func authenticateSigner(request: Request, body: [UInt8]) async throws -> RequestSignature {
        let signature = try verifySignature(request: request, body: body)
        try await recordNonce(signature)
        return signature
    }

    private func verifySignature(request: Request, body: [UInt8]) throws -> RequestSignature {
        let signature: RequestSignature
        do {
            signature = try RequestSignature(
                key: request.headers[.errandKey], timestamp: request.headers[.errandTimestamp],
                nonce: request.headers[.errandNonce], signature: request.headers[.errandSignature])
            try signature.verify(method: request.method.rawValue, pathAndQuery: request.head.path ?? "/", body: body,
                                 relay: identity, now: now)
        } catch {
            throw refuse(.unauthenticated, error.description)
        }
        return signature
    }

    private func recordNonce(_ signature: RequestSignature) async throws {
        // Nonces are remembered for as long as their timestamp could be accepted.
        let expiresAt = signature.timestamp + Int64(RequestSignature.maximumClockSkew) + 1
        guard try await store.recordNonce(signer: signature.key.bytes, nonce: signature.nonce, expiresAt: expiresAt) else {
            throw refuse(.replayedRequest, "this signed request was already used; sign every request afresh")
        }
    }

    /// The client's address for per-IP limits (see ``ClientAddressResolver``).
    func clientIP(_ request: Request, _ context: RelayRequestContext) -> String {
        clientIP(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[values: .xForwardedFor])
    }

    /// The client's address for per-IP limits; warns once when `X-Forwarded-For` comes from a
    /// peer that is not a trusted proxy (behind such a proxy every client shares its limits).
    func clientIP(peer: String?, forwardedFor: [String]) -> String {
        if !forwardedFor.isEmpty, let peer, !clientAddresses.isTrustedProxy(peer),
           !warnedOfUntrustedProxy.exchange(true, ordering: .relaxed) {
            logger.warning("""
                requests from \(peer) carry X-Forwarded-For, but \(peer) is not in trusted_proxies: if the relay is behind \
                that proxy, every client behind it shares one set of per-IP limits; add the proxy's address to trusted_proxies \
                (said once)
                """)
        }
        return clientAddresses.clientIP(peer: peer, forwardedFor: forwardedFor)
    }

    /// What the connection from `peer` counts against in ``connectionsPerAddress``; nil for a
    /// trusted proxy (it carries many clients) or an in-process connection.
    func connectionLimitKey(peer: String?) -> String? {
        guard let peer, !clientAddresses.isTrustedProxy(peer) else { return nil }
        return clientAddresses.limitKey(peer)
    }

    /// Per-IP limit for every request; `cost` more for a request that does the work of several
    /// (a batch of envelopes counts as one request per envelope).
    func limitClient(_ ip: String, cost: Double = 1) async throws {
        let key = clientAddresses.limitKey(ip)
        let wait = try await waitTime(
            shared: Self.sharedKey("ip", [UInt8](key.utf8)), rate: configuration.requestsPerSecondPerIP, burst: configuration.requestBurstPerIP,
            cost: cost, local: { ipLimiter.acquire(key, cost: cost) })
        if let wait {
            throw refuse(.rateLimited, "too many requests from this address; retry in \(wait) s", retryAfterSeconds: wait)
        }
    }

    /// Per-mailbox limit for posts, per send token: strangers guessing tokens cannot use up the
    /// mailbox's allowance of its real senders.
    func limitMailbox(_ mailbox: MailboxID, token: TokenHash) async throws {
        let wait = try await waitTime(
            shared: Self.sharedKey("post", mailbox.bytes + token.bytes), rate: configuration.postsPerSecondPerMailbox,
            burst: configuration.postBurstPerMailbox, cost: 1, local: { mailboxLimiter.acquire(MailboxSender(mailbox: mailbox, token: token)) })
        if let wait {
            throw refuse(.rateLimited, "too many envelopes for this mailbox; retry in \(wait) s", retryAfterSeconds: wait)
        }
    }

    /// Takes a token from the store's shared bucket when the store keeps rate limits (several
    /// nodes), otherwise from this node's; `nil` when allowed, else the seconds to wait.
    private func waitTime(shared key: @autoclosure () -> [UInt8], rate: Double, burst: Double, cost: Double,
                          local: () -> Int?) async throws -> Int? {
        guard store.sharesRateLimits else { return local() }
        guard rate > 0 else { return nil }
        return try await store.takeRateToken(key(), rate: rate, burst: burst, cost: cost)
    }

    /// The key of a bucket kept in a shared store: a hash, so no address or mailbox id is stored as such.
    static func sharedKey(_ kind: String, _ value: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(Array("errand rate limit \(kind)\u{0}".utf8) + value).prefix(16))
    }
}

/// The key of the per-mailbox post limit.
struct MailboxSender: Hashable, Sendable {
    let mailbox: MailboxID
    let token: TokenHash
}

extension HTTPField.Name {
    static let errandKey = HTTPField.Name(RequestSignature.keyHeader)!
    static let errandTimestamp = HTTPField.Name(RequestSignature.timestampHeader)!
    static let errandNonce = HTTPField.Name(RequestSignature.nonceHeader)!
    static let errandSignature = HTTPField.Name(RequestSignature.signatureHeader)!
    static let errandClaim = HTTPField.Name("Errand-Claim")!
    static let errandUrgent = HTTPField.Name("Errand-Urgent")!
    static let errandUrgentItems = HTTPField.Name("Errand-Urgent-Items")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}
