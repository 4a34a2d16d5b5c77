import ErrandCompanion
import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import Synchronization

/// A relay process with open registration and a scratch folder for peers' state.
struct PeerWorld {
    let folder: ScratchFolder
    let relay: RelayProcess

    static func start() async throws -> PeerWorld {
        let folder = try ScratchFolder()
        let relay = try await RelayProcess.start(data: folder.path("relay"), arguments: ["--open-registration"])
        return PeerWorld(folder: folder, relay: relay)
    }

    var client: RelayClient { RelayClient(baseURL: relay.baseURL) }

    func makeHost(_ name: String = "studio") async throws -> HostSetup.Host {
        try await HostSetup.initialize(directory: StateDirectory(path: folder.path("host-\(name)")), relayURL: relay.baseURL,
                                       name: name, invite: nil, client: client)
    }

    func companion(_ name: String) throws -> CompanionStore {
        try CompanionStore(directory: StateDirectory(path: folder.path("companion-\(name)")))
    }

    func pairing(_ host: HostSetup.Host, lifetime: TimeInterval = 60, presenter: HostPresenter) -> Task<Result<Device, PeerError>, Never> {
        Task {
            do { return .success(try await HostPairing(host: host, client: client, relayURL: relay.baseURL).run(lifetime: lifetime, presenter: presenter)) }
            catch let error as PeerError { return .failure(error) }
            catch { return .failure(PeerError("\(error)")) }
        }
    }

    func companionPairing(_ store: CompanionStore, offer: PairingOffer, name: String = "phone", relayURL: String? = nil,
                          presenter: CompanionPresenter = CompanionPresenter(), grace: TimeInterval = 5) async -> Result<PairedHost, PeerError> {
        var pairing = CompanionPairing(store: store, client: RelayClient(baseURL: relayURL ?? relay.baseURL), relayURL: relayURL ?? relay.baseURL)
        pairing.grace = grace
        do { return .success(try await pairing.run(offer: offer, deviceName: name, presenter: presenter)) }
        catch { return .failure(error) }
    }

    /// Pairs a new companion with `host`, both sides accepting.
    func pair(_ host: HostSetup.Host, companionName: String) async throws -> (CompanionStore, PairedHost, Device) {
        let presenter = HostPresenter()
        let hostSide = pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        let store = try companion(companionName)
        let paired = try await companionPairing(store, offer: offer, name: companionName).get()
        let device = try await hostSide.value.get()
        return (store, paired, device)
    }
}

/// Host presenter for tests: hands out the offer, records the SAS, accepts or declines.
final class HostPresenter: HostPairingPresenter, Sendable {
    enum Decision: Sendable { case accept, decline, hang }
    let decision: Decision
    private let state = Mutex<(offer: PairingOffer?, sas: ShortAuthenticationString?, asked: Int)>((nil, nil, 0))

    init(_ decision: Decision = .accept) { self.decision = decision }

    func present(_ offer: PairingOffer) async throws(PeerError) { state.withLock { $0.offer = offer } }

    func confirm(deviceName: String, fingerprint: String, sas: ShortAuthenticationString) async -> Bool {
        state.withLock { $0.sas = sas; $0.asked += 1 }
        switch decision {
        case .accept: return true
        case .decline: return false
        case .hang:
            try? await Task.sleep(for: .seconds(3600))
            return false
        }
    }

    func status(_ line: String) {}

    var sas: ShortAuthenticationString? { state.withLock { $0.sas } }
    var timesAsked: Int { state.withLock { $0.asked } }

    /// Waits for the offer to be shown.
    func offer() async throws -> PairingOffer {
        for _ in 0..<500 {
            if let offer = state.withLock({ $0.offer }) { return offer }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestSupportError("the host never showed an offer")
    }
}

/// Companion presenter for tests: approves and records the SAS it shows.
final class CompanionPresenter: CompanionPairingPresenter, Sendable {
    private let shown = Mutex<ShortAuthenticationString?>(nil)
    func approve(hostName: String, fingerprint: String, relayURL: String) async -> Bool { true }
    func showSAS(_ sas: ShortAuthenticationString) { shown.withLock { $0 = sas } }
    func status(_ line: String) {}
    var sas: ShortAuthenticationString? { shown.withLock { $0 } }
}

extension Result {
    /// The failure, or nil on success.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// A copy of `offer` with one query parameter replaced.
func altered(_ offer: PairingOffer, _ parameter: String, to value: String) throws -> PairingOffer {
    var parts = offer.uri.components(separatedBy: "&")
    let prefix = parameter == "v" ? PairingOffer.uriPrefix + "v=" : parameter + "="
    guard let index = parts.firstIndex(where: { $0.hasPrefix(prefix) }) else { throw TestSupportError("no \(parameter) in the offer") }
    parts[index] = prefix + value
    return try PairingOffer(uri: parts.joined(separator: "&"))
}
