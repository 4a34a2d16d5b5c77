import ArgumentParser
import AsyncHTTPClient
import ErrandCrypto
import ErrandProtocol
import ErrandRelayClient
import Foundation
import NIOCore
import Synchronization

/// Measures a real relay process with loopback clients: durable throughput, send→receive
/// latency at a fixed rate, and memory per idle live connection.
struct RelayBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Throughput, latency and idle-connection memory of errand-relay (needs 'swift build -c release').")

    @Option(help: "Seconds of the throughput phase.") var seconds = 10
    @Option(help: "Concurrent senders (HTTP connections).") var senders = 32
    @Option(help: "Envelopes per request: 1 posts each alone (POST /v1/mailboxes/{id}/envelopes); more sends batches (POST /v1/envelopes). In the latency phase a batch carries what is due in one millisecond, up to this many.")
    var batch = 1
    @Option(help: "Mailboxes (each with a live receiver).") var mailboxes = 8
    @Option(help: "Envelope ciphertext size in bytes.") var size = 1024
    @Option(help: "Posts per second in the latency phase.") var rate = 5000
    @Option(help: "Seconds of the latency phase.") var latencySeconds = 10
    @Option(help: "Idle live connections to hold (0 skips the phase).") var idle = 10_000
    @Option(help: "SQLite durability of the relay: full or normal.") var durability = "full"
    @Option(help: "The relay's audit log: on or off (off only to measure its cost).") var auditLog = "on"
    @Option(help: ArgumentHelp("Run the relay on this PostgreSQL database instead of SQLite (scripts/postgres-server starts one).", valueName: "url"))
    var postgres: String?
    @Option(help: "Relay nodes on the PostgreSQL database; senders and receivers are spread over them, receivers on another node than most senders.")
    var nodes = 1

    func validate() throws {
        guard (1...EnvelopeBatch.maximumItems).contains(batch) else { throw ValidationError("--batch must be 1…\(EnvelopeBatch.maximumItems)") }
        guard seconds > 0, senders > 0, mailboxes > 0, rate > 0, latencySeconds > 0, idle >= 0 else {
            throw ValidationError("every count and duration must be positive")
        }
        guard (16...Envelope.maximumCiphertextLength).contains(size) else { throw ValidationError("--size must be 16…65519") }
        guard nodes >= 1, nodes == 1 || postgres != nil else { throw ValidationError("--nodes above 1 needs --postgres") }
    }

    func run() async throws {
        raiseFileLimit()
        var environment = [
            "ERRAND_RELAY_LIMITS_REQUESTS_PER_SECOND_PER_IP": "0",
            "ERRAND_RELAY_LIMITS_POSTS_PER_SECOND_PER_MAILBOX": "0",
            "ERRAND_RELAY_LIMITS_MAILBOX_MAX_ENVELOPES": "10000000",
            "ERRAND_RELAY_LIMITS_MAILBOX_MAX_BYTES": "\(1 << 40)",
            "ERRAND_RELAY_LIMITS_MAX_CONNECTIONS": "\(idle + senders + mailboxes + 100)",
            "ERRAND_RELAY_LIMITS_MAX_LIVE_CONNECTIONS_PER_MAILBOX": "\(idle + 10)",
            "ERRAND_RELAY_STORAGE_DURABILITY": durability,
            "ERRAND_RELAY_AUDIT_ENABLED": auditLog == "off" ? "false" : "true",
            "ERRAND_RELAY_LOG_LEVEL": "error",
        ]
        if let postgres { environment["ERRAND_RELAY_STORAGE_POSTGRES"] = postgres }
        var relays = [try RelayProcessHandle(environment: environment)]
        for _ in 1..<nodes { relays.append(try RelayProcessHandle(environment: environment, auditKeyFrom: relays[0].dataDirectory)) }
        let relay = relays[0]
        defer { for relay in relays { relay.stop() } }
        var pool = HTTPClient.Configuration()
        pool.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: senders)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: pool)
        let clients = relays.map { RelayClient(baseURL: $0.url, httpClient: http) }
        let client = clients[0]
        let store = postgres.map { _ in "PostgreSQL, \(nodes) node\(nodes == 1 ? "" : "s")" } ?? "SQLite, durability \(durability)"
        print("errand-bench relay: \(relays.map(\.url).joined(separator: " ")), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(store), audit log \(auditLog), \(size)-byte envelopes, \(batch == 1 ? "one per request" : "up to \(batch) per request")")

        var registered: [(key: Ed25519.SecretKey, token: SendToken)] = []
        for _ in 0..<mailboxes {
            let key = Ed25519.SecretKey()
            let token = SendToken()
            try await client.createMailbox(owner: key)
            try await client.addSendToken(token.hash, owner: key)
            registered.append((key, token))
        }
        let owners = registered
        let size = self.size
        let start = ContinuousClock.now
        // Receivers record latency only while a phase has put its recorder here.
        let latencyPhase = PhaseRecorder()
        let delivered = Counter()
        // Mailbox j's receiver is on node j + 1: with several nodes most envelopes cross nodes.
        let receivers = try await startReceivers(clients: clients, owners: owners, start: start, latencyPhase: latencyPhase, delivered: delivered)

        // Phase 1: closed-loop throughput.
        let posted = Counter()
        let failed = Counter()
        let cpuBefore = relays.map(\.cpuSeconds).reduce(0, +)
        let throughputStart = ContinuousClock.now
        let deadline = throughputStart + .seconds(seconds)
        await withTaskGroup(of: Void.self) { group in
            for sender in 0..<senders {
                let client = clients[sender % clients.count]
                group.addTask {
                    var index = sender
                    while ContinuousClock.now < deadline {
                        let due = (0..<batch).map { offset in owners[(index + offset) % owners.count] }
                        index += batch
                        let stored = await Self.post(due, client: client, size: size, start: start)
                        posted.add(stored)
                        failed.add(due.count - stored)
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - throughputStart
        let cpu = relays.map(\.cpuSeconds).reduce(0, +) - cpuBefore
        let throughput = Double(posted.value) / elapsed.seconds
        await waitUntil { delivered.value >= posted.value }
        print(String(format: "throughput: %.0f durable posts/s (%d in %.1f s, %d failed); relay CPU %.2f cores (all nodes); %d delivered live",
                     throughput, posted.value, elapsed.seconds, failed.value, cpu / elapsed.seconds, delivered.value))

        // The throughput phase leaves work behind (leaves to integrate into the audit log, a long
        // write-ahead log): the latency phase measures the steady state after it.
        let settled = await waitUntilIdle(relays)
        print(String(format: "settled: the relay was idle %.1f s after the throughput phase", settled.seconds))

        // Phase 2: latency at a fixed rate (open loop: posts start on schedule whatever the relay does).
        let latencyOnly = LatencyRecorder()
        // How long the relay took to answer each post (durable), apart from the delivery.
        let answered = LatencyRecorder()
        latencyPhase.recorder.withLock { $0 = latencyOnly }
        let target = delivered.value + rate * latencySeconds
        // Ticks of at least 1 ms; at low rates one post per tick, spaced 1/rate apart.
        let interval = rate >= 1000 ? Duration.milliseconds(1) : Duration.nanoseconds(1_000_000_000 / Int64(rate))
        let perTick = max(1, rate / 1000)
        let phaseStart = ContinuousClock.now
        let phaseCPUBefore = relays.map(\.cpuSeconds).reduce(0, +)
        let benchCPUBefore = Self.ownCPUSeconds()
        var sentInPhase = 0
        await withTaskGroup(of: Void.self) { group in
            var tick = phaseStart
            var index = 0
            while sentInPhase < rate * latencySeconds {
                tick += interval
                try? await Task.sleep(until: tick, clock: .continuous)
                // One request per envelope, or per batch of what is due in this tick.
                for first in stride(from: 0, to: perTick, by: batch) {
                    let chunk = (first..<min(first + batch, perTick)).map { offset in owners[(index + offset) % owners.count] }
                    let client = clients[(index + first) % clients.count]
                    group.addTask {
                        let sent = ContinuousClock.now
                        _ = await Self.post(chunk, client: client, size: size, start: start)
                        answered.record(microseconds: UInt64((ContinuousClock.now - sent).nanoseconds / 1000))
                    }
                }
                index += perTick
                sentInPhase += perTick
            }
        }
        await waitUntil { delivered.value >= target }
        let phaseSeconds = (ContinuousClock.now - phaseStart).seconds
        let achieved = Double(sentInPhase) / phaseSeconds
        let relayCPU = (relays.map(\.cpuSeconds).reduce(0, +) - phaseCPUBefore) / phaseSeconds
        let benchCPU = (Self.ownCPUSeconds() - benchCPUBefore) / phaseSeconds
        let summary = latencyOnly.summary
        print(String(format: "latency at %d/s (achieved %.0f/s): send→receive p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%d samples)",
                     rate, achieved, Double(summary.p50) / 1000, Double(summary.p99) / 1000, Double(summary.p999) / 1000,
                     Double(summary.max) / 1000, summary.count))
        let answers = answered.summary
        print(String(format: "  post answered (durable): p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d requests); CPU: relay %.2f cores, this generator %.2f",
                     Double(answers.p50) / 1000, Double(answers.p99) / 1000, Double(answers.max) / 1000, answers.count, relayCPU, benchCPU))
        for receiver in receivers { receiver.cancel() }

        // Phase 3: idle live connections.
        if idle > 0 {
            try await idlePhase(client: client, relay: relay, owner: owners[0].key)
        }
        try await http.shutdown()
    }

    private func idlePhase(client: RelayClient, relay: RelayProcessHandle, owner: Ed25519.SecretKey) async throws {
        try await Task.sleep(for: .seconds(1))
        let before = relay.residentBytes
        let ready = Counter()
        var subscriptions: [LiveSubscription] = []
        var waiters: [Task<Void, Never>] = []
        for index in 0..<idle {
            let subscription = client.subscribe(owner: owner, after: Int64.max / 2)
            subscriptions.append(subscription)
            waiters.append(Task {
                do {
                    for try await event in subscription.events {
                        if case .caughtUp = event { ready.add(1) }
                    }
                } catch {}
            })
            if index % 500 == 499 { await waitUntil(timeout: 60) { ready.value >= index - 100 } }
        }
        await waitUntil(timeout: 120) { ready.value >= idle }
        try await Task.sleep(for: .seconds(2))
        let after = relay.residentBytes
        let healthy = await client.isHealthy()
        let perConnection = Double(after - before) / Double(max(ready.value, 1))
        print(String(format: "idle connections: %d held (%d ready); relay memory %.1f MiB → %.1f MiB, %.1f KiB per connection; healthz %@",
                     idle, ready.value, Double(before) / 1_048_576, Double(after) / 1_048_576, perConnection / 1024, healthy ? "ok" : "FAILED"))
        for subscription in subscriptions { subscription.cancel() }
        for waiter in waiters { waiter.cancel() }
    }

    private func startReceivers(clients: [RelayClient], owners: [(key: Ed25519.SecretKey, token: SendToken)], start: ContinuousClock.Instant,
                                latencyPhase: PhaseRecorder, delivered: Counter) async throws -> [LiveSubscription] {
        let caughtUp = Counter()
        var subscriptions: [LiveSubscription] = []
        for (index, owner) in owners.enumerated() {
            let subscription = clients[(index + 1) % clients.count].subscribe(owner: owner.key)
            subscriptions.append(subscription)
            Task {
                var pending: [EnvelopeID] = []
                do {
                    for try await event in subscription.events {
                        switch event {
                        case .envelope(_, let envelope):
                            let sent = envelope.ciphertext.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                            let now = UInt64((ContinuousClock.now - start).nanoseconds)
                            latencyPhase.recorder.withLock { $0 }?.record(microseconds: (now &- sent) / 1000)
                            delivered.add(1)
                            pending.append(envelope.id)
                            if pending.count >= 64 {
                                try? await subscription.acknowledge(pending)
                                pending.removeAll(keepingCapacity: true)
                            }
                        case .caughtUp:
                            caughtUp.add(1)
                        case .reconnecting:
                            break
                        }
                    }
                } catch {}
            }
        }
        await waitUntil { caughtUp.value >= owners.count }
        return subscriptions
    }

    /// Posts one envelope to each owner's mailbox (alone, or as one batch); returns how many were stored.
    private static func post(_ owners: [(key: Ed25519.SecretKey, token: SendToken)], client: RelayClient, size: Int,
                             start: ContinuousClock.Instant) async -> Int {
        if owners.count == 1, let owner = owners.first {
            let stored = try? await client.post(envelope(size: size, stamp: ContinuousClock.now - start),
                                                to: MailboxID(owner: owner.key.publicKey), token: owner.token)
            return stored == nil ? 0 : 1
        }
        let items = owners.map { owner in
            EnvelopeBatch.Item(mailbox: MailboxID(owner: owner.key.publicKey), token: owner.token,
                               envelope: envelope(size: size, stamp: ContinuousClock.now - start).encoded)
        }
        guard let results = try? await client.post(batch: items) else { return 0 }
        return results.count { if case .success = $0 { true } else { false } }
    }

    /// An envelope whose first 8 ciphertext bytes carry the send time (ns since start).
    private static func envelope(size: Int, stamp: Duration) -> Envelope {
        var bytes = SecureRandom.bytes(count: size)
        let nanoseconds = UInt64(stamp.nanoseconds)
        for index in 0..<8 { bytes[index] = UInt8(truncatingIfNeeded: nanoseconds >> (56 - 8 * index)) }
        return try! Envelope(ciphertext: bytes)
    }

    /// Waits until the relays use under 5% of a core over a quarter second (at most 30 s); returns
    /// how long that took.
    private func waitUntilIdle(_ relays: [RelayProcessHandle]) async -> Duration {
        let start = ContinuousClock.now
        var before = relays.map(\.cpuSeconds).reduce(0, +)
        while ContinuousClock.now - start < .seconds(30) {
            try? await Task.sleep(for: .milliseconds(250))
            let now = relays.map(\.cpuSeconds).reduce(0, +)
            if now - before < 0.05 * 0.25 { break }
            before = now
        }
        return ContinuousClock.now - start
    }

    private func waitUntil(timeout: Double = 60, _ condition: () -> Bool) async {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition(), Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
    }

    /// CPU time this process has used (user + system), in seconds.
    private static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    private func raiseFileLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

/// The latency recorder of the running phase, if any.
final class PhaseRecorder: Sendable {
    let recorder = Mutex<LatencyRecorder?>(nil)
}

/// A counter shared by many tasks.
final class Counter: Sendable {
    private let count = Mutex(0)
    func add(_ amount: Int) { count.withLock { $0 += amount } }
    var value: Int { count.withLock { $0 } }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
