import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import Testing

/// The relay behind a real nginx (Debian's) whose body limit is smaller than the relay's batches.
@Suite("Relay behind a proxy with a smaller body limit")
struct ProxyLimitTests {
    /// The repository's example nginx configuration.
    static let shippedConfig = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("relay/nginx.conf").path

    /// nginx on two free loopback ports in front of `relayPort`, with the two body limits (in KiB).
    final class Nginx {
        let process: Process
        let ports: [Int]

        init(folder: ScratchFolder, relayPort: Int, limits: [Int]) async throws {
            let root = folder.path("nginx")
            for sub in ["", "/body", "/proxy", "/fastcgi", "/uwsgi", "/scgi"] {
                try FileManager.default.createDirectory(atPath: root + sub, withIntermediateDirectories: true)
            }
            ports = try limits.map { _ in try freePort() }
            let servers = zip(ports, limits).map { port, limit in
                "server { listen 127.0.0.1:\(port); client_max_body_size \(limit)k; location / { proxy_pass http://127.0.0.1:\(relayPort); proxy_http_version 1.1; } }"
            }.joined(separator: "\n")
            try """
                daemon off; master_process off; worker_processes 1; pid \(root)/nginx.pid; error_log \(root)/error.log;
                events { worker_connections 64; }
                http { access_log off; client_body_temp_path \(root)/body; proxy_temp_path \(root)/proxy;
                       fastcgi_temp_path \(root)/fastcgi; uwsgi_temp_path \(root)/uwsgi; scgi_temp_path \(root)/scgi;
                \(servers)
                }
                """.write(toFile: root + "/nginx.conf", atomically: true, encoding: .utf8)
            process = Process()
            process.executableURL = try Executables.system("nginx")
            process.arguments = ["-p", root, "-c", root + "/nginx.conf", "-e", root + "/error.log"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if await RelayClient(baseURL: "http://127.0.0.1:\(ports[0])").isHealthy() { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw POSIXError(.ECONNREFUSED)
        }

        /// Stops nginx and waits (without blocking a thread) until it has exited.
        func stop() async {
            guard process.isRunning else { return }
            process.terminate()
            for _ in 0..<200 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    @Test("A batch refused by the proxy (413) is posted in halves down to single envelopes: all stored, in order")
    func splitsOnProxyRefusal() async throws {
        let folder = try ScratchFolder()
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let port = Int(relay.url.split(separator: ":").last ?? "") ?? 0
            let nginx = try await Nginx(folder: folder, relayPort: port, limits: [80, 40])
            let proxied = RelayClient(baseURL: "http://127.0.0.1:\(nginx.ports[0])")
            // 20 envelopes of 60 KB: two batches of about 1 MiB, each far over the proxy's 80 KiB.
            let envelopes = (0..<20).map { _ in sampleEnvelope(size: 60_000) }
            let results = try await proxied.post(batch: envelopes.map { .init(mailbox: owner.mailbox, token: owner.token, envelope: $0.encoded) })
            #expect(results.count == 20)
            for result in results { if case .failure(let error) = result { Issue.record("refused: \(error)") } }
            var stored: [Envelope] = []
            var after: Int64 = 0
            while true {
                let page = try await relay.client.fetch(owner: owner.key, after: after)
                stored += page.envelopes.map(\.envelope)
                guard page.more, let last = page.envelopes.last else { break }
                after = last.sequence
            }
            #expect(stored.map(\.id) == envelopes.map(\.id))

            // Only an envelope that alone is over the proxy's limit is refused, as that envelope's refusal.
            let small = RelayClient(baseURL: "http://127.0.0.1:\(nginx.ports[1])")
            let single = try await small.post(batch: [.init(mailbox: owner.mailbox, token: owner.token, envelope: sampleEnvelope(size: 60_000).encoded),
                                                     .init(mailbox: owner.mailbox, token: owner.token, envelope: sampleEnvelope(size: 1_000).encoded)])
            guard case .failure(let error) = single.first else { Issue.record("a 60 KB envelope passed a 40 KiB proxy"); return }
            #expect(error.code == .tooLarge && error.status == 413)
            // The mailbox's later envelope is held back, so what is stored keeps its order.
            guard case .failure(let held) = single.last else { Issue.record("an envelope after a refused one was stored"); return }
            #expect(held.code == .notAttempted)
            await nginx.stop()
        }
    }

    @Test("The shipped nginx and Caddy examples allow the relay's largest batch")
    func shippedLimits() throws {
        let nginx = try String(contentsOfFile: Self.shippedConfig, encoding: .utf8)
        let value = try #require(nginx.firstMatch(of: /client_max_body_size (\d+)k;/)?.1)
        #expect(Int(value)! * 1024 >= EnvelopeBatch.maximumBodyBytes)
        let caddy = try String(contentsOfFile: Self.shippedConfig.replacingOccurrences(of: "nginx.conf", with: "Caddyfile"), encoding: .utf8)
        let caddyValue = try #require(caddy.firstMatch(of: /max_size (\d+)KB/)?.1)
        #expect(Int(caddyValue)! * 1000 >= EnvelopeBatch.maximumBodyBytes)
    }
}

/// A TCP port on loopback that nobody listens on right now.
func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}
