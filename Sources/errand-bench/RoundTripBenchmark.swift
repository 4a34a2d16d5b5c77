import ArgumentParser
import ErrandCompanion
import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import Foundation
import Histogram
import Synchronization

/// Companion → host → companion round trips of a trivial action, over a real relay process on
/// loopback: the host agent and the companions run in this process, with their own SQLite state,
/// sessions and relay connections, exactly as the commands use them.
struct RoundTripBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roundtrip",
        abstract: "Round trips of a trivial action (latency) and tasks/s with several companions (needs 'swift build -c release').")

    @Option(help: "Sequential round trips for the latency phase.") var trips = 200
    @Option(help: "Companions sending at once in the throughput phase.") var companions = 4
    @Option(help: "Seconds of the throughput phase.") var seconds = 10
    @Option(help: "Tasks the host runs at once.") var concurrency = 4

    func run() async throws {
        // Every peer here shares one IP (loopback): lift the per-IP and per-mailbox rate limits,
        // which would otherwise answer 429 and make the clients wait.
        let relay = try RelayProcessHandle(environment: [
            "ERRAND_RELAY_LOG_LEVEL": "error",
            "ERRAND_RELAY_LIMITS_REQUESTS_PER_SECOND_PER_IP": "0",
            "ERRAND_RELAY_LIMITS_POSTS_PER_SECOND_PER_MAILBOX": "0",
        ])
        defer { relay.stop() }
        let client = RelayClient(baseURL: relay.url)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("errand-bench-roundtrip-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let host = try await HostSetup.initialize(directory: StateDirectory(path: folder + "/host"), relayURL: relay.url, name: "bench", invite: nil, client: client)
        let action = host.directory.file("actions/ping")
        try "#!/bin/sh\necho pong\n".write(toFile: action, atomically: true, encoding: .utf8)
        chmod(action, 0o700)
        var configuration = HostConfiguration()
        configuration.concurrency = concurrency
        let agent = HostAgent(host: host, configuration: configuration, client: client) { _ in }
        let agentTask = Task { try await agent.run() }
        defer { agentTask.cancel() }

        var sides: [CompanionSide] = []
        for index in 0..<max(1, companions) {
            sides.append(try await CompanionSide.pair(index: index, host: host, client: client, relayURL: relay.url, folder: folder))
        }
        print("errand-bench roundtrip: relay \(relay.url), \(ProcessInfo.processInfo.activeProcessorCount) cores, host runs \(concurrency) at once; action: /bin/sh echo pong")

        // Latency: one companion, one task at a time.
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        _ = try await sides[0].roundTrip()  // warm up: the first message also ratchets the host's session
        for _ in 0..<trips {
            let start = ContinuousClock.now
            _ = try await sides[0].roundTrip()
            histogram.record(UInt64((ContinuousClock.now - start) / .microseconds(1)))
        }
        let ms = { (value: UInt64) in Double(value) / 1000 }
        print(String(format: "round trip (send → action → result): p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d trips)",
                     ms(histogram.valueAtPercentile(50)), ms(histogram.valueAtPercentile(99)), ms(histogram.max), trips))

        // Throughput: every companion in a closed loop.
        let completed = Counter()
        let deadline = ContinuousClock.now + .seconds(seconds)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for side in sides {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        _ = try await side.roundTrip()
                        completed.add(1)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "throughput: %.1f tasks/s with %d companions (%d tasks in %.1f s)",
                     Double(completed.value) / seconds, sides.count, completed.value, seconds))
        for side in sides { side.stop() }
    }
}

/// One paired companion with a persistent live connection.
final class CompanionSide: Sendable {
    let conversation: CompanionConversation
    let subscription: LiveSubscription
    let finished = Mutex<[String: CheckedContinuation<TaskStatus, Never>]>([:])
    let done = Mutex<[String: TaskStatus]>([:])

    init(conversation: CompanionConversation, subscription: LiveSubscription) {
        self.conversation = conversation
        self.subscription = subscription
    }

    static func pair(index: Int, host: HostSetup.Host, client: RelayClient, relayURL: String, folder: String) async throws -> CompanionSide {
        let presenter = QuietHostPresenter()
        let hostSide = Task { try await HostPairing(host: host, client: client, relayURL: relayURL).run(lifetime: 60, presenter: presenter) }
        while presenter.offer.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(5)) }
        let store = try CompanionStore(directory: StateDirectory(path: folder + "/companion-\(index)"))
        _ = try await CompanionPairing(store: store, client: client, relayURL: relayURL)
            .run(offer: presenter.offer.withLock { $0! }, deviceName: "device-\(index)", presenter: QuietCompanionPresenter())
        _ = try await hostSide.value
        let conversation = try CompanionConversation(store: store, hostName: nil)
        let channel = try store.channel(named: nil)
        let side = CompanionSide(conversation: conversation, subscription: client.subscribe(owner: channel.signing))
        Task { await side.listen() }
        return side
    }

    private func listen() async {
        do {
            for try await event in subscription.events {
                guard case .envelope(_, let envelope) = event else { continue }
                if case .event(let update)? = try? conversation.store.receive(envelope, from: conversation.host), update.status.isFinal {
                    let waiter = finished.withLock { $0.removeValue(forKey: update.task) }
                    if let waiter { waiter.resume(returning: update.status) } else { done.withLock { $0[update.task] = update.status } }
                }
                try? await subscription.acknowledge([envelope.id])
            }
        } catch {}
    }

    /// Sends one `ping` action and waits for its result.
    func roundTrip() async throws -> TaskStatus {
        let id = UUID().uuidString.lowercased()
        guard try await conversation.send(TaskRequest(task: id, executor: .action, action: "ping", arguments: [])) else {
            throw BenchmarkError("the relay did not take the task")
        }
        return await withCheckedContinuation { continuation in
            let early = finished.withLock { waiters -> TaskStatus? in
                if let status = done.withLock({ $0.removeValue(forKey: id) }) { return status }
                waiters[id] = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }

    func stop() { subscription.cancel() }
}

final class QuietHostPresenter: HostPairingPresenter, Sendable {
    let offer = Mutex<PairingOffer?>(nil)
    func present(_ offer: PairingOffer) async throws(PeerError) { self.offer.withLock { $0 = offer } }
    func confirm(deviceName: String, fingerprint: String, sas: ShortAuthenticationString) async -> Bool { true }
    func status(_ line: String) {}
}

final class QuietCompanionPresenter: CompanionPairingPresenter, Sendable {
    func approve(hostName: String, fingerprint: String, relayURL: String) async -> Bool { true }
    func showSAS(_ sas: ShortAuthenticationString) {}
    func status(_ line: String) {}
}
