public import ErrandPeer
import ErrandProtocol
public import ErrandRelayClient
import Foundation

/// `errand host init` and loading an initialised host.
public enum HostSetup {
    /// An initialised host: its settings, keys and store.
    public struct Host: Sendable {
        public let directory: StateDirectory
        public let settings: HostSettings
        public let identity: HostIdentity
        public let store: HostStore
    }

    /// Creates the host's keys, registers its mailbox at the relay, then saves keys and settings.
    /// Nothing is written unless the relay accepted the mailbox.
    /// - Throws: ``PeerError`` (already initialised, bad URL or name, relay refused or unreachable).
    public static func initialize(
        directory: StateDirectory, relayURL: String, name: String?, invite: String?, client: RelayClient
    ) async throws(PeerError) -> Host {
        do { try PairingOffer.validateRelayURL(relayURL) } catch {
            throw PeerError("\(relayURL) is not a relay address", hint: "give an http:// or https:// URL, like http://127.0.0.1:8080")
        }
        let name = name ?? thisMachineName(fallback: "computer")
        do { try DeviceName.validate(name) } catch { throw PeerError("the host name is not usable: \(error.message)", hint: error.hint) }
        try directory.prepare()
        if directory.contains(HostIdentity.signingFile) {
            throw PeerError("\(directory.path) already holds a host", hint: "use it as it is, or choose another folder with --home")
        }
        let identity = HostIdentity()
        do {
            try await client.createMailbox(owner: identity.signing, invite: invite)
        } catch {
            var failure = PeerError(relay: error, relayURL: relayURL, doing: "register this host's mailbox")
            if error.code == .unauthenticated || error.code == .forbidden {
                failure = PeerError(failure.message, hint: "ask the relay's operator for a registration token ('errand-relay invite') and pass it with --invite")
            }
            throw failure
        }
        let store = try HostStore(directory: directory)
        let settings = HostSettings(relayURL: relayURL, name: name, createdAt: Int64(Date().timeIntervalSince1970))
        try identity.save(to: directory)
        do { try store.saveSettings(settings) } catch { throw PeerError("cannot save the host's settings: \(error)") }
        // Pin the relay's audit-log key now; pairing codes carry it to devices.
        if let key = try? await client.auditVerifierKey() { try? store.pinAuditKey(key) }
        try HostConfiguration.writeTemplate(in: directory)
        do {
            try FileManager.default.createDirectory(atPath: ActionCatalog(directory: directory).folder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch { throw PeerError("cannot create the actions folder: \(error.localizedDescription)") }
        return Host(directory: directory, settings: settings, identity: identity, store: store)
    }

    /// Loads a host made by ``initialize(directory:relayURL:name:invite:client:)``.
    public static func load(directory: StateDirectory) throws(PeerError) -> Host {
        guard directory.contains(HostIdentity.signingFile), directory.contains(HostStore.fileName) else {
            throw PeerError("\(directory.path) holds no host", hint: "run 'errand host init --home \(directory.path) --relay URL' first")
        }
        try directory.prepare()
        let identity = try HostIdentity.load(from: directory)
        let store = try HostStore(directory: directory)
        let settings: HostSettings?
        do { settings = try store.settings() } catch { throw PeerError("cannot read the host's settings: \(error)") }
        guard let settings else {
            throw PeerError("the host in \(directory.path) was not fully initialised", hint: "remove the folder and run 'errand host init' again")
        }
        return Host(directory: directory, settings: settings, identity: identity, store: store)
    }
}
