import ErrandProtocol
import Foundation

/// Everything an operator can set. Sources, later ones winning: built-in defaults, the TOML
/// config file (`--config`), `ERRAND_RELAY_*` environment variables, command-line flags.
/// `relay/errand-relay.toml` documents every key.
public struct RelayConfiguration: Sendable, Equatable {
    /// Address to listen on.
    public var host = "127.0.0.1"
    public var port = 8080
    /// Folder for the database and the relay's own keys.
    public var dataDirectory = "./errand-relay-data"
    /// Anyone may create a mailbox (otherwise a registration token from `errand-relay invite` is needed).
    public var openRegistration = false
    /// Serve HTTPS from these PEM files (otherwise plain HTTP, for loopback or behind a proxy).
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Reverse proxies whose `X-Forwarded-For` names the client (for per-IP limits); empty: none.
    public var trustedProxies: [IPNetwork] = []

    /// How long an undelivered envelope is kept, in seconds (default 7 days).
    public var envelopeTTL: Int64 = 7 * 24 * 3600
    /// Largest envelope accepted, in bytes (at most 65,536).
    public var maximumEnvelopeBytes = Envelope.maximumLength
    /// What may wait in one mailbox.
    public var mailboxQuota = MailboxQuota(maximumEnvelopes: 10_000, maximumBytes: 256 * 1024 * 1024)
    /// Mailboxes one owner may create for its devices.
    public var maximumSponsoredMailboxes = 64
    /// How long a registration token from `errand-relay invite` stays valid, in seconds.
    public var inviteTTL: Int64 = 7 * 24 * 3600
    /// Default and longest life of a pairing slot, in seconds.
    public var pairingSlotDefaultTTL: Int64 = 300
    public var pairingSlotMaximumTTL: Int64 = 600
    /// Pairing slots one mailbox may have open at once.
    public var maximumOpenPairingSlots = 4
    /// Send tokens one mailbox may hold (a host: one per paired device, revoked ones removed).
    public var maximumSendTokens = 256

    /// Requests per second per client IP (average and burst); 0 disables.
    public var requestsPerSecondPerIP = 100.0
    public var requestBurstPerIP = 200.0
    /// Envelopes per second into one mailbox (average and burst); 0 disables.
    public var postsPerSecondPerMailbox = 200.0
    public var postBurstPerMailbox = 400.0
    /// Simultaneous connections (HTTP and WebSocket) before new ones are refused.
    public var maximumConnections = 20_000
    /// Simultaneous connections from one client address (an IPv6 one by its prefix); a trusted
    /// proxy's are not counted.
    public var maximumConnectionsPerIP = 256
    /// Bits of an IPv6 address that per-IP limits count as one client (64: a subscriber's network).
    public var ipv6PrefixLength = 64
    /// Seconds a new connection has for its first request head (TLS handshake included); at
    /// most `idleTimeoutSeconds`.
    public var firstRequestSeconds = 10
    /// Live (WebSocket) connections one mailbox may hold at once.
    public var maximumLiveConnectionsPerMailbox = 16
    /// Seconds an HTTP connection may sit idle, and the longest a request body may take to arrive.
    public var idleTimeoutSeconds = 60
    /// Seconds between WebSocket pings; a peer that stops answering is disconnected.
    public var webSocketPingSeconds = 30
    /// Seconds a write to a live connection may take before the connection is dropped.
    public var writeTimeoutSeconds = 10
    /// Seconds a new live connection has to answer its challenge.
    public var liveAuthenticationSeconds = 10

    /// A shared PostgreSQL database (`postgres://…` URL) instead of the SQLite file in the data
    /// folder: what several relay nodes behind one load balancer use. Better given by
    /// `ERRAND_RELAY_STORAGE_POSTGRES` or the config file than on the command line, and the
    /// password better by `PGPASSWORD`.
    public var postgresURL: String?
    /// Connections each node keeps to PostgreSQL at most.
    public var postgresMaximumConnections = 20

    /// SQLite durability (`full` survives power loss).
    public var durability = SQLiteRelayStore.Durability.full
    /// Seconds between expiry sweeps.
    public var sweepIntervalSeconds = 60

    /// Keep the transparency log of envelope events (off only to measure what it costs: peers
    /// cannot audit a relay without it).
    public var auditLog = true

    /// Serve the web companion at `/app/`.
    public var webEnabled = true
    /// The web companion's folder; nil: the one installed beside the relay or in its source tree.
    public var webRoot: String?
    /// Origins (`https://host[:port]`) of web companions served elsewhere that may call the API.
    public var webAllowedOrigins: [String] = []

    /// Doorbells: telling an offline mailbox's owner that something urgent waits.
    public var push = PushConfiguration()

    public init() {}
}
