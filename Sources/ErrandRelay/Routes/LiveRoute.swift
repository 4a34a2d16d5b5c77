import ErrandCrypto
import ErrandProtocol
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// `GET /v1/mailboxes/:mailbox/live` (WebSocket): after the in-band challenge
/// (``LiveAuthentication``) the owner receives every stored envelope after its cursor, a
/// "caught up" marker, then new envelopes as they arrive; it acknowledges with ack frames.
///
/// Bounded: nothing is queued per connection beyond one wake-up; a write that takes longer than
/// the write timeout drops the connection (the envelopes stay stored for the next one).
struct LiveRoute {
    let core: RelayCore

    /// Envelopes read from the store per batch (at most 4 MiB).
    static let batchSize = 64
    static let authenticationTimeout: Duration = .seconds(10)

    private enum ReaderEvent: Sendable {
        case authenticated(after: Int64)
        /// The reader ended before authenticating (the peer left, or was refused).
        case ended
        case timedOut
    }

    func register(on router: Router<RelayRequestContext>) {
        router.ws("/v1/mailboxes/:mailbox/live") { _, context in
            // A refused upgrade reaches the client as a plain 400; limits are checked again in-band.
            (try? await core.limitClient(context.clientIP)) == nil ? .dontUpgrade : .upgrade([:])
        } onUpgrade: { inbound, outbound, context in
            core.metrics.connectionOpened()
            defer { core.metrics.connectionClosed() }
            try await session(inbound: inbound, outbound: outbound, context: context)
        }
    }

    private func session(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                         context: WebSocketRouterContext<RelayRequestContext>) async throws {
        guard let text = context.requestContext.parameters.get("mailbox"), let mailbox = try? MailboxID(text) else {
            return try await fail(outbound, .badRequest, "the URL does not name a mailbox")
        }
        let challenge = ByteEncoding.base64URL(SecureRandom.bytes(count: LiveAuthentication.challengeLength))
        try await outbound.write(.text(String(decoding: try JSONEncoder().encode(LiveAuthentication.Challenge(challenge: challenge)), as: UTF8.self)))

        let (events, signal) = AsyncStream<ReaderEvent>.makeStream()
        let writeClock = WriteWatchdog.Clock()
        // The connection's work runs in a task the relay-wide watchdog can cancel if a write stalls.
        let work = Task {
            try await exchange(inbound: inbound, outbound: outbound, mailbox: mailbox, challenge: challenge,
                               events: events, signal: signal, writeClock: writeClock)
        }
        let watch = core.watchdog.watch(writeClock) { work.cancel() }
        defer { core.watchdog.forget(watch) }
        try await withTaskCancellationHandler {
            try await work.value
        } onCancel: {
            work.cancel()
        }
    }

