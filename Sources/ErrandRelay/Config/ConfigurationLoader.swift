import Foundation
import TOMLKit

/// Reads ``RelayConfiguration`` from a TOML file and `ERRAND_RELAY_*` environment variables.
///
/// Every setting has one key, e.g. `limits.mailbox_max_envelopes`; in the file it sits in its
/// table (`[limits]`), in the environment it is `ERRAND_RELAY_LIMITS_MAILBOX_MAX_ENVELOPES`.
/// Unknown keys and wrong types are errors that name the key, never silently ignored.
public enum ConfigurationLoader {
    /// One setting: its key, what it expects, and how to apply it.
    struct Setting: Sendable {
        enum Kind: String, Sendable { case string = "text", integer = "a whole number", number = "a number", boolean = "true or false" }
        let key: String
        let kind: Kind
        let apply: @Sendable (inout RelayConfiguration, Value) throws(ConfigurationError) -> Void
    }

    enum Value: Sendable {
        case string(String), integer(Int), number(Double), boolean(Bool)
    }

    static let settings: [Setting] = [
        Setting(key: "listen", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            (configuration.host, configuration.port) = try parseListen(text, key: "listen")
        },
        string("data") { $0.dataDirectory = $1 },
        boolean("open_registration") { $0.openRegistration = $1 },
        Setting(key: "trusted_proxies", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            var networks: [IPNetwork] = []
            for entry in text.split(separator: ",") {
                guard let network = IPNetwork(String(entry)) else {
                    throw ConfigurationError("trusted_proxies: '\(entry.trimmingCharacters(in: .whitespaces))' is not an IP address or ADDRESS/PREFIX range")
                }
                networks.append(network)
            }
            configuration.trustedProxies = networks
        },
        string("tls.certificate") { $0.tlsCertificatePath = $1 },
        string("tls.key") { $0.tlsKeyPath = $1 },
        integer("limits.envelope_ttl_seconds", 60...(365 * 86_400)) { $0.envelopeTTL = Int64($1) },
        integer("limits.max_envelope_bytes", 64...65_536) { $0.maximumEnvelopeBytes = $1 },
        integer("limits.mailbox_max_envelopes", 1...10_000_000) { $0.mailboxQuota.maximumEnvelopes = $1 },
        integer("limits.mailbox_max_bytes", 65_536...(1 << 40)) { $0.mailboxQuota.maximumBytes = $1 },
        integer("limits.max_device_mailboxes", 0...100_000) { $0.maximumSponsoredMailboxes = $1 },
        integer("limits.invite_ttl_seconds", 60...(365 * 86_400)) { $0.inviteTTL = Int64($1) },
        integer("limits.pairing_slot_default_seconds", 10...600) { $0.pairingSlotDefaultTTL = Int64($1) },
        integer("limits.pairing_slot_max_seconds", 10...600) { $0.pairingSlotMaximumTTL = Int64($1) },
        integer("limits.max_open_pairing_slots", 1...1_000) { $0.maximumOpenPairingSlots = $1 },
        integer("limits.max_send_tokens", 1...100_000) { $0.maximumSendTokens = $1 },
        number("limits.requests_per_second_per_ip", 0...1_000_000) { $0.requestsPerSecondPerIP = $1 },
        number("limits.request_burst_per_ip", 1...1_000_000) { $0.requestBurstPerIP = $1 },
        number("limits.posts_per_second_per_mailbox", 0...1_000_000) { $0.postsPerSecondPerMailbox = $1 },
        number("limits.post_burst_per_mailbox", 1...1_000_000) { $0.postBurstPerMailbox = $1 },
        integer("limits.max_connections", 1...1_000_000) { $0.maximumConnections = $1 },
        integer("limits.max_connections_per_ip", 1...1_000_000) { $0.maximumConnectionsPerIP = $1 },
        integer("limits.ipv6_prefix_length", 16...128) { $0.ipv6PrefixLength = $1 },
        integer("limits.first_request_seconds", 1...3600) { $0.firstRequestSeconds = $1 },
        integer("limits.max_live_connections_per_mailbox", 1...1_000_000) { $0.maximumLiveConnectionsPerMailbox = $1 },
        integer("limits.idle_timeout_seconds", 1...3600) { $0.idleTimeoutSeconds = $1 },
        integer("limits.websocket_ping_seconds", 1...3600) { $0.webSocketPingSeconds = $1 },
        integer("limits.write_timeout_seconds", 1...3600) { $0.writeTimeoutSeconds = $1 },
        integer("limits.live_authentication_seconds", 1...600) { $0.liveAuthenticationSeconds = $1 },
        Setting(key: "storage.durability", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            guard let durability = SQLiteRelayStore.Durability(rawValue: text) else {
                throw ConfigurationError("storage.durability must be \"full\" or \"normal\", not \"\(text)\"")
            }
            configuration.durability = durability
        },
        integer("storage.sweep_interval_seconds", 1...86_400) { $0.sweepIntervalSeconds = $1 },
        string("storage.postgres") { $0.postgresURL = $1.isEmpty ? nil : $1 },
        integer("storage.postgres_max_connections", 2...1_000) { $0.postgresMaximumConnections = $1 },
        boolean("audit.enabled") { $0.auditLog = $1 },
        boolean("web.enabled") { $0.webEnabled = $1 },
        string("web.root") { $0.webRoot = $1.isEmpty ? nil : $1 },
        Setting(key: "web.allowed_origins", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            configuration.webAllowedOrigins = try text.split(separator: ",").map { entry throws(ConfigurationError) in
                try parseOrigin(entry.trimmingCharacters(in: .whitespaces))
            }
        },
        boolean("push.enabled") { $0.push.enabled = $1 },
        Setting(key: "push.allowed_hosts", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            configuration.push.allowedHosts = try text.split(separator: ",").map { entry throws(ConfigurationError) in
                try parsePushHost(entry.trimmingCharacters(in: .whitespaces))
            }
        },
        boolean("push.allow_http") { $0.push.allowHTTP = $1 },
        integer("push.min_interval_seconds", 0...86_400) { $0.push.minimumIntervalSeconds = $1 },
        integer("push.max_doorbells_per_mailbox", 1...64) { $0.push.maximumPerMailbox = $1 },
        Setting(key: "push.contact", kind: .string) { configuration, value throws(ConfigurationError) in
            guard case .string(let text) = value else { return }
            guard (text.hasPrefix("mailto:") && text.count > 7) || text.hasPrefix("https://") else {
                throw ConfigurationError("push.contact must be a mailto: or https: address the push services' operators can reach you at, not '\(text)'")
            }
            configuration.push.contact = text
        },
        integer("push.timeout_seconds", 1...120) { $0.push.timeoutSeconds = $1 },
        integer("push.queue_length", 1...1_000_000) { $0.push.queueLength = $1 },
    ]

