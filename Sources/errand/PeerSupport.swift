import ArgumentParser
import ErrandHost
import ErrandPeer
import ErrandRelayClient
import Foundation

/// Options every peer command takes.
struct PeerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("State folder (default: $ERRAND_HOME, else ~/.errand).", valueName: "dir"))
    var home: String?

    @Option(help: ArgumentHelp("Reach the relay at this address instead of the stored one (another node of the same relay).", valueName: "url"))
    var relay: String?

    var directory: StateDirectory { StateDirectory.resolve(home) }
}

extension UserFacingError {
    init(_ error: PeerError) {
        self.init(error.message, hint: error.hint)
    }
}

/// Runs peer work, turning ``PeerError`` into the `errand: error:` / `errand: hint:` form.
func reportingPeerErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as PeerError {
        throw UserFacingError(error)
    }
}

/// Console output for peer commands: results on stdout (flushed at once, so a script reading a
/// pipe sees each line as it happens), questions answered on stdin.
enum Console {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// A JSON value on one line (`pretty: false`, for scripts reading lines) or indented, keys sorted.
    static func json(_ value: Any, pretty: Bool = true) throws {
        let options: JSONSerialization.WritingOptions = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        line(String(decoding: try JSONSerialization.data(withJSONObject: value, options: options), as: UTF8.self))
    }

    /// `errand: warning: …` on standard error.
    static func warn(_ text: String) {
        FileHandle.standardError.write(Data("errand: warning: \(text)\n".utf8))
    }

    /// Warns when `relay` is plain http to another machine (a relay should be behind TLS).
    static func warnIfUnencrypted(relay: String) {
        guard RelayClient.isUnencryptedRemote(relay) else { return }
        warn("the relay \(relay) is plain http: the envelopes stay sealed, but send tokens, sizes and timing cross the network in the clear; use https:// (a TLS proxy in front of the relay: docs/operations.md) unless this network is yours alone")
    }

    /// Asks a yes/no question; only "y" or "yes" is yes. Standard input at its end counts as no.
    static func confirm(_ question: String) -> Bool {
        FileHandle.standardOutput.write(Data((question + " [y/N] ").utf8))
        guard let answer = readLine() else {
            line("")
            return false
        }
        return ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased())
    }
}

/// A relay client for `url`.
func relayClient(_ url: String) -> RelayClient {
    RelayClient(baseURL: url)
}

/// A host's relay client for `url`: signed requests name the relay's audit-log key pinned at
/// setup, when `url` is the relay the host was set up with.
func relayClient(_ url: String, for host: HostSetup.Host) -> RelayClient {
    let pinned = RelayClient.sameRelay(url, host.settings.relayURL) ? (try? host.store.pinnedAuditKey()) ?? nil : nil
    return RelayClient(baseURL: url, pinnedRelayKey: pinned)
}
