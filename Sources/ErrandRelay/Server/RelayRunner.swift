import ErrandCrypto
import ErrandProtocol
import Foundation
import Hummingbird
public import Logging
import ErrandTransparency

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
            return try SQLiteRelayStore(directory: directory, durability: configuration.durability, auditLog: configuration.auditLog)
        } catch {
            throw RelayStartupError("cannot open the relay database in \(directory): \(error)")
        }
    }

    /// Serves until SIGTERM/SIGINT, then shuts down gracefully (stops accepting, finishes
    /// in-flight requests and commits, closes the store). `onListening` gets the bound port.
    public static func serve(configuration: RelayConfiguration, logger: Logger,
                             onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let store = try openStore(configuration)
        let signer: NoteSigner
        do { signer = try AuditLog.loadSigner(dataDirectory: configuration.dataDirectory, origin: nil) } catch {
            throw RelayStartupError("cannot load or create the audit log key in \(configuration.dataDirectory): \(error)")
        }
        let app = try RelayServer.buildApplication(configuration: configuration, store: store, logger: logger, auditSigner: signer, onListening: onListening)
        try await app.runService()
    }

    /// The audit log's verifier key (`name+hash+key`), creating the key on first use.
    public static func verifierKey(configuration: RelayConfiguration) throws -> String {
        _ = try openStore(configuration)
        do { return try AuditLog.loadSigner(dataDirectory: configuration.dataDirectory, origin: nil).verifier.description } catch {
            throw RelayStartupError("cannot load or create the audit log key in \(configuration.dataDirectory): \(error)")
        }
    }

    /// The operator's audit of the data folder (see ``RelayAuditor``).
    public static func audit(configuration: RelayConfiguration) throws -> AuditReport {
        let store = try openStore(configuration)
        let signer: NoteSigner
        do { signer = try AuditLog.loadSigner(dataDirectory: configuration.dataDirectory, origin: nil) } catch {
            throw RelayStartupError("cannot load the audit log key in \(configuration.dataDirectory): \(error)")
        }
        return try RelayAuditor.audit(store: store, verifier: signer.verifier)
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
