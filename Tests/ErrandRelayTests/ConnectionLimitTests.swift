import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import Foundation
import Testing

/// Limits that protect the relay from slow or oversized requests, checked with raw sockets.
@Suite("Connection limits")
struct ConnectionLimitTests {
    /// A blocking TCP client for misbehaving on purpose.
    final class RawSocket: @unchecked Sendable {  // an immutable descriptor; the kernel serialises send/recv
        let descriptor: Int32

        init(port: Int) throws {
            descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        func send(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// What the server sends until `marker` appears, it closes the connection, or 10 s pass.
        func read(until marker: String? = nil) -> String {
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count <= 0 { break }
                received += buffer.prefix(count)
                if let marker, String(decoding: received, as: UTF8.self).contains(marker) { break }
            }
            return String(decoding: received, as: UTF8.self)
        }

        deinit { close(descriptor) }
    }

    func port(_ url: String) -> Int { Int(url.split(separator: ":").last ?? "") ?? 0 }

    @Test("A request body that trickles in is cut off after the idle timeout")
    func slowBody() async throws {
        try await TestRelay.with({ $0.idleTimeoutSeconds = 1 }) { relay in
            let owner = try await Owner.register(on: relay)
            let socket = try RawSocket(port: port(relay.url))
            socket.send("POST /v1/mailboxes/\(owner.mailbox)/envelopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(owner.token.bearer)\r\nContent-Length: 300\r\n\r\n")
            socket.send(String(repeating: "a", count: 10))
            let started = Date()
            // Keep trickling a byte every 0.4 s: the idle timer alone would never fire.
            let trickle = Task {
                for _ in 0..<20 {
                    try await Task.sleep(for: .milliseconds(400))
                    socket.send("a")
                }
            }
            // The relay gives up on the body: the request is refused and the connection ends.
            _ = socket.read()
            trickle.cancel()
            #expect(Date().timeIntervalSince(started) < 6)
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.isEmpty)
        }
    }

    @Test("Oversized request heads are cut off at once")
    func oversizedHeaders() async throws {
        try await TestRelay.with { relay in
            let socket = try RawSocket(port: port(relay.url))
            let started = Date()
            socket.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: \(String(repeating: "a", count: 60_000))\r\n\r\n")
            let answer = socket.read()
            #expect(!answer.contains("200 OK"))
            #expect(Date().timeIntervalSince(started) < 5)
        }
    }

    @Test("A connection that never finishes its first request head is closed after the idle timeout (slowloris)")
    func slowFirstHead() async throws {
        try await TestRelay.with({ $0.idleTimeoutSeconds = 1 }) { relay in
            let socket = try RawSocket(port: port(relay.url))
            let started = Date()
            let trickle = Task {
                for character in "GET /healthz HTTP/1.1\r\nHost: x\r\n" {
                    try await Task.sleep(for: .milliseconds(300))
                    socket.send(String(character))
                }
            }
            let answer = socket.read()
            trickle.cancel()
            #expect(answer.isEmpty)
            #expect(Date().timeIntervalSince(started) < 4)
            // Well-behaved clients are unaffected.
            #expect(try await raw("GET", "\(relay.url)/healthz").status == 200)
        }
    }
}
