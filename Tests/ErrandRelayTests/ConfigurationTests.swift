import ErrandRelay
import Foundation
import Testing

@Suite("Relay configuration")
struct ConfigurationTests {
    /// The repository's example file (relay/errand-relay.toml).
    static let exampleFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("relay/errand-relay.toml").path

    @Test("The example config parses and states the defaults (except the data folder)")
    func exampleFileMatchesDefaults() throws {
        var configuration = RelayConfiguration()
        try ConfigurationLoader.apply(file: Self.exampleFile, to: &configuration)
        var expected = RelayConfiguration()
        expected.dataDirectory = "/var/lib/errand-relay"
        #expect(configuration == expected)
    }

    @Test("push.*: hosts, wildcards and addresses; a contact that is not mailto:/https: or a host with a scheme is refused")
    func pushSettings() throws {
        var configuration = RelayConfiguration()
        try ConfigurationLoader.apply(environment: [
            "ERRAND_RELAY_PUSH_ALLOWED_HOSTS": "ntfy.example.org, *.push.apple.com,127.0.0.1, [::1]",
            "ERRAND_RELAY_PUSH_MIN_INTERVAL_SECONDS": "3",
            "ERRAND_RELAY_PUSH_CONTACT": "https://example.org/contact",
        ], to: &configuration)
        #expect(configuration.push.allowedHosts == ["ntfy.example.org", "*.push.apple.com", "127.0.0.1", "[::1]"])
        #expect(configuration.push.minimumIntervalSeconds == 3)
        #expect(configuration.push.contact == "https://example.org/contact")
        for (name, value, named) in [("ERRAND_RELAY_PUSH_ALLOWED_HOSTS", "https://ntfy.sh", "push.allowed_hosts"),
                                     ("ERRAND_RELAY_PUSH_ALLOWED_HOSTS", "ntfy.sh/topic", "push.allowed_hosts"),
                                     ("ERRAND_RELAY_PUSH_CONTACT", "me@example.org", "push.contact"),
                                     ("ERRAND_RELAY_PUSH_MAX_DOORBELLS_PER_MAILBOX", "0", "push.max_doorbells_per_mailbox")] {
            var refused = RelayConfiguration()
            #expect { try ConfigurationLoader.apply(environment: [name: value], to: &refused) } throws: { error in
                "\(error)".contains(named)
            }
        }
    }

    @Test("Environment overrides the file; names map from keys")
    func environment() throws {
        var configuration = RelayConfiguration()
        try ConfigurationLoader.apply(environment: [
            "ERRAND_RELAY_LISTEN": "[::1]:9000",
            "ERRAND_RELAY_OPEN_REGISTRATION": "yes",
            "ERRAND_RELAY_LIMITS_MAILBOX_MAX_ENVELOPES": "5",
            "ERRAND_RELAY_LIMITS_REQUESTS_PER_SECOND_PER_IP": "2.5",
            "ERRAND_RELAY_STORAGE_DURABILITY": "normal",
            "UNRELATED": "x",
        ], to: &configuration)
        #expect(configuration.host == "::1" && configuration.port == 9000)
        #expect(configuration.openRegistration)
        #expect(configuration.mailboxQuota.maximumEnvelopes == 5)
        #expect(configuration.requestsPerSecondPerIP == 2.5)
        #expect(configuration.durability == .normal)
        #expect(ConfigurationLoader.environmentName("limits.max_connections") == "ERRAND_RELAY_LIMITS_MAX_CONNECTIONS")
    }

    @Test("Out-of-range values, bad durability and half a TLS setup are refused with the key named")
    func refusals() throws {
        var configuration = RelayConfiguration()
        let range = try #require(throws: ConfigurationError.self) {
            try ConfigurationLoader.apply(environment: ["ERRAND_RELAY_LIMITS_MAX_ENVELOPE_BYTES": "70000"], to: &configuration)
        }
        #expect(range.description.contains("limits.max_envelope_bytes must be between 64 and 65536"))
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.apply(environment: ["ERRAND_RELAY_STORAGE_DURABILITY": "maybe"], to: &configuration)
        }
        var halfTLS = RelayConfiguration()
        halfTLS.tlsCertificatePath = "/cert.pem"
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.validate(halfTLS) }
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parseListen("8080") }
        #expect(try ConfigurationLoader.parseListen(":8443") == ("0.0.0.0", 8443))
    }

    @Test("web.*: the companion's switch, folder and allowed origins, with bad origins refused by name")
    func webSettings() throws {
        var configuration = RelayConfiguration()
        try ConfigurationLoader.apply(environment: [
            "ERRAND_RELAY_WEB_ENABLED": "false",
            "ERRAND_RELAY_WEB_ROOT": "/srv/errand-web",
            "ERRAND_RELAY_WEB_ALLOWED_ORIGINS": "https://Errand.Example.org:443, https://b.example:8443,http://127.0.0.1:8080",
        ], to: &configuration)
        #expect(!configuration.webEnabled && configuration.webRoot == "/srv/errand-web")
        #expect(configuration.webAllowedOrigins == ["https://errand.example.org", "https://b.example:8443", "http://127.0.0.1:8080"])
        for (origin, complaint) in [
            ("https://errand.example.org/app/", "without a path"),
            ("errand.example.org", "is not an origin"),
            ("http://errand.example.org", "must use https"),
            ("*", "is not an origin"),
        ] {
            var refused = RelayConfiguration()
            let error = try #require(throws: ConfigurationError.self) {
                try ConfigurationLoader.apply(environment: ["ERRAND_RELAY_WEB_ALLOWED_ORIGINS": origin], to: &refused)
            }
            #expect(error.description.contains(complaint), "\(origin): \(error)")
        }
    }

    @Test("PostgreSQL URLs: forms, TLS modes, sockets, PGPASSWORD, and errors that never show the password")
    func postgresLocations() throws {
        let full = try PostgresLocation(url: "postgres://relay:p%40ss%25word@db.example:6543/errand?sslmode=require", environment: [:])
        #expect(full.host == "db.example" && full.port == 6543 && full.username == "relay" && full.database == "errand")
        #expect(full.tls == .require)
        #expect(full.redacted == "postgres://relay@db.example:6543/errand")
        #expect(!full.description.contains("p@ss"))
        #expect(PostgresLocation.hasPassword("postgres://relay:secret@db/errand"))
        #expect(!PostgresLocation.hasPassword("postgres://relay@db/errand"))

        let socket = try PostgresLocation(url: "postgresql://relay@/errand?host=/run/postgresql", environment: ["PGPASSWORD": "from-env"])
        #expect(socket.socketDirectory == "/run/postgresql" && socket.port == 5432 && socket.tls == .prefer)
        #expect(socket.redacted == "postgres://relay@/errand?host=/run/postgresql")

        for (url, complaint) in [
            ("mysql://relay@db/errand", "must be a URL like"),
            ("postgres://db/errand", "names no user"),
            ("postgres://relay@db/", "names no database"),
            ("postgres://relay:hunter2@db/errand?sslmode=sometimes", "sslmode"),
            ("postgres://relay:hunter2@db/errand?pool=3", "unknown parameter 'pool'"),
            ("postgres://relay@/errand", "names no host"),
        ] {
            #expect(throws: ConfigurationError.self) { try PostgresLocation(url: url, environment: [:]) }
            do { _ = try PostgresLocation(url: url, environment: [:]) } catch {
                #expect(error.description.contains(complaint), "\(url): \(error)")
                #expect(!error.description.contains("hunter2"))
            }
        }
    }
}
