import AsyncHTTPClient
import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import NIOCore
import NIOSSL
import Synchronization
import Testing

/// The relay as operators run it: a real `errand-relay` process.
@Suite("errand-relay process", .serialized)
struct RelayProcessTests {
    @Test("serve prints 'listening', answers /healthz, and exits cleanly on SIGTERM")
    func serveAndStop() async throws {
        let folder = try ScratchFolder()
        let relay = try await RelayProcess.start(data: folder.path, arguments: ["--open-registration"])
        #expect(relay.printed.contains("registration: open"))
        #expect(await RelayClient(baseURL: relay.baseURL).isHealthy())
        #expect(await relay.stop(signal: SIGTERM) == 0)
        // The data folder was created owner-only.
        let mode = try FileManager.default.attributesOfItem(atPath: folder.path)[.posixPermissions] as? Int
        #expect(mode != nil)
    }

    @Test("X-Forwarded-For from a peer that is not a trusted proxy is ignored and warned about, once")
    func untrustedProxyWarning() async throws {
        let folder = try ScratchFolder()
        let relay = try await RelayProcess.start(data: folder.path, withLog: true)
        for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
            _ = try await raw("GET", "\(relay.baseURL)/v1/log/checkpoint", headers: [("X-Forwarded-For", client)])
        }
        #expect(await relay.stop(signal: SIGTERM) == 0)
        let warnings = relay.printed.components(separatedBy: "carry X-Forwarded-For, but 127.0.0.1 is not in trusted_proxies").count - 1
        #expect(warnings == 1, "\(relay.printed)")
        #expect(relay.printed.contains("add the proxy's address to trusted_proxies"))
    }

    @Test("Every acknowledged envelope survives SIGKILL of the relay during a stream of posts")
    func durableAcrossSIGKILL() async throws {
        let folder = try ScratchFolder()
        // Rate limits off: this test floods the relay on purpose.
        let unlimited = ["ERRAND_RELAY_LIMITS_REQUESTS_PER_SECOND_PER_IP": "0", "ERRAND_RELAY_LIMITS_POSTS_PER_SECOND_PER_MAILBOX": "0"]
        let first = try await RelayProcess.start(data: folder.path, arguments: ["--open-registration"], environment: unlimited)
        // No retries: a post that fails because the relay died is simply not counted.
        let client = { var client = RelayClient(baseURL: first.baseURL); client.maximumAttempts = 1; return client }()
        let owner = Ed25519.SecretKey()
        let token = SendToken()
        try await client.createMailbox(owner: owner)
        try await client.addSendToken(token.hash, owner: owner)
        let mailbox = MailboxID(owner: owner.publicKey)

        let acknowledged = AcknowledgedLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while true {
                        let envelope = try Envelope(ciphertext: SecureRandom.bytes(count: 1024))
                        do {
                            _ = try await client.post(envelope, to: mailbox, token: token)
                            acknowledged.ids.withLock { $0.append(envelope.id) }
                        } catch {
                            acknowledged.stoppedPosters.withLock { $0 += 1 }
                            return  // the relay is gone
                        }
                    }
                }
            }
            group.addTask {
                // Kill mid-stream, once a few hundred posts have been acknowledged.
                while acknowledged.ids.withLock({ $0.count }) < 300, acknowledged.stoppedPosters.withLock({ $0 }) == 0 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                await first.stop(signal: SIGKILL)
            }
            try await group.waitForAll()
        }
        let acked = acknowledged.ids.withLock { $0 }
        #expect(acked.count >= 300)

        let second = try await RelayProcess.start(data: folder.path, arguments: ["--open-registration"], environment: unlimited)
        let reader = RelayClient(baseURL: second.baseURL)
        let stored = try await reader.storedIDs(owner: owner)
        let lost = Set(acked).subtracting(stored)
        #expect(lost.isEmpty, "\(lost.count) acknowledged envelopes were lost")
        await second.stop()
    }

    @Test("invite prints a token that lets exactly one host register on a closed relay")
    func invite() async throws {
        let folder = try ScratchFolder()
        let result = try run("errand-relay", ["invite", "--data", folder.path])
        #expect(result.status == 0, "\(result.errorOutput)")
        let token = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count == 43)
        let relay = try await RelayProcess.start(data: folder.path)
        #expect(relay.printed.contains("registration: by invitation"))
        let client = RelayClient(baseURL: relay.baseURL)
        await expectRefusal(.unauthenticated) { try await client.createMailbox(owner: Ed25519.SecretKey()) }
        #expect(try await client.createMailbox(owner: Ed25519.SecretKey(), invite: token).created)
        await expectRefusal(.forbidden) { try await client.createMailbox(owner: Ed25519.SecretKey(), invite: token) }
        await relay.stop()
    }

    @Test("Config file, environment and flags combine; mistakes are named")
    func configuration() async throws {
        let folder = try ScratchFolder()
        let config = folder.path + "/relay.toml"
        try """
        open_registration = true
        [limits]
        max_envelope_bytes = 2048
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let relay = try await RelayProcess.start(data: folder.path + "/data", arguments: ["--config", config],
                                     environment: ["ERRAND_RELAY_LIMITS_MAILBOX_MAX_ENVELOPES": "1"])
        let client = RelayClient(baseURL: relay.baseURL)
        let owner = Ed25519.SecretKey()
        let token = SendToken()
        try await client.createMailbox(owner: owner)   // open registration from the file
        try await client.addSendToken(token.hash, owner: owner)
        let mailbox = MailboxID(owner: owner.publicKey)
        await expectRefusal(.tooLarge) { try await client.post(try Envelope(ciphertext: SecureRandom.bytes(count: 3000)), to: mailbox, token: token) }
        _ = try await client.post(try Envelope(ciphertext: SecureRandom.bytes(count: 100)), to: mailbox, token: token)
        await expectRefusal(.quotaExceeded) { try await client.post(try Envelope(ciphertext: SecureRandom.bytes(count: 100)), to: mailbox, token: token) }
        await relay.stop()

                try "[limits]\nmax_envelop_bytes = 10\n".write(toFile: config, atomically: true, encoding: .utf8)
        let unknown = try run("errand-relay", ["serve", "--config", config, "--data", folder.path])
        #expect(unknown.status == 1)
        #expect(unknown.errorOutput.contains("errand-relay: error: \(config): unknown setting 'limits.max_envelop_bytes'"))
        try "listen = 8080\n".write(toFile: config, atomically: true, encoding: .utf8)
        let wrongType = try run("errand-relay", ["serve", "--config", config, "--data", folder.path])
        #expect(wrongType.errorOutput.contains("'listen' must be text"))
        try "open_registration = \n".write(toFile: config, atomically: true, encoding: .utf8)
        let syntax = try run("errand-relay", ["serve", "--config", config, "--data", folder.path])
        #expect(syntax.errorOutput.contains("line 1"))
        let badEnv = try run("errand-relay", ["serve", "--data", folder.path], environment: ["ERRAND_RELAY_LIMITS_MAX_CONNECTIONS": "many"])
        #expect(badEnv.errorOutput.contains("ERRAND_RELAY_LIMITS_MAX_CONNECTIONS must be a whole number"))
        let badListen = try run("errand-relay", ["serve", "--data", folder.path, "--listen", "nowhere"])
        #expect(badListen.errorOutput.contains("HOST:PORT"))
    }

    @Test("TLS from a certificate and key file, checked by a client that trusts only that certificate")
    func tls() async throws {
        let folder = try ScratchFolder()
        let certificate = folder.path + "/cert.pem"
        let key = folder.path + "/key.pem"
        let made = try run("openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", key, "-out", certificate,
        ])
        #expect(made.status == 0, "\(made.errorOutput)")
        let relay = try await RelayProcess.start(data: folder.path + "/data", arguments: ["--open-registration"],
                                     environment: ["ERRAND_RELAY_TLS_CERTIFICATE": certificate, "ERRAND_RELAY_TLS_KEY": key])
        #expect(relay.baseURL.hasPrefix("https://"))
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificate))
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        let port = relay.baseURL.split(separator: ":").last.map(String.init) ?? ""
        let client = RelayClient(baseURL: "https://localhost:\(port)", httpClient: httpClient)
        #expect(await client.isHealthy())
        let owner = Ed25519.SecretKey()
        try await client.createMailbox(owner: owner)
        // A client that does not trust the certificate cannot connect.
        var untrusting = RelayClient(baseURL: "https://localhost:\(port)")
        untrusting.timeout = .seconds(3)
        #expect(await !untrusting.isHealthy())
        // Plain HTTP to the TLS port does not get a relay answer.
        var plain = RelayClient(baseURL: "http://127.0.0.1:\(port)")
        plain.timeout = .seconds(3)
        #expect(await !plain.isHealthy())
        try await httpClient.shutdown()
        await relay.stop()
    }
}

/// Envelope ids the relay acknowledged, shared by the posting tasks.
extension RelayClient {
    /// The ids of every envelope waiting in `owner`'s mailbox, page by page.
    func storedIDs(owner: Ed25519.SecretKey) async throws -> Set<EnvelopeID> {
        var stored = Set<EnvelopeID>()
        var after: Int64 = 0
        while true {
            let page = try await fetch(owner: owner, after: after, limit: 500)
            stored.formUnion(page.envelopes.map(\.envelope.id))
            guard let last = page.envelopes.last, page.more else { return stored }
            after = last.sequence
        }
    }
}

final class AcknowledgedLog: Sendable {
    let ids = Mutex<[EnvelopeID]>([])
    let stoppedPosters = Mutex(0)
}
