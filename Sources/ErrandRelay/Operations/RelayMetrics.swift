import ErrandProtocol
import Prometheus

/// The relay's Prometheus metrics, served at `/metrics`. Counts and sizes only: never an id,
/// a key or a payload.
final class RelayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let envelopesStored: Counter
    private let bytesStored: Counter
    private let envelopesDelivered: Counter
    private let envelopesExpired: Counter
    private let mailboxesCreated: Counter
    private let liveConnections: Gauge
    private let storeLatency: DurationHistogram
    private let refusals: [RelayErrorCode: Counter]
    private let walPages: Gauge
    private let walCheckpoints: Gauge
    private let walRestarts: Gauge
    private let walCheckpointFailures: Gauge
    private let doorbells: [DoorbellOutcome: Counter]

    init() {
        envelopesStored = registry.makeCounter(descriptor: Self.name("envelopes_stored", "total", "Envelopes stored (acknowledged to their sender)."))
        bytesStored = registry.makeCounter(descriptor: Self.name("envelope_bytes_stored", "total", "Bytes of envelopes stored."))
        envelopesDelivered = registry.makeCounter(descriptor: Self.name("envelopes_delivered", "total", "Envelopes handed to their mailbox's owner (fetch or live)."))
        envelopesExpired = registry.makeCounter(descriptor: Self.name("envelopes_expired", "total", "Envelopes deleted unread after their TTL."))
        mailboxesCreated = registry.makeCounter(descriptor: Self.name("mailboxes_created", "total", "Mailboxes created."))
        liveConnections = registry.makeGauge(descriptor: Self.name("live_connections", "", "Open live (WebSocket) connections."))
        storeLatency = registry.makeDurationHistogram(
            descriptor: Self.name("store_duration", "seconds", "Time from receiving a post to its durable commit."),
            buckets: [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                      .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1)])
        var refusals: [RelayErrorCode: Counter] = [:]
        for code in RelayErrorCode.allCases {
            refusals[code] = registry.makeCounter(descriptor: Self.name("refusals", "total", "Requests refused, by reason."),
                                                  labels: [("reason", code.rawValue)])
        }
        self.refusals = refusals
        var doorbells: [DoorbellOutcome: Counter] = [:]
        for outcome in DoorbellOutcome.allCases {
            doorbells[outcome] = registry.makeCounter(
                descriptor: Self.name("doorbell_rings", "total", "Doorbell rings, by outcome (sent, failed, dropped from a full queue, removed by the push service)."),
                labels: [("outcome", outcome.rawValue)])
        }
        self.doorbells = doorbells
        walPages = registry.makeGauge(descriptor: Self.name("wal_pages", "", "Pages in SQLite's write-ahead log after the last commit."))
        walCheckpoints = registry.makeGauge(descriptor: Self.name("wal_checkpoints", "", "Passive checkpoints of the write-ahead log since start."))
        walRestarts = registry.makeGauge(descriptor: Self.name("wal_restarts", "", "Times the write-ahead log was made to start over since start."))
        walCheckpointFailures = registry.makeGauge(descriptor: Self.name(
            "wal_checkpoint_failures", "", "Checkpoints of the write-ahead log that failed since start; while they fail, the log grows."))
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "errand", subsystem: "relay", metricName: metric, unitName: unit, helpText: help)
    }

    func stored(bytes: Int, duration: Duration) {
        envelopesStored.increment()
        bytesStored.increment(by: Int64(bytes))
        storeLatency.record(duration)
    }

    func delivered(count: Int) { if count > 0 { envelopesDelivered.increment(by: Int64(count)) } }
    func expired(count: Int) { if count > 0 { envelopesExpired.increment(by: Int64(count)) } }
    func mailboxCreated() { mailboxesCreated.increment() }
    func connectionOpened() { liveConnections.increment() }
    func connectionClosed() { liveConnections.decrement() }
    func refused(_ code: RelayErrorCode) { refusals[code]?.increment() }
    func doorbell(_ outcome: DoorbellOutcome) { doorbells[outcome]?.increment() }

    /// Takes the write-ahead log's figures (read when `/metrics` is asked for).
    func record(_ log: WriteAheadLogStatus) {
        walPages.set(Int64(log.logPages))
        walCheckpoints.set(Int64(log.checkpoints))
        walRestarts.set(Int64(log.restarts))
        walCheckpointFailures.set(Int64(log.failures))
    }

    /// The Prometheus text exposition.
    func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// What became of one doorbell ring.
enum DoorbellOutcome: String, CaseIterable {
    case sent, failed, dropped, removed
}
