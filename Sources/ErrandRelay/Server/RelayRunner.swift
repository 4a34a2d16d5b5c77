import ErrandCrypto
import ErrandProtocol
import Foundation
import Hummingbird
public import Logging

/// Starts and administers a relay from a data folder: what the `errand-relay` commands do.
public enum RelayRunner {
    /// Creates the data folder (mode 0700) if needed and opens the SQLite store in it.
    public static func openStore(_ configuration: RelayConfiguration) throws -> SQLiteRelayStore {
        let directory = configuration.dataDirectory
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw RelayStartupError("cannot create the data folder \(directory): \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw RelayStartupError("\(directory) is a file, not a data folder")
        }
        do {
            return try SQLiteRelayStore(directory: directory, durability: configuration.durability)
        } catch {
            throw RelayStartupError("cannot open the relay database in \(directory): \(error)")
        }
    }

    /// Serves until SIGTERM/SIGINT, then shuts down gracefully (stops accepting, finishes
    /// in-flight requests and commits, closes the store). `onListening` gets the bound port.
    public static func serve(configuration: RelayConfiguration, logger: Logger,
                             onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let store = try openStore(configuration)
        let app = try RelayServer.buildApplication(configuration: configuration, store: store, logger: logger, onListening: onListening)
        try await app.runService()
    }

    /// Creates a registration token valid for `configuration.inviteTTL` and returns it (the store keeps only its hash).
    public static func invite(configuration: RelayConfiguration) async throws -> String {
        let store = try openStore(configuration)
        let token = SecretBytes.random(count: 32)
        try await store.addInvite(TokenHash(of: token), expiresAt: Int64(Date().timeIntervalSince1970) + configuration.inviteTTL)
        try await store.close()
        return ByteEncoding.base64URL(token)
    }
}
