import ArgumentParser
import ErrandCompanion
import ErrandPeer
import ErrandProtocol
import ErrandQR
import ErrandRelayClient
import Foundation

/// `errand pair`: the companion's side of pairing.
struct PairCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pair",
        abstract: "Pair this device with a host from its pairing code.",
        discussion: """
            Give the code as an image (--image, decoded here), as a file holding the URI (--uri-file), \
            as '-' to read the URI from standard input, or as the URI itself (visible to other users of \
            this machine while the command runs). Prints 'SAS: ddd ddd': it must match the computer's.
            """)

    @OptionGroup var peer: PeerOptions
    @Option(help: ArgumentHelp("This device's name, shown on the host (default: the name given at the first pairing, else this machine's name).", valueName: "name"))
    var name: String?
    @Flag(help: "Do not ask before pairing with the host in the code.")
    var yes = false
    @Option(help: ArgumentHelp("A PNG or JPEG image of the pairing QR code.", valueName: "file"))
    var image: String?
    @Option(help: ArgumentHelp("A file holding the pairing URI.", valueName: "file"))
    var uriFile: String?
    @Argument(help: ArgumentHelp("The pairing URI (errand://pair?…), or '-' to read it from standard input.", valueName: "uri"))
    var uri: String?

    func validate() throws {
        guard [image != nil, uriFile != nil, uri != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give the pairing code once: a URI, --image FILE or --uri-file FILE")
        }
    }

    func run() async throws {
        let text = try readOffer()
        let offer: PairingOffer
        do { offer = try PairingOffer(uri: text) } catch { throw UserFacingError(error.message, hint: error.hint) }
        let host = try await reportingPeerErrors {
            let directory = peer.directory
            let store = try CompanionStore(directory: directory)
            let deviceName: String
            if let name {
                deviceName = name
            } else if let stored = try? store.deviceName() {
                deviceName = stored
            } else {
                deviceName = thisMachineName(fallback: "device")
            }
            do { try DeviceName.validate(deviceName) } catch let error as PairingError { throw PeerError(error.message, hint: error.hint) }
            let relay = peer.relay ?? offer.relayURL
            Console.warnIfUnencrypted(relay: relay)
            // Signed requests name the relay key the host put in the offer (for the offer's relay).
            let pinned = RelayClient.sameRelay(relay, offer.relayURL) ? offer.auditVerifierKey : nil
            let paired = try await CompanionPairing(store: store, client: RelayClient(baseURL: relay, pinnedRelayKey: pinned), relayURL: relay)
                .run(offer: offer, deviceName: deviceName, presenter: Presenter(autoApprove: yes))
            if name != nil || (try? store.deviceName()) == nil { try? store.setDeviceName(deviceName) }
            return paired
        }
        Console.line("Paired with “\(host.name)” (fingerprint \(host.fingerprint)). Send it work with: errand send --host \(host.name) TEXT")
    }

    private func readOffer() throws -> String {
        if let image {
            do { return try QRScanner.decode(imageAt: image) } catch { throw UserFacingError(error.message, hint: error.hint) }
        }
        if let uriFile {
            guard let text = try? String(contentsOfFile: uriFile, encoding: .utf8) else {
                throw UserFacingError("cannot read the pairing URI from \(uriFile)", hint: "check the path and its permissions")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if uri != "-" {
            Console.warn("a pairing URI on the command line is visible to other users of this machine while it runs; prefer --image, --uri-file or '-'")
        }
        if uri == "-" {
            return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return uri ?? ""
    }

    struct Presenter: CompanionPairingPresenter {
        let autoApprove: Bool

        func approve(hostName: String, fingerprint: String, relayURL: String) async -> Bool {
            Console.line("Pairing with “\(hostName)” (fingerprint \(fingerprint)) through \(relayURL).")
            if autoApprove { return true }
            return Console.confirm("Go on?")
        }

        func showSAS(_ sas: ShortAuthenticationString) {
            Console.line("SAS: \(sas)")
            Console.line("Check that the computer shows the same SAS, then accept there.")
        }

        func status(_ line: String) { Console.line(line) }
    }
}

/// `errand hosts`: the hosts this device is paired with.
struct HostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hosts", abstract: "List the hosts this device is paired with.")

    @OptionGroup var peer: PeerOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let hosts = try await reportingPeerErrors {
            let directory = peer.directory
            guard CompanionStore.exists(in: directory) else { return [PairedHost]() }
            do { return try CompanionStore(directory: directory).hosts() } catch let error as PeerError { throw error } catch {
                throw PeerError("cannot read the paired hosts: \(error)")
            }
        }
        if json {
            let objects = hosts.map { host -> [String: Any] in
                ["name": host.name, "fingerprint": host.fingerprint, "relay": host.relayURL, "pairedAt": host.pairedAt,
                 "lastHeardAt": host.lastHeardAt ?? NSNull()]
            }
            try Console.json(objects)
            return
        }
        guard !hosts.isEmpty else {
            Console.line("This device is not paired with any host. Pair with: errand pair --image CODE.png")
            return
        }
        Console.line(Table.render(header: ["NAME", "FINGERPRINT", "RELAY", "PAIRED", "LAST HEARD"], rows: hosts.map { host in
            [host.name, host.fingerprint, host.relayURL, HostCommand.Devices.time(host.pairedAt), host.lastHeardAt.map(HostCommand.Devices.time) ?? "never"]
        }))
    }
}
