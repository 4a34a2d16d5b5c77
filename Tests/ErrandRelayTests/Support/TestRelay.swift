import AsyncHTTPClient
import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import Hummingbird
import Logging
import NIOHTTP1
import ServiceLifecycle
import Testing

/// A relay running in this process on a free loopback port, with its own SQLite folder.
struct TestRelay {
    let url: String
    let client: RelayClient
    let store: SQLiteRelayStore
    let configuration: RelayConfiguration

    /// Runs `body` against a fresh relay, then shuts it down gracefully.
    static func with<T: Sendable>(
        _ adjust: (inout RelayConfiguration) -> Void = { _ in },
        folder: ScratchFolder? = nil,
        _ body: (TestRelay) async throws -> T
    ) async throws -> T {
        let folder = try folder ?? ScratchFolder()
        var configuration = RelayConfiguration()
        configuration.port = 0
        configuration.dataDirectory = folder.path
        configuration.openRegistration = true
        configuration.requestsPerSecondPerIP = 0
        configuration.postsPerSecondPerMailbox = 0
        adjust(&configuration)
        let store = try RelayRunner.openSQLiteStore(configuration)
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "test-relay")
        logger.logLevel = .warning
        let app = try RelayServer.buildApplication(configuration: configuration, store: store, logger: logger) { port in
            portContinuation.yield(port)
        }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            let scheme = configuration.tlsCertificatePath == nil ? "http" : "https"
            let relay = TestRelay(url: "\(scheme)://127.0.0.1:\(port)", client: RelayClient(baseURL: "\(scheme)://127.0.0.1:\(port)"),
                                  store: store, configuration: configuration)
            do {
                let result = try await body(relay)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

/// A mailbox owner with a registered send token, for tests.
struct Owner {
    let key: Ed25519.SecretKey
    let token: SendToken
    var mailbox: MailboxID { MailboxID(owner: key.publicKey) }

    static func register(on relay: TestRelay) async throws -> Owner {
        let owner = Owner(key: Ed25519.SecretKey(), token: SendToken())
        try await relay.client.createMailbox(owner: owner.key)
        try await relay.client.addSendToken(owner.token.hash, owner: owner.key)
        return owner
    }
}

/// A sealed-looking envelope of `size` ciphertext bytes.
func sampleEnvelope(size: Int = 200) -> Envelope {
    try! Envelope(ciphertext: SecureRandom.bytes(count: size))
}

/// A raw HTTP exchange, for requests the client library would never make.
struct RawResponse {
    let status: Int
    let headers: [String: String]
    let body: String
    /// The body as bytes (binary answers: tiles, envelopes).
    let bytes: [UInt8]
}

func raw(_ method: String, _ url: String, headers: [(String, String)] = [], body: [UInt8] = []) async throws -> RawResponse {
    var request = HTTPClientRequest(url: url)
    request.method = .init(rawValue: method)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if !body.isEmpty { request.body = .bytes(body) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    var fields: [String: String] = [:]
    for header in response.headers { fields[header.name.lowercased()] = header.value }
    return RawResponse(status: Int(response.status.code), headers: fields, body: String(buffer: bytes), bytes: Array(bytes.readableBytesView))
}

/// Signed headers for a raw request.
func signedHeaders(_ method: String, _ pathAndQuery: String, body: [UInt8] = [], for relay: String, key: Ed25519.SecretKey,
                   now: Date = Date()) -> [(String, String)] {
    RequestSignature(signing: method, pathAndQuery: pathAndQuery, body: body, for: relay, with: key, now: now).headers.map { ($0.name, $0.value) }
}

/// Expects `operation` to be refused by the relay with `code`; returns the error.
@discardableResult
func expectRefusal<T>(_ code: RelayErrorCode, _ operation: () async throws -> T,
                      sourceLocation: SourceLocation = #_sourceLocation) async -> RelayClientError? {
    do {
        _ = try await operation()
        Issue.record("expected a '\(code.rawValue)' refusal, but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as RelayClientError {
        #expect(error.code == code, "got \(error.kind): \(error.message)", sourceLocation: sourceLocation)
        #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected RelayClientError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