    /// Reader and pusher of one connection; returns when the peer leaves or authentication fails.
    private func exchange(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, mailbox: MailboxID, challenge: String,
                          events: AsyncStream<ReaderEvent>, signal: AsyncStream<ReaderEvent>.Continuation,
                          writeClock: WriteWatchdog.Clock) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { signal.finish() }
                try await read(inbound: inbound, outbound: outbound, mailbox: mailbox, challenge: challenge, signal: signal)
            }
            group.addTask {
                switch await firstEvent(events) {
                case .authenticated(let after):
                    try await push(outbound: outbound, mailbox: mailbox, after: after, writeClock: writeClock)
                case .timedOut:
                    try await fail(outbound, .unauthenticated, "no answer to the challenge within 10 seconds")
                case .ended:
                    return
                }
            }
            // The reader ends when the peer closes; the pusher when authentication fails.
            _ = try await group.next()
            group.cancelAll()
        }
    }

    /// Reads the challenge answer, then acknowledgement frames, until the peer closes.
    private func read(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, mailbox: MailboxID,
                      challenge: String, signal: AsyncStream<ReaderEvent>.Continuation) async throws {
        var messages = inbound.messages(maxSize: 64 * 1024).makeAsyncIterator()
        guard let first = try await messages.next() else { return }
        guard case .text(let text) = first,
              let answer = try? JSONDecoder().decode(LiveAuthentication.Answer.self, from: Data(text.utf8)),
              let keyBytes = try? ByteEncoding.bytes(base64URL: answer.key), let key = try? Ed25519.PublicKey(bytes: keyBytes),
              let signature = try? ByteEncoding.bytes(base64URL: answer.signature)
        else {
            return try await fail(outbound, .unauthenticated, "the first message must answer the challenge: {\"key\", \"signature\", \"after\"}")
        }
        guard MailboxID(owner: key) == mailbox else {
            return try await fail(outbound, .forbidden, "this key does not own mailbox \(mailbox.logPrefix)…")
        }
        guard key.isValidSignature(signature, for: LiveAuthentication.message(mailbox: mailbox, challenge: challenge)) else {
            return try await fail(outbound, .unauthenticated, "the challenge signature does not verify")
        }
        guard try await core.store.mailboxExists(mailbox) else {
            return try await fail(outbound, .notFound, "mailbox \(mailbox.logPrefix)… does not exist (or was closed)")
        }
        guard core.hub.connectionCount(of: mailbox) < core.configuration.maximumLiveConnectionsPerMailbox else {
            return try await fail(outbound, .rateLimited,
                                  "mailbox \(mailbox.logPrefix)… already has \(core.configuration.maximumLiveConnectionsPerMailbox) live connections")
        }
        signal.yield(.authenticated(after: max(answer.after ?? 0, 0)))
        while let message = try await messages.next() {
            guard case .binary(let buffer) = message, case .acknowledge(let ids)? = try? LiveFrame(parsing: Array(buffer.readableBytesView)) else {
                return try await fail(outbound, .badRequest, "expected an acknowledgement frame (0x03 followed by envelope ids)")
            }
            _ = try await core.store.acknowledge(ids, in: mailbox)
        }
    }

    /// Sends stored envelopes after `after`, the caught-up marker, then new ones as they are stored.
    private func push(outbound: WebSocketOutboundWriter, mailbox: MailboxID, after: Int64,
                      writeClock: WriteWatchdog.Clock) async throws {
        let subscription = core.hub.subscribe(mailbox)
        defer { subscription.cancel() }
        var wakeups = subscription.wakeups.makeAsyncIterator()
        var cursor = after
        var caughtUp = false
        while !Task.isCancelled {
            let batch = try await core.store.envelopes(in: mailbox, after: cursor, limit: Self.batchSize)
            for stored in batch {
                writeClock.begin()
                try await outbound.write(.binary(ByteBuffer(bytes: LiveFrame.envelope(sequence: UInt64(stored.sequence), envelope: stored.encoded).encoded)))
                writeClock.end()
                cursor = stored.sequence
            }
            core.metrics.delivered(count: batch.count)
            guard batch.count < Self.batchSize else { continue }
            if !caughtUp {
                try await outbound.write(.binary(ByteBuffer(bytes: LiveFrame.caughtUp(sequence: UInt64(cursor)).encoded)))
                caughtUp = true
            }
            guard await wakeups.next() != nil else { return }
        }
    }

    private func firstEvent(_ events: AsyncStream<ReaderEvent>) async -> ReaderEvent {
        await withTaskGroup(of: ReaderEvent.self) { group in
            group.addTask {
                for await event in events { return event }
                return .ended
            }
            group.addTask {
                do {
                    try await Task.sleep(for: Self.authenticationTimeout)
                    return .timedOut
                } catch {
                    return .ended
                }
            }
            let first = await group.next() ?? .ended
            group.cancelAll()
            return first
        }
    }

    /// Sends the refusal as a JSON text frame and closes with 1008 (policy violation).
    private func fail(_ outbound: WebSocketOutboundWriter, _ code: RelayErrorCode, _ message: String) async throws {
        core.metrics.refused(code)
        let body = try JSONEncoder().encode(RelayErrorBody(code: code, message: message))
        try await outbound.write(.text(String(decoding: body, as: UTF8.self)))
        try await outbound.close(.policyViolation, reason: code.rawValue)
    }
}
