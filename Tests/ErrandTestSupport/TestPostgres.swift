import Foundation

/// The PostgreSQL server `scripts/test` starts on loopback (its URL in `ERRAND_TEST_POSTGRES_URL`).
/// Each test gets a database of its own, dropped again by ``drop(_:)``.
public enum TestPostgres {
    /// Why PostgreSQL tests are skipped here, or `nil` when a server is available.
    public static let unavailableReason: String? = serverURL == nil
        ? "ERRAND_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL server and sets it)" : nil

    static var serverURL: URLComponents? {
        ProcessInfo.processInfo.environment["ERRAND_TEST_POSTGRES_URL"].flatMap(URLComponents.init(string:))
    }

    /// A new, empty database; returns its URL.
    public static func freshDatabase() async throws -> String {
        guard var components = serverURL else { throw TestSupportError(unavailableReason ?? "no PostgreSQL server") }
        let name = "errand_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let result = try await runAsync("psql", [components.string!, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(name)"])
        guard result.status == 0 else { throw TestSupportError("cannot create a test database: \(result.errorOutput)") }
        components.path = "/" + name
        return components.string!
    }

    /// Drops a database made by ``freshDatabase()`` (after its connections are gone).
    public static func drop(_ url: String) async {
        guard var components = serverURL, let name = URLComponents(string: url)?.path.dropFirst(), name.hasPrefix("errand_test_") else { return }
        components.path = "/postgres"
        _ = try? await runAsync("psql", [components.string!, "-qAt", "-c", "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"])
    }

    /// Runs SQL in a test database (to inspect or tamper with what a store wrote).
    public static func sql(_ url: String, _ statement: String) async throws -> String {
        let result = try await runAsync("psql", [url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", statement])
        guard result.status == 0 else { throw TestSupportError("psql failed: \(result.errorOutput)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension RelayProcess {
    /// `count` relay nodes on one PostgreSQL database (given by environment, as an operator
    /// would, not on the command line), each with a data folder under `root` holding the same
    /// audit key — copied from the first node's folder, as docs/operations.md says.
    public static func startNodes(_ count: Int, database: String, root: String, arguments: [String] = ["--open-registration"],
                                  environment: [String: String] = [:]) async throws -> [RelayProcess] {
        var environment = environment
        environment["ERRAND_RELAY_STORAGE_POSTGRES"] = database
        var nodes: [RelayProcess] = []
        for index in 0..<count {
            let data = root + "/node-\(index)"
            if index > 0 {
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                try FileManager.default.copyItem(atPath: root + "/node-0/audit.key", toPath: data + "/audit.key")
            }
            nodes.append(try await start(data: data, arguments: arguments, environment: environment))
        }
        return nodes
    }
}
