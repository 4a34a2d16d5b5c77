import ArgumentParser
import ErrandCompanion
import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandQR
import ErrandRelayClient
import Foundation
import Synchronization

/// Time from a scanned QR code to the SAS on both screens, with a real relay process on loopback:
/// the companion decodes the PNG with zbar, parses the offer, sends its sealed request; the host
/// finds it, verifies the proof and shows the SAS.
struct PairingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pairing",
        abstract: "QR image → SAS on both sides, over a real relay on loopback (needs 'swift build -c release').")

    @Option(help: "Pairings to run.") var count = 20

    func run() async throws {
        let relay = try RelayProcessHandle(environment: ["ERRAND_RELAY_LOG_LEVEL": "error"])
        defer { relay.stop() }
        let client = RelayClient(baseURL: relay.url)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("errand-bench-pairing-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let host = try await HostSetup.initialize(directory: StateDirectory(path: folder + "/host"), relayURL: relay.url,
                                                  name: "bench", invite: nil, client: client)
        var hostSAS: [Double] = [], companionSAS: [Double] = [], total: [Double] = []
        for index in 0..<count {
            let presenter = TimingHostPresenter(pngPath: folder + "/code-\(index).png")
            let hostSide = Task { try await HostPairing(host: host, client: client, relayURL: relay.url).run(lifetime: 60, presenter: presenter) }
            while presenter.shown == nil { try await Task.sleep(for: .milliseconds(5)) }
            let start = ContinuousClock.now
            presenter.start.withLock { $0 = start }
            let offer = try PairingOffer(uri: try QRScanner.decode(imageAt: folder + "/code-\(index).png"))
            let store = try CompanionStore(directory: StateDirectory(path: folder + "/companion-\(index)"))
            let companionPresenter = TimingCompanionPresenter()
            _ = try await CompanionPairing(store: store, client: client, relayURL: relay.url)
                .run(offer: offer, deviceName: "device-\(index)", presenter: companionPresenter)
            _ = try await hostSide.value
            let end = ContinuousClock.now
            companionSAS.append(Self.milliseconds(companionPresenter.shownAt.withLock { $0! } - start))
            hostSAS.append(Self.milliseconds(presenter.confirmedAt.withLock { $0! } - start))
            total.append(Self.milliseconds(end - start))
        }
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        let worst = { (values: [Double]) in values.max() ?? 0 }
        print("errand-bench pairing: \(count) pairings over \(relay.url); from the QR image to …, in ms (median / worst)")
        print(String(format: "SAS on the companion    %7.1f / %7.1f", median(companionSAS), worst(companionSAS)))
        print(String(format: "SAS on the host         %7.1f / %7.1f", median(hostSAS), worst(hostSAS)))
        print(String(format: "both sides paired       %7.1f / %7.1f", median(total), worst(total)))
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

final class TimingHostPresenter: HostPairingPresenter, Sendable {
    let pngPath: String
    let offer = Mutex<PairingOffer?>(nil)
    let start = Mutex<ContinuousClock.Instant?>(nil)
    let confirmedAt = Mutex<ContinuousClock.Instant?>(nil)
    init(pngPath: String) { self.pngPath = pngPath }
    var shown: PairingOffer? { offer.withLock { $0 } }

    func present(_ offer: PairingOffer) async throws(PeerError) {
        do { try OwnerOnlyFile.write(try QRCode(encoding: offer.uri).pngData(), to: pngPath) } catch {
            throw PeerError("cannot write the code: \(error)")
        }
        self.offer.withLock { $0 = offer }
    }

    func confirm(deviceName: String, fingerprint: String, sas: ShortAuthenticationString) async -> Bool {
        confirmedAt.withLock { $0 = ContinuousClock.now }
        return true
    }

    func status(_ line: String) {}
}

final class TimingCompanionPresenter: CompanionPairingPresenter, Sendable {
    let shownAt = Mutex<ContinuousClock.Instant?>(nil)
    func approve(hostName: String, fingerprint: String, relayURL: String) async -> Bool { true }
    func showSAS(_ sas: ShortAuthenticationString) { shownAt.withLock { $0 = ContinuousClock.now } }
    func status(_ line: String) {}
}
