import ErrandCrypto
import ErrandProtocol
import ErrandRelayClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// A relay from before batches answers `POST /v1/envelopes` with 404: the client then posts one
/// envelope per request, keeping the rule that a refusal stops the mailbox's later envelopes.
@Suite("Batch fallback to single posts")
struct BatchFallbackTests {
    /// What the old relay was asked, in order: (mailbox, envelope id).
    final class Log: Sendable {
        let posts = Mutex<[(String, String)]>([])
        let batchAttempts = Mutex(0)
    }

    /// Runs `body` against an in-process server that speaks the relay's single-post API only
    /// and refuses every post to `refusedMailbox` (403, as for a revoked token).
    func withOldRelay(refusing refusedMailbox: MailboxID, _ body: @Sendable (RelayClient, Log) async throws -> Void) async throws {
        let log = Log()
        let router = Router()
        router.post("/v1/envelopes") { _, _ -> Response in
            log.batchAttempts.withLock { $0 += 1 }
            return Self.json(#"{"error":{"code":"not_found","message":"no such endpoint: POST /v1/envelopes"}}"#, status: .notFound)
        }
        router.post("/v1/mailboxes/:mailbox/envelopes") { request, context -> Response in
            let mailbox = context.parameters.get("mailbox") ?? ""
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let envelope = try Envelope(parsing: Array(bytes.readableBytesView))
            if mailbox == refusedMailbox.description {
                return Self.json(#"{"error":{"code":"forbidden","message":"this send token is not registered"}}"#, status: .forbidden)
            }
            let sequence = log.posts.withLock { posts in
                posts.append((mailbox, envelope.id.description))
                return posts.count
            }
            return Self.json(#"{"id":"\#(envelope.id)","seq":\#(sequence),"duplicate":false}"#, status: .created)
        }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "old-relay")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                try await body(RelayClient(baseURL: "http://127.0.0.1:\(port)"), log)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    static func json(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    @Test("Without batches the client posts one by one, in order, and stops a refused mailbox")
    func fallsBackToSinglePosts() async throws {
        let open = MailboxID(owner: Ed25519.SecretKey().publicKey)
        let closed = MailboxID(owner: Ed25519.SecretKey().publicKey)
        try await withOldRelay(refusing: closed) { client, log in
            let token = SendToken()
            let envelopes = (0..<5).map { _ in sampleEnvelope() }
            let items: [EnvelopeBatch.Item] = [
                .init(mailbox: open, token: token, envelope: envelopes[0].encoded),
                .init(mailbox: closed, token: token, envelope: envelopes[1].encoded),
                .init(mailbox: open, token: token, envelope: envelopes[2].encoded),
                .init(mailbox: closed, token: token, envelope: envelopes[3].encoded),  // after the refusal: not sent
                .init(mailbox: open, token: token, envelope: envelopes[4].encoded),
            ]
            let results = try await client.post(batch: items)
            #expect(results.count == 5)
            #expect(try results[0].get().sequence == 1)
            #expect(try results[2].get().sequence == 2)
            #expect(try results[4].get().sequence == 3)
            guard case .failure(let refusal) = results[1], case .failure(let skipped) = results[3] else {
                Issue.record("the closed mailbox's items should have failed"); return
            }
            #expect(refusal.code == .forbidden)
            #expect(skipped.code == .notAttempted)
            // One batch request (404), then the single posts that were due, in order.
            #expect(log.batchAttempts.withLock { $0 } == 1)
            #expect(log.posts.withLock { $0.map(\.1) } == [envelopes[0], envelopes[2], envelopes[4]].map(\.id.description))
        }
    }
}
