import ErrandTestSupport
import Foundation
import Testing

/// `errand host init|pair|devices|revoke`, `errand pair` and `errand hosts` as separate
/// processes against a real relay process on loopback.
@Suite("Pairing commands")
struct PairingCommandTests {
    let folder: ScratchFolder
    let relay: RelayProcess

    init() async throws {
        folder = try ScratchFolder()
        relay = try await RelayProcess.start(data: folder.path("relay"), arguments: ["--open-registration"])
    }

    var host: String { folder.path("host") }

    func initHost() async throws {
        let result = try await runAsync("errand", ["host", "init", "--home", host, "--relay", relay.baseURL, "--name", "studio"])
        #expect(result.status == 0, "\(result.errorOutput)")
    }

    /// Starts `errand host pair` and waits until its code exists.
    func startPairing(_ extra: [String], input: String? = nil) async throws -> RunningProgram {
        let program = try RunningProgram("errand", ["host", "pair", "--home", host, "--terminal", "none",
                                                    "--uri-file", folder.path("code.uri"), "--png", folder.path("code.png")] + extra,
                                         input: input)
        try await program.waitForOutput(containing: "Waiting for a device")
        return program
    }

    func sasLine(_ text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("SAS: ") }.map(String.init)
    }

    @Test("Pairing through the QR image: both sides print the same SAS line; devices and hosts list each other")
    func pairThroughImage() async throws {
        try await initHost()
        let hostPair = try await startPairing(["--yes"])
        // The URI file and the PNG are private.
        #expect(try FileManager.default.attributesOfItem(atPath: folder.path("code.png"))[.posixPermissions] as? Int == 0o600)
        #expect(try FileManager.default.attributesOfItem(atPath: folder.path("code.uri"))[.posixPermissions] as? Int == 0o600)
        let companion = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--name", "phone", "--yes", "--image", folder.path("code.png")])
        let hostResult = await hostPair.finish()
        #expect(companion.status == 0, "\(companion.errorOutput)")
        #expect(hostResult.status == 0, "\(hostResult.errorOutput)")
        let hostSAS = try #require(sasLine(hostResult.output))
        #expect(hostSAS.range(of: #"^SAS: \d{3} \d{3}$"#, options: .regularExpression) != nil)
        #expect(sasLine(companion.output) == hostSAS)
        #expect(hostResult.output.contains("Paired with “phone”"))
        #expect(companion.output.contains("Paired with “studio”"))

        let devices = try await runAsync("errand", ["host", "devices", "--home", host, "--json"])
        let list = try JSONSerialization.jsonObject(with: Data(devices.output.utf8)) as? [[String: Any]]
        #expect(list?.count == 1)
        #expect(list?.first?["name"] as? String == "phone")
        #expect(list?.first?["revoked"] as? Bool == false)
        let hosts = try await runAsync("errand", ["hosts", "--home", folder.path("phone")])
        #expect(hosts.output.contains("studio"))
        #expect(hosts.output.contains(relay.baseURL))

        // The same code cannot pair another device.
        let again = try await runAsync("errand", ["pair", "--home", folder.path("other"), "--yes", "--uri-file", folder.path("code.uri")])
        #expect(again.status == 1)
        #expect(again.errorOutput.contains("errand: error: the pairing code is no longer open at the relay"))

        // Revocation by name; listing shows it; an unknown device is a clear error.
        let revoked = try await runAsync("errand", ["host", "revoke", "--home", host, "phone"])
        #expect(revoked.status == 0, "\(revoked.errorOutput)")
        let all = try await runAsync("errand", ["host", "devices", "--home", host, "--all"])
        #expect(all.output.contains("revoked"))
        let none = try await runAsync("errand", ["host", "devices", "--home", host])
        #expect(none.output.contains("No devices are paired"))
        let unknown = try await runAsync("errand", ["host", "revoke", "--home", host, "tablet"])
        #expect(unknown.status == 1)
        #expect(unknown.errorOutput.contains("no paired device is called tablet"))
    }

    @Test("Revoking a device closes its mailbox at the relay: the place is free for another device, and the revoked one is told")
    func revokeFreesTheDeviceMailbox() async throws {
        // A relay that lets a host create one device mailbox in all.
        let small = try await RelayProcess.start(data: folder.path("small-relay"), arguments: ["--open-registration"],
                                                 environment: ["ERRAND_RELAY_LIMITS_MAX_DEVICE_MAILBOXES": "1"])
        let result = try await runAsync("errand", ["host", "init", "--home", host, "--relay", small.baseURL, "--name", "studio"])
        #expect(result.status == 0, "\(result.errorOutput)")
        func pair(_ name: String) async throws -> (host: CommandResult, companion: CommandResult) {
            let hostPair = try await startPairing(["--yes"])
            let companion = try await runAsync("errand", ["pair", "--home", folder.path(name), "--name", name, "--yes",
                                                          "--uri-file", folder.path("code.uri")])
            return (await hostPair.finish(), companion)
        }
        let phone = try await pair("phone")
        #expect(phone.companion.status == 0, "\(phone.companion.errorOutput)")
        let revoked = try await runAsync("errand", ["host", "revoke", "--home", host, "phone"])
        #expect(revoked.status == 0, "\(revoked.errorOutput)")
        // Before, the revoked phone's mailbox kept the only place and this pairing was refused.
        let tablet = try await pair("tablet")
        #expect(tablet.companion.status == 0, "\(tablet.companion.errorOutput)")
        #expect(tablet.host.status == 0, "\(tablet.host.errorOutput)")
        // The phone reads its mailbox and learns it was revoked.
        let history = try await runAsync("errand", ["history", "--home", folder.path("phone")])
        #expect(history.status == 0, "\(history.errorOutput)")
        #expect(history.errorOutput.contains("errand: warning: studio no longer accepts messages from this device (it was revoked"),
                "\(history.errorOutput)")
        await small.stop()
    }

    @Test("The QR code holds a link to the web companion: the relay's /app/, else --web-app or pairing.web_app; the link pairs too")
    func webCompanionLink() async throws {
        try await initHost()
        let offerQuery = { (uri: String) in String(uri.dropFirst("errand://pair?".count)) }
        let first = try await startPairing(["--yes"])
        let decoded = try await runAsync("errand", ["qr", "decode", folder.path("code.png")])
        let uri = try String(contentsOfFile: folder.path("code.uri"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(decoded.output.trimmingCharacters(in: .whitespacesAndNewlines) == relay.baseURL + "/app/#" + offerQuery(uri))
        #expect(first.output.contains("phone's camera"))
        // The link (here on standard input) pairs like the URI.
        let companion = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--name", "phone", "--yes", "-"],
                                           input: decoded.output)
        #expect(companion.status == 0, "\(companion.errorOutput)")
        #expect(await first.finish().status == 0)

        // The configured address, then the option over it.
        let config = host + "/config.toml"
        let text = try String(contentsOfFile: config, encoding: .utf8)
        try text.replacingOccurrences(of: "web_app = \"\"", with: "web_app = \"https://errand.example.org/\"")
            .write(toFile: config, atomically: true, encoding: .utf8)
        for (extra, base) in [([String](), "https://errand.example.org/"), (["--web-app", "https://mine.example/errand/"], "https://mine.example/errand/")] {
            let pairing = try await startPairing(extra)
            let link = try await runAsync("errand", ["qr", "decode", folder.path("code.png")]).output
            #expect(link.hasPrefix(base + "#v=1&"), "\(link)")
            pairing.process.terminate()
            _ = await pairing.finish()
        }
        // A relay that does not serve the app: the code holds the errand:// URI, and the host says why.
        let bare = try await RelayProcess.start(data: folder.path("bare-relay"), arguments: ["--open-registration"],
                                                environment: ["ERRAND_RELAY_WEB_ENABLED": "false"])
        let init2 = try await runAsync("errand", ["host", "init", "--home", folder.path("host2"), "--relay", bare.baseURL, "--name", "bare"])
        #expect(init2.status == 0, "\(init2.errorOutput)")
        let bareProgram = try RunningProgram("errand", ["host", "pair", "--home", folder.path("host2"), "--terminal", "none",
                                                        "--png", folder.path("bare.png")])
        try await bareProgram.waitForOutput(containing: "Waiting for a device")
        let bareCode = try await runAsync("errand", ["qr", "decode", folder.path("bare.png")]).output
        #expect(bareCode.hasPrefix("errand://pair?v=1&"), "\(bareCode)")
        #expect(bareProgram.errorOutput.contains("does not serve the web companion"), "\(bareProgram.errorOutput)")
        bareProgram.process.terminate()
        _ = await bareProgram.finish()
        _ = await bare.stop()

        // A web app over plain http elsewhere is refused before any code is made.
        let plain = try await runAsync("errand", ["host", "pair", "--home", host, "--terminal", "none", "--web-app", "http://errand.example.org/"])
        #expect(plain.status == 1)
        #expect(plain.errorOutput.contains("plain http"), "\(plain.errorOutput)")
    }

    @Test("The person at the computer declines, then accepts a second attempt with the URI on standard input")
    func declineThenAccept() async throws {
        try await initHost()
        let declining = try await startPairing([], input: "n\n")
        let refused = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--name", "phone", "--yes", "--uri-file", folder.path("code.uri")])
        let hostRefused = await declining.finish()
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("studio declined the pairing"))
        #expect(hostRefused.status == 1)
        #expect(hostRefused.output.contains("Does the device show the same SAS? [y/N]"))
        #expect(hostRefused.errorOutput.contains("declined; nothing was registered"))
        let noDevices = try await runAsync("errand", ["host", "devices", "--home", host])
        #expect(noDevices.output.contains("No devices are paired"))

        let accepting = try await startPairing([], input: "y\n")
        let uri = try String(contentsOfFile: folder.path("code.uri"), encoding: .utf8)
        let paired = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--name", "phone", "--yes", "-"], input: uri)
        let hostAccepted = await accepting.finish()
        #expect(paired.status == 0, "\(paired.errorOutput)")
        #expect(hostAccepted.status == 0, "\(hostAccepted.errorOutput)")
        #expect(sasLine(paired.output) == sasLine(hostAccepted.output))
    }

    @Test("An expired code: the host gives up, the companion says the code expired")
    func expired() async throws {
        try await initHost()
        let hostPair = try await startPairing(["--timeout", "1"])
        let hostResult = await hostPair.finish()
        #expect(hostResult.status == 1)
        #expect(hostResult.errorOutput.contains("no device answered the pairing code before it expired"))
        try await Task.sleep(for: .seconds(1))
        let late = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--yes", "--uri-file", folder.path("code.uri")])
        #expect(late.status == 1)
        #expect(late.errorOutput.contains("expired"))
        #expect(!FileManager.default.fileExists(atPath: folder.path("phone/companion.sqlite")))
    }

    @Test("Mistakes get clear errors: no relay, a second init, no host, a non-code image, an altered code")
    func mistakes() async throws {
        let noRelay = try await runAsync("errand", ["host", "init", "--home", host])
        #expect(noRelay.status == 1)
        #expect(noRelay.errorOutput.contains("pass --relay URL"))
        let noHost = try await runAsync("errand", ["host", "pair", "--home", host])
        #expect(noHost.status == 1)
        #expect(noHost.errorOutput.contains("holds no host"))
        try await initHost()
        let twice = try await runAsync("errand", ["host", "init", "--home", host, "--relay", relay.baseURL])
        #expect(twice.status == 1)
        #expect(twice.errorOutput.contains("already holds a host"))
        // Plain http to loopback is fine; to another machine it is warned about (0.0.0.0: not loopback, refused at once).
        #expect(!twice.errorOutput.contains("plain http"))
        let remote = try await runAsync("errand", ["host", "pair", "--home", host, "--terminal", "none", "--relay", "http://0.0.0.0:1"])
        #expect(remote.status == 1)
        #expect(remote.errorOutput.contains("errand: warning: the relay http://0.0.0.0:1 is plain http"), "\(remote.errorOutput)")
        let elsewhere = try await runAsync("errand", ["host", "init", "--home", folder.path("other"), "--relay", "http://0.0.0.0:1"])
        #expect(elsewhere.status == 1)
        #expect(elsewhere.errorOutput.contains("use https://"), "\(elsewhere.errorOutput)")

        let notACode = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--yes", "https://example.com"])
        #expect(notACode.status == 1)
        #expect(notACode.errorOutput.contains("errand: error:"))
        #expect(notACode.errorOutput.contains("errand: hint:"))
        let twoSources = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--yes", "--image", "a.png", "errand://pair?v=1"])
        #expect(twoSources.status != 0)

        // A code whose host key was swapped (say, by whoever passed it on): nobody gets registered.
        let hostPair = try await startPairing(["--yes"])
        let uri = try String(contentsOfFile: folder.path("code.uri"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let swapped = uri.replacingOccurrences(of: #"x=[A-Za-z0-9_-]{43}"#, with: "x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ", options: .regularExpression)
        #expect(swapped != uri)
        let tampered = try await runAsync("errand", ["pair", "--home", folder.path("phone"), "--yes", "-"], input: swapped)
        let hostResult = await hostPair.finish()
        #expect(tampered.status == 1)
        #expect(hostResult.status == 1)
        #expect(hostResult.errorOutput.contains("not sealed to this computer's key"))
        let devices = try await runAsync("errand", ["host", "devices", "--home", host])
        #expect(devices.output.contains("No devices are paired"))
    }
}
