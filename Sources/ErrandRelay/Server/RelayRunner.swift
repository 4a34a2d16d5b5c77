import ErrandCrypto
import ErrandProtocol
import Foundation
import Hummingbird
public import Logging
import ErrandTransparency

/// Starts and administers a relay from a data folder: what the `errand-relay` commands do.
public enum RelayRunner {
    /// Creates the data folder (mode 0700) if needed.
    static func prepareDataDirectory(_ configuration: RelayConfiguration) throws {
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
    }

    /// Creates the data folder if needed and opens the SQLite store in it.
    public static func openSQLiteStore(_ configuration: RelayConfiguration, logger: Logger? = nil) throws -> SQLiteRelayStore {
        try prepareDataDirectory(configuration)
        do {
            return try SQLiteRelayStore(directory: configuration.dataDirectory, durability: configuration.durability,
                                        auditLog: configuration.auditLog, logger: logger)
        } catch {
            throw RelayStartupError("cannot open the relay database in \(configuration.dataDirectory): \(error)")
        }
    }

    /// The configured store: PostgreSQL when `storage.postgres` is set, otherwise SQLite in the data folder.
    public static func openStore(_ configuration: RelayConfiguration, logger: Logger) async throws -> any RelayStore {
        guard let url = configuration.postgresURL else { return try openSQLiteStore(configuration, logger: logger) }
        try prepareDataDirectory(configuration)
        return try await PostgresRelayStore.open(PostgresLocation(url: url), maximumConnections: configuration.postgresMaximumConnections,
                                                 auditLog: configuration.auditLog, logger: logger)
    }

    /// Where the relay keeps envelopes, for messages (never with a password).
    public static func storeDescription(_ configuration: RelayConfiguration) -> String {
        if let url = configuration.postgresURL, let location = try? PostgresLocation(url: url) { return location.redacted }
        return configuration.dataDirectory
    }

    /// Serves until SIGTERM/SIGINT, then shuts down gracefully (stops accepting, finishes
    /// in-flight requests and commits, closes the store). `onListening` gets the bound port.
    public static func serve(configuration: RelayConfiguration, logger: Logger,
                             onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let keyPath = AuditLog.keyPath(dataDirectory: configuration.dataDirectory)
        let hadKey = FileManager.default.fileExists(atPath: keyPath)
        let signer = try loadSigner(configuration)
        let store = try await openStore(configuration, logger: logger)
        if let shared = store as? PostgresRelayStore {
            do { try await shared.pinAuditVerifierKey(signer.verifier.description, dataDirectory: configuration.dataDirectory, createdNow: !hadKey) } catch {
                // A key made by this start and refused never signed anything: leave the folder
                // as it was, ready for the shared key.
                if !hadKey { try? FileManager.default.removeItem(atPath: keyPath) }
                try? await store.close()
                throw error
            }
        }
        let app = try RelayServer.buildApplication(configuration: configuration, store: store, logger: logger, auditSigner: signer, onListening: onListening)
        try await app.runService()
    }

    /// The audit log's signer from the data folder, creating the key on first use.
    static func loadSigner(_ configuration: RelayConfiguration) throws -> NoteSigner {
        try prepareDataDirectory(configuration)
        do { return try AuditLog.loadSigner(dataDirectory: configuration.dataDirectory, origin: nil) } catch {
            throw RelayStartupError("cannot load or create the audit log key in \(configuration.dataDirectory): \(error)")
        }
    }

    /// The audit log's verifier key (`name+hash+key`), creating the key on first use.
    public static func verifierKey(configuration: RelayConfiguration) throws -> String {
        try loadSigner(configuration).verifier.description
    }

    /// The audit log's key as one line, for another node of the same database (a secret).
    public static func exportAuditKey(configuration: RelayConfiguration) throws -> String {
        try AuditKeyTransfer.export(dataDirectory: configuration.dataDirectory)
    }

    /// Installs a key exported from another node into this node's data folder (creating it).
    /// - Returns: the verifier key of the installed key.
    public static func installAuditKey(_ text: String, configuration: RelayConfiguration, replace: Bool) throws -> String {
        try prepareDataDirectory(configuration)
        return try AuditKeyTransfer.install(text, dataDirectory: configuration.dataDirectory, replace: replace)
    }

    /// The operator's audit of the store (see ``RelayAuditor``).
    public static func audit(configuration: RelayConfiguration, logger: Logger) async throws -> AuditReport {
        let signer = try loadSigner(configuration)
        let store = try await openStore(configuration, logger: logger)
        let snapshot: AuditSnapshot
        do {
            guard let auditable = store as? any AuditableStore else { throw RelayStartupError("this store cannot be audited") }
            snapshot = try await auditable.auditSnapshot()
        } catch {
            try? await store.close()
            throw error
        }
        try? await store.close()
        return RelayAuditor.audit(snapshot, verifier: signer.verifier)
    }

    /// Creates a registration token valid for `configuration.inviteTTL` and returns it (the store keeps only its hash).
    public static func invite(configuration: RelayConfiguration, logger: Logger) async throws -> String {
        let store = try await openStore(configuration, logger: logger)
        let token = SecretBytes.random(count: 32)
        try await store.addInvite(TokenHash(of: token), expiresAt: Int64(Date().timeIntervalSince1970) + configuration.inviteTTL)
        try await store.close()
        return ByteEncoding.base64URL(token)
    }
}
