import ArgumentParser
import ErrandCrypto
import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandQR
import ErrandRelayClient
import Foundation

/// `errand host …`: the computer's side.
struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Set up this computer as a host, pair devices with it, and manage them.",
        subcommands: [Init.self, Pair.self, Run.self, Devices.self, Revoke.self, Policy.self, Log.self, ApprovalTool.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create this host's keys and register its mailbox at a relay.",
            discussion: "Keys go in the state folder (mode 0700; key files 0600). A registration token on the command line is visible to other users of this machine while the command runs: prefer --invite-file or ERRAND_INVITE.")

        @OptionGroup var peer: PeerOptions
        @Option(help: ArgumentHelp("Name devices see for this computer (default: its host name).", valueName: "name"))
        var name: String?
        @Option(help: ArgumentHelp("Registration token from 'errand-relay invite' (when the relay's registration is not open).", valueName: "token"))
        var invite: String?
        @Option(help: ArgumentHelp("Read the registration token from this file.", valueName: "file"))
        var inviteFile: String?

        func run() async throws {
            guard let relay = peer.relay else {
                throw UserFacingError("which relay? pass --relay URL", hint: "for a local test relay: errand-relay serve --listen 127.0.0.1:8080 --data DIR --open-registration")
            }
            var token = invite ?? ProcessInfo.processInfo.environment["ERRAND_INVITE"]
            if let inviteFile {
                guard let text = try? String(contentsOfFile: inviteFile, encoding: .utf8) else {
                    throw UserFacingError("cannot read the registration token from \(inviteFile)", hint: "check the path and its permissions")
                }
                token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            Console.warnIfUnencrypted(relay: relay)
            let host = try await reportingPeerErrors {
                try await HostSetup.initialize(directory: peer.directory, relayURL: relay, name: name, invite: token, client: relayClient(relay))
            }
            Console.line("Host “\(host.settings.name)” is ready in \(host.directory.path)")
            Console.line("  relay: \(host.settings.relayURL)")
            Console.line("  fingerprint: \(Fingerprint.of(host.identity.signing.publicKey))")
            Console.line("Pair a device with: errand host pair --home \(host.directory.path)")
        }
    }

    struct Pair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a pairing code (QR) and pair one device with this host.",
            discussion: "The code holds a one-time secret: files written with --uri-file, --png and --svg are readable by you only (0600). Both sides print a line 'SAS: ddd ddd'; accept only if they match.")

        @OptionGroup var peer: PeerOptions
        @Option(help: ArgumentHelp("Write the pairing URI to this file as soon as it exists.", valueName: "file"))
        var uriFile: String?
        @Option(help: ArgumentHelp("Also write the QR code as a PNG image.", valueName: "file"))
        var png: String?
        @Option(help: ArgumentHelp("Also write the QR code as an SVG image.", valueName: "file"))
        var svg: String?
        @Option(help: ArgumentHelp("How to draw the code in the terminal: auto, ansi, light-on-dark, dark-on-light, none.", valueName: "style"))
        var terminal = "auto"
        @Flag(help: "Accept the device without asking (only when you trust whoever can scan the code).")
        var yes = false
        @Option(help: ArgumentHelp("Seconds the code stays valid (1–600).", valueName: "seconds"))
        var timeout: Int = Int(PairingOffer.defaultLifetime)
        @Option(help: ArgumentHelp("Where the QR code's link opens the web companion (default: pairing.web_app in config.toml, else the relay's /app/).", valueName: "url"))
        var webApp: String?

        func validate() throws {
            guard (1...Int(PairingOffer.maximumLifetime)).contains(timeout) else {
                throw ValidationError("--timeout must be between 1 and \(Int(PairingOffer.maximumLifetime)) seconds")
            }
        }

        func run() async throws {
            let style = try QROutput.terminalStyle(named: terminal)
            if yes {
                Console.warn("--yes accepts whichever device answers the code first, without comparing the SAS; anyone who sees the code could pair")
            }
            let device = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                let configuration = try HostConfiguration.load(from: host.directory)
                let relay = peer.relay ?? host.settings.relayURL
                Console.warnIfUnencrypted(relay: relay)
                let webApp = try await Self.webCompanion(option: webApp, configured: configuration.webApp, relay: relay,
                                                         client: relayClient(relay))
                let presenter = Presenter(uriFile: uriFile, png: png, svg: svg, style: style, autoAccept: yes, webApp: webApp)
                var pairing = HostPairing(host: host, client: relayClient(relay, for: host), relayURL: relay)
                pairing.defaultExecutors = configuration.defaultExecutors
                return try await pairing.run(lifetime: TimeInterval(timeout), presenter: presenter)
            }
            Console.line("Paired with “\(device.name)” (fingerprint \(device.fingerprint)).")
        }

        /// The web companion's address for the QR code's link: the option, else the setting, else
        /// the relay's `/app/` when a phone's browser can use it there (https, or http on loopback)
        /// and the relay serves it; `nil` (the code then holds the `errand://` URI) otherwise.
        static func webCompanion(option: String?, configured: String?, relay: String, client: RelayClient) async throws(PeerError) -> String? {
            if let chosen = option ?? configured {
                do { try PairingOffer.validateWebApp(chosen, isLoopback: { !RelayClient.isUnencryptedRemote($0) }) } catch {
                    throw PeerError(error.message, hint: error.hint)
                }
                return chosen
            }
            guard !RelayClient.isUnencryptedRemote(relay) else {
                Console.warn("the relay is plain http, so a phone's browser cannot run the web companion from it; the QR code holds the errand:// URI for the command-line companion (set pairing.web_app in config.toml to an https address that serves the app)")
                return nil
            }
            if await client.servesWebCompanion() == false {
                Console.warn("the relay does not serve the web companion at /app/ (its web.enabled is off, or it predates the app); the QR code holds the errand:// URI for the command-line companion (set pairing.web_app in config.toml to where you serve the app)")
                return nil
            }
            var base = relay
            while base.hasSuffix("/") { base.removeLast() }
            return base + "/app/"
        }

        struct Presenter: HostPairingPresenter {
            let uriFile: String?
            let png: String?
            let svg: String?
            let style: QRCode.TerminalStyle?
            let autoAccept: Bool
            /// Where the link in the QR code opens the web companion; nil: the code holds the URI.
            let webApp: String?

            func present(_ offer: PairingOffer) async throws(PeerError) {
                let code: QRCode
                let text = webApp.map { offer.link(webApp: $0) } ?? offer.uri
                do { code = try QRCode(encoding: text) } catch { throw PeerError("cannot make the QR code: \(error.description)") }
                do {
                    if let uriFile { try QROutput.writePrivately(Array((offer.uri + "\n").utf8), to: uriFile) }
                    if let png { try QROutput.writePrivately(try code.pngData(), to: png) }
                    if let svg { try QROutput.writePrivately(Array(code.svg().utf8), to: svg) }
                } catch let error as UserFacingError {
                    throw PeerError(error.message, hint: error.hint)
                } catch {
                    throw PeerError("cannot write the pairing code: \(error)")
                }
                if let style { FileHandle.standardOutput.write(Data(code.terminalText(style: style).utf8)) }
                let minutes = Int(offer.expiresAt.timeIntervalSinceNow.rounded()) / 60
                let seconds = Int(offer.expiresAt.timeIntervalSinceNow.rounded()) % 60
                if webApp != nil {
                    Console.line("Scan this code with the phone's camera (it opens the Errand web app), or on a computer run: errand pair --image CODE.png")
                } else {
                    Console.line("Scan this code with the device, or run there: errand pair --image CODE.png")
                }
                Console.line("Waiting for a device (the code expires in \(minutes)m\(String(format: "%02d", seconds))s)…")
            }

            func confirm(deviceName: String, fingerprint: String, sas: ShortAuthenticationString) async -> Bool {
                Console.line("Device “\(deviceName)” (fingerprint \(fingerprint)) asks to pair.")
                Console.line("SAS: \(sas)")
                if autoAccept { return true }
                return Console.confirm("Does the device show the same SAS?")
            }

            func status(_ line: String) { Console.line(line) }
        }
    }

    struct Devices: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the devices paired with this host.")

        @OptionGroup var peer: PeerOptions
        @Flag(help: "Include revoked devices.") var all = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let devices = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                do { return try host.store.devices(includeRevoked: all) } catch { throw PeerError("cannot read the device list: \(error)") }
            }
            if json {
                let objects = devices.map { device -> [String: Any] in
                    var object: [String: Any] = ["name": device.name, "fingerprint": device.fingerprint, "pairedAt": device.pairedAt,
                                                 "policy": device.policy.split(separator: ",").map(String.init), "revoked": device.isRevoked]
                    object["lastSeenAt"] = device.lastSeenAt ?? NSNull()
                    object["revokedAt"] = device.revokedAt ?? NSNull()
                    return object
                }
                try Console.json(objects)
                return
            }
            guard !devices.isEmpty else {
                Console.line("No devices are paired. Pair one with: errand host pair")
                return
            }
            let rows = devices.map { device in
                [device.name, device.fingerprint, Self.time(device.pairedAt), device.lastSeenAt.map(Self.time) ?? "never", device.policy,
                 device.revokedAt.map { "revoked " + Self.time($0) } ?? "active"]
            }
            Console.line(Table.render(header: ["NAME", "FINGERPRINT", "PAIRED", "LAST SEEN", "POLICY", "STATUS"], rows: rows))
        }

        static func time(_ seconds: Int64) -> String {
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyy-MM-dd HH:mm"
            return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a device off: remove its token at the relay and delete its session here.",
            discussion: "The other devices keep working. If the relay cannot be reached the device is still revoked on this computer; run the command again to finish at the relay.")

        @OptionGroup var peer: PeerOptions
        @Argument(help: ArgumentHelp("The device's name or the start of its fingerprint.", valueName: "device"))
        var device: String

        func run() async throws {
            let name = try await reportingPeerErrors {
                let host = try HostSetup.load(directory: peer.directory)
                let target: Device
                do { target = try host.store.device(matching: device) } catch let error as PeerError { throw error } catch {
                    throw PeerError("cannot read the device list: \(error)")
                }
                let relay = peer.relay ?? host.settings.relayURL
                try await DeviceRevocation.revoke(target, host: host, client: relayClient(relay, for: host), relayURL: relay)
                return target.name
            }
            Console.line("Revoked “\(name)”: the relay no longer accepts its messages and this host will not open any.")
        }
    }
}

/// Plain text columns.
enum Table {
    /// Columns padded to their widest cell; every cell shown on one line with its control characters as escapes.
    static func render(header: [String], rows: [[String]]) -> String {
        let all = ([header] + rows).map { $0.map { TerminalText.neutralized($0) } }
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
