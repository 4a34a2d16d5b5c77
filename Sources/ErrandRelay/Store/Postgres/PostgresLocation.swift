public import Foundation
import NIOSSL
import PostgresNIO

/// Where a PostgreSQL database is and how to log in, from a `postgres://` URL.
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`, or
/// `postgres://USER@/DATABASE?host=/run/postgresql` for a Unix socket folder. The password may
/// instead come from `PGPASSWORD`, which keeps it out of command lines and config files. The
/// password never appears in ``redacted`` or in any error.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable, Equatable {
        case disable, prefer, require
    }

    public let host: String
    public let port: Int
    /// A Unix socket folder (as libpq's `host=/path`): connects to `PATH/.s.PGSQL.PORT`.
    public let socketDirectory: String?
    public let username: String
    let password: String?
    public let database: String
    public let tls: TLSMode

    /// Parses a URL; `environment` supplies `PGPASSWORD` when the URL has no password.
    public init(url text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) {
        guard let components = URLComponents(string: text),
              let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql" else {
            throw ConfigurationError("the PostgreSQL location must be a URL like postgres://errand@db.example:5432/errand, not '\(Self.redact(text))'")
        }
        guard let user = components.user, !user.isEmpty else {
            throw ConfigurationError("the PostgreSQL URL names no user (postgres://USER@HOST/DATABASE)")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw ConfigurationError("the PostgreSQL URL names no database (postgres://USER@HOST/DATABASE)")
        }
        var tls = TLSMode.prefer
        var socketDirectory: String?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw ConfigurationError("sslmode in the PostgreSQL URL must be disable, prefer or require, not '\(item.value ?? "")'")
                }
            case "host":
                guard let path = item.value, path.hasPrefix("/") else {
                    throw ConfigurationError("host= in the PostgreSQL URL must be a socket folder such as /run/postgresql")
                }
                socketDirectory = path
            case "application_name", "connect_timeout":
                continue
            default:
                throw ConfigurationError("the PostgreSQL URL has an unknown parameter '\(item.name)' (known: sslmode, host)")
            }
        }
        let host = components.host ?? ""
        guard !host.isEmpty || socketDirectory != nil else {
            throw ConfigurationError("the PostgreSQL URL names no host (postgres://USER@HOST/DATABASE)")
        }
        if let port = components.port, !(1...65_535).contains(port) {
            throw ConfigurationError("the PostgreSQL URL's port must be between 1 and 65535")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.socketDirectory = socketDirectory
        self.username = user
        // URLComponents has already percent-decoded it.
        self.password = components.password ?? environment["PGPASSWORD"]
        self.database = database
        self.tls = tls
    }

    /// The URL without its password, for logs and messages.
    public var redacted: String {
        let target = socketDirectory.map { "/\(database)?host=\($0)" } ?? "\(host):\(port)/\(database)"
        return "postgres://\(username)@\(target)"
    }

    public var description: String { redacted }

    /// Whether the text, taken as a URL, carries a password (it should not be on a command line).
    public static func hasPassword(_ text: String) -> Bool {
        URLComponents(string: text)?.password.map { !$0.isEmpty } ?? false
    }

    /// Some text with any `:password@` removed.
    static func redact(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = nil
        return components.string ?? "(a URL)"
    }

    /// Settings for a pool of up to `maximumConnections`.
    func clientConfiguration(maximumConnections: Int) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password, database: database)
        } else {
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: clientTLS)
        }
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    /// Settings for one connection of its own (the audit sequencer's lock, the change listener).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketDirectory {
            return .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password, database: database)
        }
        let tls: PostgresConnection.Configuration.TLS
        switch self.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(try .init(configuration: .makeClientConfiguration()))
        case .require: tls = .require(try .init(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        return configuration
    }

    private var clientTLS: PostgresClient.Configuration.TLS {
        switch tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }
}
