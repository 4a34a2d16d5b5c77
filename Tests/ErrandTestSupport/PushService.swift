public import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The stand-in push service (`Tests/Push/push_service.py`) on a free loopback port: Web Push
/// endpoints that check VAPID and decrypt RFC 8291 payloads independently of the relay's code,
/// ntfy topics and webhooks, and a record of every call.
public final class PushService: Sendable {
    public let process: Process
    public let port: Int
    public var origin: String { "http://127.0.0.1:\(port)" }

    /// A subscription, as a browser would hand it to a page.
    public struct Subscription: Decodable, Sendable {
        public let name: String
        public let endpoint: String
        public let p256dh: String
        public let auth: String
    }

    /// One call the service received.
    public struct Call: Decodable, Sendable {
        /// `push`, `ntfy` or `hook`.
        public let kind: String
        public let name: String
        /// When it came (Unix seconds).
        public let at: Double
        public let headers: [String: String]
        public let body: String
        public let status: Int
        /// Web Push: what is wrong with the VAPID header (nil: it verified), and the decrypted payload.
        public let vapidProblem: String?
        public let payload: String?
        public let decryptProblem: String?
    }

    public static func start() async throws -> PushService {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Push/push_service.py").path
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("push-\(UUID().uuidString).port").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, portFile]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        for _ in 0..<500 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
                try? FileManager.default.removeItem(atPath: portFile)
                return PushService(process: process, port: port)
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.terminate()
        let printed = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        throw TestSupportError("the stand-in push service did not start (it needs Python's cryptography and http_ece packages, which scripts/bootstrap installs): \(printed)")
    }

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
    }

    /// A new Web Push subscription: `ok`, `gone` (410), `slow` (3 s) or `fail-once` (500, then 201).
    public func subscribe(behavior: String = "ok") async throws -> Subscription {
        try JSONDecoder().decode(Subscription.self, from: try await request("POST", "/subscribe?behavior=\(behavior)"))
    }

    /// Every call received so far, in order.
    public func calls() async throws -> [Call] {
        try JSONDecoder().decode([Call].self, from: try await request("GET", "/calls"))
    }

    private func request(_ method: String, _ path: String) async throws -> Data {
        var request = URLRequest(url: URL(string: origin + path)!)
        request.httpMethod = method
        let (data, _) = try await URLSession.shared.data(for: request)
        return data
    }

    /// Ends the service (SIGKILL: it keeps nothing worth a clean exit).
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }
}
