import ErrandCrypto
import Foundation
public import ErrandTransparency
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// Builds the relay application from a configuration and a store. `errand-relay serve` and the
/// tests use this one function.
public enum RelayServer {
    /// The application, ready to `runService()` (or to test in process).
    /// - Parameters:
    ///   - onListening: called with the bound port once connections are accepted.
    public static func buildApplication(
        configuration: RelayConfiguration,
        store: any RelayStore,
        logger: Logger,
        auditSigner: NoteSigner? = nil,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        // Without a signer (tests), the log signs with a key that lives as long as the process.
        let signer = try auditSigner ?? NoteSigner(name: "errand-relay/ephemeral", secretKey: Ed25519.SecretKey())
        let audit = AuditLog(store: store, signer: signer)
        let vapid = try configuration.push.enabled ? loadVAPIDKey(configuration) : nil
        let core = RelayCore(configuration: configuration, store: store, metrics: RelayMetrics(), logger: logger, audit: audit, vapid: vapid)
        let router = makeRouter(core: core, webApp: try loadWebApp(configuration, logger: logger))

        let http1 = HTTP1Channel.Configuration(
            idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 8 * 1024, maxHeaderListSize: 32 * 1024, maxHeaderFieldCount: 100))
        let tls = try configuration.tlsCertificatePath.flatMap { certificate in
            try configuration.tlsKeyPath.map { key in try tlsConfiguration(certificate: certificate, key: key) }
        }
        let firstRequestDeadline = TimeAmount.seconds(Int64(min(configuration.firstRequestSeconds, configuration.idleTimeoutSeconds)))
        let server = HTTPServerBuilder { responder in
            let http = FirstRequestDeadlineChannel(
                base: RelayHTTPChannel(responder: responder, core: core, http1: http1),
                deadline: firstRequestDeadline, maximumHeadBytes: 40 * 1024)
            // Counted before TLS, so a refused connection costs no handshake.
            if let tls { return ConnectionLimitChannel(base: try TLSChannel(http, tlsConfiguration: tls), core: core, plainHTTP: false) }
            return ConnectionLimitChannel(base: http, core: core, plainHTTP: true)
        }
        var services: [any Service] = [
            StoreCloser(store: store, logger: logger),
            ArrivalWatcher(core: core),
            AuditIntegrationService(log: audit, interval: .milliseconds(250), logger: logger),
            ExpirySweeper(core: core, interval: .seconds(Int64(configuration.sweepIntervalSeconds))),
            WriteWatchdogService(watchdog: core.watchdog, core: core),
        ]
        if let doorbells = core.doorbells { services.append(doorbells) }  // stopped first: services stop in reverse order
        return Application(
            router: router,
            server: server,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "errand-relay",
                backlog: 1024,
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maximumConnections)),
            services: services,
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
    }

    static func makeRouter(core: RelayCore, webApp: WebAppFiles? = nil) -> Router<RelayRequestContext> {
        let router = Router(context: RelayRequestContext.self)
        if !core.configuration.webAllowedOrigins.isEmpty {
            router.add(middleware: AllowedOriginsMiddleware(allowedOrigins: Set(core.configuration.webAllowedOrigins)))
        }
        router.add(middleware: BodyDeadlineMiddleware(core: core))
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: ClientLimitMiddleware(core: core))
        if let webApp { router.add(middleware: WebAppMiddleware(files: webApp)) }
        OperationsRoutes(core: core).register(on: router)
        MailboxRoutes(core: core).register(on: router)
        EnvelopeRoutes(core: core).register(on: router)
        PairingRoutes(core: core).register(on: router)
        AuditRoutes(core: core).register(on: router)
        DoorbellRoutes(core: core).register(on: router)
        return router
    }

    /// The web companion's files when `web.enabled`: from `web.root`, or found beside the relay.
    /// A configured folder that cannot be read stops the start; when none is configured and
    /// none is found, the relay starts without `/app/` and says so.
    /// The relay's VAPID key from the data folder, made on first start.
    static func loadVAPIDKey(_ configuration: RelayConfiguration) throws -> VAPIDKey {
        do { return try VAPIDKey.load(dataDirectory: configuration.dataDirectory) } catch {
            throw RelayStartupError("cannot load or create the push key: \(error) (or turn doorbells off with push.enabled = false)")
        }
    }

    static func loadWebApp(_ configuration: RelayConfiguration, logger: Logger) throws -> WebAppFiles? {
        guard configuration.webEnabled else { return nil }
        if let root = configuration.webRoot { return try WebAppFiles.load(root: root) }
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        guard let root = WebAppFiles.locate(executable: executable) else {
            logger.warning("the web companion's files were not found beside the relay: /app/ is not served (set web.root to its web/ folder, or web.enabled = false)")
            return nil
        }
        let files = try WebAppFiles.load(root: root)
        logger.info("serving the web companion at /app/", metadata: ["web.root": "\(files.root)", "web.files": "\(files.files.count)"])
        return files
    }

    /// Loads the certificate chain and key now, so a bad file fails at start with its path.
    static func tlsConfiguration(certificate: String, key: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        let privateKey: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw RelayStartupError("cannot read the TLS certificate \(certificate): \(error)")
        }
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw RelayStartupError("cannot read the TLS key \(key): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }
}

/// A relay command could not do its work (start, audit, carry the audit key); the message names
/// what to fix, and the hint, when there is one, what to do.
public struct RelayStartupError: Error, CustomStringConvertible {
    public let description: String
    /// What to do about it, when there is something to say (printed as one `hint:` line).
    public let hint: String?
    public init(_ description: String, hint: String? = nil) {
        self.description = description
        self.hint = hint
    }
}

/// Closes the store after the server has stopped (services stop in reverse order).
struct StoreCloser: Service {
    let store: any RelayStore
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        try await store.close()
        logger.info("store closed")
    }
}

/// Wakes this node's live connections when another node stores an envelope for them (a store
/// shared by several nodes); returns at once for a store only this node uses.
struct ArrivalWatcher: Service {
    let core: RelayCore

    func run() async throws {
        let hub = core.hub
        await cancelWhenGracefulShutdown {
            try? await core.store.watchArrivals { mailbox in
                if let mailbox { hub.notify(mailbox) } else { hub.notifyEveryone() }
            }
        }
        // A service that returns early would stop the whole relay: wait for the shutdown.
        try? await gracefulShutdown()
    }
}

/// Per-IP rate limit on every HTTP request (health and metrics excepted).
struct ClientLimitMiddleware: RouterMiddleware {
    let core: RelayCore

    func handle(_ request: Request, context: RelayRequestContext, next: (Request, RelayRequestContext) async throws -> Response) async throws -> Response {
        if request.uri.path != "/healthz" && request.uri.path != "/metrics" {
            try await core.limitClient(core.clientIP(request, context))
        }
        return try await next(request, context)
    }
}
