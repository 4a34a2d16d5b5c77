import ErrandRelay
import ErrandTestSupport
import Foundation
import Testing

/// The web companion served by the relay at `/app/`, and CORS for companions served elsewhere.
@Suite("Relay: web companion and CORS")
struct WebAppTests {
    /// The repository's `web/` folder.
    static let webFolder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("web").path

    /// One answer read off a raw connection.
    struct Answer {
        let status: Int
        let headers: [String: String]
        let body: String
        func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    /// Sends one request as written (the path is not normalised) and reads the whole answer.
    func request(_ relay: TestRelay, _ method: String, _ path: String, headers: [String: String] = [:]) async throws -> Answer {
        let port = Int(relay.url.split(separator: ":").last ?? "") ?? 0
        let socket = try RawSocket(port: port)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        socket.send(head + "\r\n")
        let text = try await offPool { socket.read() }
        let parts = text.components(separatedBy: "\r\n\r\n")
        let lines = parts[0].components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ").dropFirst().first ?? "") ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Answer(status: status, headers: fields, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    @Test("/app/ serves the companion's files with their types, a strict CSP and an ETag; /app and / lead there")
    func servesTheCompanion() async throws {
        try await TestRelay.with { relay in
            let page = try await request(relay, "GET", "/app/")
            #expect(page.status == 200)
            #expect(page.header("Content-Type") == "text/html; charset=utf-8")
            let index = try String(contentsOfFile: Self.webFolder + "/index.html", encoding: .utf8)
            #expect(page.body == index)
            let policy = try #require(page.header("Content-Security-Policy"))
            #expect(policy.contains("default-src 'none'") && policy.contains("script-src 'self' 'wasm-unsafe-eval'"))
            #expect(policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'"))
            #expect(!policy.contains("unsafe-inline"))
            #expect(page.header("X-Content-Type-Options") == "nosniff")
            #expect(page.header("Referrer-Policy") == "no-referrer")
            #expect(page.header("Cache-Control") == "no-cache")

            #expect(try await request(relay, "GET", "/app/js/companion.js").header("Content-Type") == "text/javascript; charset=utf-8")
            #expect(try await request(relay, "GET", "/app/vendor/sodium.wasm").header("Content-Type") == "application/wasm")
            #expect(try await request(relay, "GET", "/app/manifest.webmanifest").header("Content-Type") == "application/manifest+json")

            let tag = try #require(page.header("ETag"))
            let again = try await request(relay, "GET", "/app/index.html", headers: ["If-None-Match": tag])
            #expect(again.status == 304 && again.body.isEmpty)
            #expect(try await request(relay, "GET", "/app/index.html", headers: ["If-None-Match": "\"other\""]).status == 200)

            for path in ["/app", "/"] {
                let redirect = try await request(relay, "GET", path)
                #expect(redirect.status == 308 && redirect.header("Location") == "/app/")
            }
        }
    }

    @Test("Nothing outside the companion's files is served: no test pages, no escapes, no other methods")
    func servesNothingElse() async throws {
        try await TestRelay.with { relay in
            for path in ["/app/test/protocol-vectors.html", "/app/../Package.swift", "/app/%2e%2e/Package.swift",
                         "/app/js/../../Package.swift", "/app/nothing.js", "/app/js/"] {
                let answer = try await request(relay, "GET", path)
                #expect(answer.status == 404, "\(path) answered \(answer.status)")
                #expect(!answer.body.contains("swift-tools-version"))
            }
            let post = try await request(relay, "POST", "/app/index.html", headers: ["Content-Length": "0"])
            #expect(post.status == 404 && post.body.contains("no such endpoint"))
        }
    }

    @Test("web.root serves only files of a known type, never hidden files or other files in the folder")
    func configuredRoot() async throws {
        let folder = try ScratchFolder()
        try FileManager.default.createDirectory(atPath: folder.path + "/site/js", withIntermediateDirectories: true)
        try "<!doctype html><title>mine</title>".write(toFile: folder.path + "/site/index.html", atomically: true, encoding: .utf8)
        try "export {}".write(toFile: folder.path + "/site/js/companion.js", atomically: true, encoding: .utf8)
        try "secret".write(toFile: folder.path + "/site/server.key", atomically: true, encoding: .utf8)
        try "secret".write(toFile: folder.path + "/site/.env.js", atomically: true, encoding: .utf8)
        try await TestRelay.with({ $0.webRoot = folder.path + "/site" }) { relay throws in
            let page = try await request(relay, "GET", "/app/")
            let key = try await request(relay, "GET", "/app/server.key")
            let hidden = try await request(relay, "GET", "/app/.env.js")
            #expect(page.body.contains("mine"))
            #expect(key.status == 404 && hidden.status == 404)
        }
        // A configured folder that is not a companion stops the start, naming the folder.
        await #expect(throws: RelayStartupError.self) {
            try await TestRelay.with({ $0.webRoot = folder.path }) { _ in }
        }
    }

    @Test("web.enabled = false serves no /app/")
    func disabled() async throws {
        try await TestRelay.with({ $0.webEnabled = false }) { relay throws in
            let page = try await request(relay, "GET", "/app/")
            let health = try await request(relay, "GET", "/healthz")
            #expect(page.status == 404 && health.status == 200)
        }
    }

    @Test("CORS: listed origins get answers and preflights, others are refused, never with credentials")
    func crossOrigin() async throws {
        let mine = "https://errand.example.org"
        try await TestRelay.with({ $0.webAllowedOrigins = [mine] }) { relay in
            let preflight = try await request(relay, "OPTIONS", "/v1/pairing-slots/abc/request", headers: [
                "Origin": mine, "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type, errand-claim"])
            #expect(preflight.status == 204)
            #expect(preflight.header("Access-Control-Allow-Origin") == mine)
            #expect(preflight.header("Access-Control-Allow-Methods")?.contains("PUT") == true)
            #expect(preflight.header("Access-Control-Allow-Headers")?.contains("Errand-Claim") == true)
            #expect(preflight.header("Access-Control-Allow-Credentials") == nil)

            let health = try await request(relay, "GET", "/healthz", headers: ["Origin": mine])
            #expect(health.status == 200 && health.header("Access-Control-Allow-Origin") == mine)
            #expect(health.header("Vary") == "Origin")
            // A refusal carries the header too, so the page can read why.
            let refused = try await request(relay, "GET", "/v1/mailboxes/nothing/envelopes", headers: ["Origin": mine])
            #expect(refused.status >= 400 && refused.header("Access-Control-Allow-Origin") == mine)
            #expect(refused.body.contains("\"error\""))

            let other = "https://evil.example"
            let otherPreflight = try await request(relay, "OPTIONS", "/v1/envelopes", headers: [
                "Origin": other, "Access-Control-Request-Method": "POST"])
            #expect(otherPreflight.status == 403 && otherPreflight.header("Access-Control-Allow-Origin") == nil)
            #expect(otherPreflight.body.contains("web.allowed_origins"))
            let otherGet = try await request(relay, "GET", "/healthz", headers: ["Origin": other])
            #expect(otherGet.header("Access-Control-Allow-Origin") == nil)
            // Caches are told the answer depends on Origin, whoever asks.
            #expect(otherGet.header("Vary") == "Origin")
            #expect(try await request(relay, "GET", "/healthz").header("Vary") == "Origin")
        }
        // Without allowed origins there are no CORS answers at all.
        try await TestRelay.with { relay in
            let answer = try await request(relay, "GET", "/healthz", headers: ["Origin": mine])
            #expect(answer.header("Access-Control-Allow-Origin") == nil)
        }
    }
}