    /// Applies the TOML file at `path` to `configuration`.
    /// - Throws: ``ConfigurationError`` naming the file, the line for syntax errors, or the key.
    public static func apply(file path: String, to configuration: inout RelayConfiguration) throws(ConfigurationError) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigurationError("cannot read the config file \(path): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw ConfigurationError("\(path): line \(error.source.begin.line): \(error.description)")
        } catch {
            throw ConfigurationError("\(path) is not valid TOML")
        }
        var values: [(String, any TOMLValueConvertible)] = []
        flatten(table, prefix: "", into: &values)
        for (key, raw) in values {
            guard let setting = settings.first(where: { $0.key == key }) else {
                throw ConfigurationError("\(path): unknown setting '\(key)' (see relay/errand-relay.toml for every setting)")
            }
            let value: Value?
            switch setting.kind {
            case .string: value = raw.string.map(Value.string)
            case .integer: value = raw.int.map(Value.integer)
            case .number: value = raw.double.map(Value.number) ?? raw.int.map { Value.number(Double($0)) }
            case .boolean: value = raw.bool.map(Value.boolean)
            }
            guard let value else {
                throw ConfigurationError("\(path): '\(key)' must be \(setting.kind.rawValue)")
            }
            try setting.apply(&configuration, value)
        }
    }

    /// Applies `ERRAND_RELAY_*` variables from `environment`.
    public static func apply(environment: [String: String], to configuration: inout RelayConfiguration) throws(ConfigurationError) {
        for setting in settings {
            let name = environmentName(setting.key)
            guard let text = environment[name] else { continue }
            let value: Value
            switch setting.kind {
            case .string: value = .string(text)
            case .integer:
                guard let number = Int(text) else { throw ConfigurationError("\(name) must be \(setting.kind.rawValue), not '\(text)'") }
                value = .integer(number)
            case .number:
                guard let number = Double(text) else { throw ConfigurationError("\(name) must be \(setting.kind.rawValue), not '\(text)'") }
                value = .number(number)
            case .boolean:
                switch text.lowercased() {
                case "1", "true", "yes", "on": value = .boolean(true)
                case "0", "false", "no", "off": value = .boolean(false)
                default: throw ConfigurationError("\(name) must be true or false, not '\(text)'")
                }
            }
            try setting.apply(&configuration, value)
        }
    }

    /// The environment variable for a setting key: `limits.max_connections` → `ERRAND_RELAY_LIMITS_MAX_CONNECTIONS`.
    public static func environmentName(_ key: String) -> String {
        "ERRAND_RELAY_" + key.replacingOccurrences(of: ".", with: "_").uppercased()
    }

    /// Checks settings that depend on each other.
    public static func validate(_ configuration: RelayConfiguration) throws(ConfigurationError) {
        if (configuration.tlsCertificatePath == nil) != (configuration.tlsKeyPath == nil) {
            throw ConfigurationError("TLS needs both tls.certificate and tls.key")
        }
        if let url = configuration.postgresURL { _ = try PostgresLocation(url: url) }
        if configuration.pairingSlotDefaultTTL > configuration.pairingSlotMaximumTTL {
            throw ConfigurationError("limits.pairing_slot_default_seconds is longer than limits.pairing_slot_max_seconds")
        }
    }

    /// An origin as browsers send it: `https://HOST` or `https://HOST:PORT` (`http` only for
    /// loopback), lowercase, no path, no trailing slash.
    static func parseOrigin(_ text: String) throws(ConfigurationError) -> String {
        let problem = ConfigurationError("web.allowed_origins: '\(text)' is not an origin; write it as https://host or https://host:port, without a path")
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              let host = components.host?.lowercased(), !host.isEmpty,
              components.path.isEmpty, components.query == nil, components.fragment == nil,
              components.user == nil, components.password == nil else { throw problem }
        let loopback = host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1"
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw ConfigurationError("web.allowed_origins: '\(text)' must use https (http only for localhost or 127.0.0.1)")
        }
        return WebOrigin.text(scheme: scheme, host: host, port: components.port)
    }

    /// A host a doorbell may call: a name, `*.name`, or an IP address; no scheme, port or path.
    static func parsePushHost(_ text: String) throws(ConfigurationError) -> String {
        let host = text.lowercased()
        let name = host.hasPrefix("*.") ? String(host.dropFirst(2)) : host
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-.:[]")
        guard !name.isEmpty, name.allSatisfy(allowed.contains), !name.hasPrefix("."), !name.contains("..") ,
              name.contains(":") ? IPAddressClass(name) != nil : true else {
            throw ConfigurationError("push.allowed_hosts: '\(text)' is not a host name, *.name or IP address (no scheme, port or path)")
        }
        return host
    }

    /// `HOST:PORT`, `[IPv6]:PORT` or `:PORT`.
    public static func parseListen(_ text: String, key: String = "--listen") throws(ConfigurationError) -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
            throw ConfigurationError("\(key) must be HOST:PORT (for example 127.0.0.1:8080), not '\(text)'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    private static func flatten(_ table: TOMLTable, prefix: String, into values: inout [(String, any TOMLValueConvertible)]) {
        for key in table.keys {
            guard let value = table[key] else { continue }
            let full = prefix.isEmpty ? key : "\(prefix).\(key)"
            if let nested = value.table {
                flatten(nested, prefix: full, into: &values)
            } else {
                values.append((full, value))
            }
        }
    }

    private static func string(_ key: String, _ apply: @escaping @Sendable (inout RelayConfiguration, String) -> Void) -> Setting {
        Setting(key: key, kind: .string) { configuration, value in
            if case .string(let text) = value { apply(&configuration, text) }
        }
    }

    private static func boolean(_ key: String, _ apply: @escaping @Sendable (inout RelayConfiguration, Bool) -> Void) -> Setting {
        Setting(key: key, kind: .boolean) { configuration, value in
            if case .boolean(let flag) = value { apply(&configuration, flag) }
        }
    }

    private static func integer(_ key: String, _ range: ClosedRange<Int>, _ apply: @escaping @Sendable (inout RelayConfiguration, Int) -> Void) -> Setting {
        Setting(key: key, kind: .integer) { configuration, value throws(ConfigurationError) in
            guard case .integer(let number) = value else { return }
            guard range.contains(number) else {
                throw ConfigurationError("\(key) must be between \(range.lowerBound) and \(range.upperBound), not \(number)")
            }
            apply(&configuration, number)
        }
    }

    private static func number(_ key: String, _ range: ClosedRange<Double>, _ apply: @escaping @Sendable (inout RelayConfiguration, Double) -> Void) -> Setting {
        Setting(key: key, kind: .number) { configuration, value throws(ConfigurationError) in
            guard case .number(let number) = value else { return }
            guard range.contains(number) else {
                throw ConfigurationError("\(key) must be between \(range.lowerBound) and \(range.upperBound), not \(number)")
            }
            apply(&configuration, number)
        }
    }
}

/// A configuration problem, named precisely enough to fix.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
