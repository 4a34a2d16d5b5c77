import AsyncHTTPClient
import ErrandCrypto
import ErrandProtocol
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Rings a mailbox's doorbells when an urgent envelope arrives for it while it has no live
/// connection: at most once per ``PushConfiguration/minimumIntervalSeconds`` per mailbox (an
/// urgent envelope inside the interval rings once at its end), never with content. Rings wait
/// in a bounded queue and are sent by a few workers, so a slow push service never slows a post.
final class DoorbellRinger: Service, Sendable {
    /// What every ring says, whatever the envelope: the Web Push payload (encrypted per RFC 8291)
    /// and the ntfy and webhook bodies.
    static let webPushPayload = Array(#"{"errand":"doorbell","v":1}"#.utf8)
    static let ntfyMessage = "Something is ready in Errand. Open the app to read it."
    static let webhookBody = Array(#"{"event":"doorbell","v":1}"#.utf8)
    /// Attempts per doorbell and ring (transport errors, 429 and 5xx are tried again).
    static let attempts = 3

    private struct State {
        var lastRing: [MailboxID: ContinuousClock.Instant] = [:]
        var deferred: Set<MailboxID> = []
    }

    private let configuration: PushConfiguration
    let destinations: PushDestinations
    let vapid: VAPIDKey
    private let store: any RelayStore
    private let hub: LiveHub
    private let metrics: RelayMetrics
    private let logger: Logger
    private let state = Mutex(State())
    /// Set at shutdown: what still waits in the queue is dropped, not sent.
    private let stopping = Mutex(false)
    private let queue: AsyncStream<MailboxID>
    private let enqueue: AsyncStream<MailboxID>.Continuation
    private let httpConfiguration: HTTPClient.Configuration

    init(configuration: PushConfiguration, vapid: VAPIDKey, store: any RelayStore, hub: LiveHub, metrics: RelayMetrics, logger: Logger) {
        self.configuration = configuration
        destinations = PushDestinations(allowedHosts: configuration.allowedHosts, allowHTTP: configuration.allowHTTP)
        self.vapid = vapid
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.logger = logger
        (queue, enqueue) = AsyncStream.makeStream(of: MailboxID.self, bufferingPolicy: .bufferingOldest(configuration.queueLength))
        var http = HTTPClient.Configuration()
        http.redirectConfiguration = .disallow
        http.timeout = .init(connect: .seconds(Int64(configuration.timeoutSeconds)), read: .seconds(Int64(configuration.timeoutSeconds)))
        http.decompression = .disabled
        httpConfiguration = http
    }

    /// An urgent envelope was stored for `mailbox`: ring it if nobody is connected to it. Quick
    /// (called from the post's route).
    func urgentArrived(_ mailbox: MailboxID) {
        guard hub.connectionCount(of: mailbox) == 0 else { return }
        let now = ContinuousClock.now
        let interval = Duration.seconds(configuration.minimumIntervalSeconds)
        let wait = state.withLock { state -> Duration? in
            if let last = state.lastRing[mailbox], now - last < interval {
                // Inside the interval: ring once at its end (unless that is arranged already).
                return state.deferred.insert(mailbox).inserted ? interval - (now - last) : nil
            }
            state.lastRing[mailbox] = now
            if state.lastRing.count > 10_000 { state.lastRing = state.lastRing.filter { now - $0.value < interval } }
            return .zero
        }
        switch wait {
        case .zero?: submit(mailbox)
        case let delay?:
            Task { [self] in
                try? await Task.sleep(for: delay)
                let ring = state.withLock { state -> Bool in
                    state.deferred.remove(mailbox)
                    guard hub.connectionCount(of: mailbox) == 0 else { return false }
                    state.lastRing[mailbox] = .now
                    return true
                }
                if ring { submit(mailbox) }
            }
        case nil: break
        }
    }

    private func submit(_ mailbox: MailboxID) {
        if case .dropped = enqueue.yield(mailbox) {
            metrics.doorbell(.dropped)
            logger.warning("a doorbell ring was dropped: the queue is full", metadata: ["queue": "\(configuration.queueLength)"])
        }
    }

    /// Sends the queued rings, four mailboxes at a time, until the relay shuts down.
    func run() async throws {
        // Made here, so a relay that never runs has no client to shut down.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { workers in
                var running = 0
                for await mailbox in queue {
                    if stopping.withLock({ $0 }) {
                        metrics.doorbell(.dropped)
                        continue
                    }
                    if running >= 4 {
                        await workers.next()
                        running -= 1
                    }
                    running += 1
                    workers.addTask { await self.ring(mailbox, client: client) }
                }
            }
        } onGracefulShutdown: { [self] in
            stopping.withLock { $0 = true }
            enqueue.finish()
        }
        try? await client.shutdown()
    }

    /// Rings every doorbell of `mailbox`.
    func ring(_ mailbox: MailboxID, client: HTTPClient) async {
        let doorbells: [Doorbell]
        do { doorbells = try await store.doorbells(of: mailbox) } catch {
            metrics.doorbell(.failed)
            logger.error("cannot read a mailbox's doorbells", metadata: ["error": "\(error)"])
            return
        }
        await withTaskGroup(of: Void.self) { group in
            for doorbell in doorbells { group.addTask { await self.ring(doorbell, client: client) } }
        }
    }

    private func ring(_ doorbell: Doorbell, client: HTTPClient) async {
        let host = URLComponents(string: doorbell.url)?.host ?? "?"
        for attempt in 1...Self.attempts {
            let outcome = await call(doorbell, client: client)
            switch outcome {
            case .sent:
                metrics.doorbell(.sent)
                return
            case .gone(let status):
                metrics.doorbell(.removed)
                logger.info("a push service no longer knows a doorbell; removing it", metadata: ["host": "\(host)", "status": "\(status)"])
                _ = try? await store.removeDoorbell(doorbell.id, from: doorbell.mailbox)
                return
            case .refused(let reason):
                metrics.doorbell(.failed)
                logger.warning("a doorbell was not rung", metadata: ["host": "\(host)", "reason": "\(reason)"])
                return
            case .retry(let reason):
                guard attempt < Self.attempts else {
                    metrics.doorbell(.failed)
                    logger.warning("a doorbell was not rung", metadata: ["host": "\(host)", "reason": "\(reason)", "attempts": "\(attempt)"])
                    return
                }
                // 1 s, then 3 s, a little jittered.
                try? await Task.sleep(for: .milliseconds(Int.random(in: 800...1200) * (attempt == 1 ? 1 : 3)))
            }
        }
    }

    enum CallOutcome: Equatable {
        case sent
        case gone(Int)
        case refused(String)
        case retry(String)
    }

    /// One call to the doorbell's push service.
    func call(_ doorbell: Doorbell, client: HTTPClient) async -> CallOutcome {
        guard let url = URL(string: doorbell.url), let host = url.host else { return .refused("the URL does not parse") }
        if let problem = destinations.refusal(of: doorbell.url) { return .refused(problem) }
        if IPAddressClass(host) == nil, let problem = destinations.refusal(host: host, resolvedTo: await Self.addresses(of: host)) {
            return .refused(problem)
        }
        let request: HTTPClientRequest
        do { request = try self.request(for: doorbell, url: url) } catch { return .refused("\(error)") }
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(configuration.timeoutSeconds)))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200..<300: return .sent
            case 404, 410: return .gone(Int(response.status.code))
            case 429, 500..<600: return .retry("HTTP \(response.status.code)")
            default: return .refused("HTTP \(response.status.code)")
            }
        } catch {
            return .retry("\(error)")
        }
    }

    /// The request that rings `doorbell`: nothing in it depends on what arrived.
    func request(for doorbell: Doorbell, url: URL) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: doorbell.url)
        request.method = .POST
        switch doorbell.kind {
        case .webPush:
            request.headers.add(name: "TTL", value: "86400")
            request.headers.add(name: "Urgency", value: "high")
            request.headers.add(name: "Authorization", value: try vapid.authorization(for: url, contact: configuration.contact))
            if let key = doorbell.subscriberKey, let secret = doorbell.authSecret {
                let body = try WebPushEncryption.encrypt(Self.webPushPayload, subscriberKey: key, authSecret: secret)
                request.headers.add(name: "Content-Encoding", value: "aes128gcm")
                request.headers.add(name: "Content-Type", value: "application/octet-stream")
                request.body = .bytes(body)
            } else {
                request.headers.add(name: "Content-Length", value: "0")
            }
        case .ntfy:
            request.headers.add(name: "Title", value: "Errand")
            request.headers.add(name: "Priority", value: "high")
            request.headers.add(name: "Tags", value: "bell")
            request.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            request.body = .bytes(Array(Self.ntfyMessage.utf8))
        case .webhook:
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(Self.webhookBody)
        }
        request.headers.add(name: "User-Agent", value: "errand-relay")
        return request
    }

    /// The addresses `host` resolves to (empty when it does not), without blocking the task pool.
    static func addresses(of host: String) async -> [String] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &list) == 0 else { return continuation.resume(returning: []) }
                defer { freeaddrinfo(list) }
                var addresses: [String] = []
                var entry = list
                while let current = entry {
                    var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                    if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                        addresses.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
                    }
                    entry = current.pointee.ai_next
                }
                continuation.resume(returning: addresses)
            }
        }
    }
}
