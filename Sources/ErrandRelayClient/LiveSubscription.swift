public import ErrandCrypto
public import ErrandProtocol
import Foundation
import Logging
import NIOCore
import Synchronization
import WSClient

/// A mailbox's live connection that survives disconnects: it reconnects with jittered backoff
/// and resumes after the last envelope it saw, so nothing is missed (envelopes may repeat:
/// deduplicate by ``EnvelopeID``; acknowledge to delete them at the relay).
public final class LiveSubscription: Sendable {
    /// What the subscription reports.
    public enum Event: Sendable {
        /// An envelope from the mailbox, with its sequence number.
        case envelope(sequence: Int64, Envelope)
        /// Everything stored so far has been delivered; what follows arrives live.
        case caughtUp(sequence: Int64)
        /// The connection dropped or could not be made; it is being retried.
        case reconnecting(RelayClientError)
    }

    /// The events, until ``cancel()`` or a refusal that retrying cannot fix (thrown).
    public let events: AsyncThrowingStream<Event, any Error>
    private let writer = Box<WebSocketOutboundWriter?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(client: RelayClient, owner: Ed25519.SecretKey, after: Int64) {
        let (events, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        self.events = events
        let runner = Task { [writer] in
            await Self.run(client: client, owner: owner, after: after, writer: writer, continuation: continuation)
        }
        task.withLock { $0 = runner }
        continuation.onTermination = { _ in runner.cancel() }
    }

    /// Acknowledges (and so deletes) envelopes over the live connection.
    /// - Throws: ``RelayClientError`` (`.unreachable`) while disconnected; acknowledge again later.
    public func acknowledge(_ ids: [EnvelopeID]) async throws {
        guard let outbound = writer.value.withLock({ $0 }) else {
            throw RelayClientError(.unreachable, "not connected to the relay; acknowledge again after reconnecting")
        }
        for start in stride(from: 0, to: ids.count, by: LiveFrame.maximumAcknowledgements) {
            let chunk = Array(ids[start..<min(start + LiveFrame.maximumAcknowledgements, ids.count)])
            try await outbound.write(.binary(ByteBuffer(bytes: LiveFrame.acknowledge(chunk).encoded)))
        }
    }

    /// Closes the connection and ends ``events``.
    public func cancel() {
        task.withLock { $0?.cancel() }
    }

    /// A lock-protected value shared with the connection task.
    private final class Box<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
    }

    private static func run(client: RelayClient, owner: Ed25519.SecretKey, after: Int64,
                            writer: Box<WebSocketOutboundWriter?>,
                            continuation: AsyncThrowingStream<Event, any Error>.Continuation) async {
        let mailbox = MailboxID(owner: owner.publicKey)
        let url = client.baseURL.replacingOccurrences(of: "https://", with: "wss://").replacingOccurrences(of: "http://", with: "ws://")
            + "/v1/mailboxes/\(mailbox)/live"
        let cursor = Box<Int64>(after)
        var backoff = Backoff()
        var refreshedIdentity = false
        while !Task.isCancelled {
            do {
                // The answer names the relay (its verifier key), as signed requests do.
                let relay = try await client.relayIdentity()
                try await WebSocketClient.connect(
                    url: url,
                    configuration: .init(maxFrameSize: 128 * 1024, autoPing: .enabled(timePeriod: .seconds(30))),
                    logger: client.logger
                ) { inbound, outbound, _ in
                    var messages = inbound.messages(maxSize: 128 * 1024).makeAsyncIterator()
                    guard case .text(let text)? = try await messages.next(),
                          let challenge = try? JSONDecoder().decode(LiveAuthentication.Challenge.self, from: Data(text.utf8)) else {
                        throw RelayClientError(.protocolViolation, "the relay did not open the live connection with a challenge")
                    }
                    let answer = LiveAuthentication.answer(challenge: challenge.challenge, relay: relay, mailbox: mailbox, key: owner,
                                                           after: cursor.value.withLock { $0 })
                    try await outbound.write(.text(String(decoding: try JSONEncoder().encode(answer), as: UTF8.self)))
                    writer.value.withLock { $0 = outbound }
                    defer { writer.value.withLock { $0 = nil } }
                    while let message = try await messages.next() {
                        switch message {
                        case .text(let text):
                            let refusal = try? JSONDecoder().decode(RelayErrorBody.self, from: Data(text.utf8))
                            let code = refusal.flatMap { RelayErrorCode(rawValue: $0.error.code) } ?? .badRequest
                            throw RelayClientError(.refused(code), refusal?.error.message ?? "the relay closed the live connection")
                        case .binary(let buffer):
                            switch try? LiveFrame(parsing: Array(buffer.readableBytesView)) {
                            case .envelope(let rawSequence, let bytes)?:
                                guard let envelope = try? Envelope(parsing: bytes), let sequence = Int64(exactly: rawSequence) else {
                                    throw RelayClientError(.protocolViolation, "the relay sent an envelope that does not parse")
                                }
                                cursor.value.withLock { $0 = sequence }
                                continuation.yield(.envelope(sequence: sequence, envelope))
                            case .caughtUp(let rawSequence)?:
                                guard let sequence = Int64(exactly: rawSequence) else {
                                    throw RelayClientError(.protocolViolation, "the relay sent a sequence number out of range")
                                }
                                continuation.yield(.caughtUp(sequence: sequence))
                            default:
                                throw RelayClientError(.protocolViolation, "the relay sent an unknown live frame")
                            }
                        }
                    }
                }
                backoff.reset()
            } catch let error as RelayClientError where error.code == .unauthenticated && !refreshedIdentity
                && client.forgetFetchedRelayIdentity() {
                // Answered for the relay's key as first fetched: a new installation at the same
                // address has another one. Fetch it again and answer once more.
                refreshedIdentity = true
                continue
            } catch let error as RelayClientError where !error.isTransient {
                continuation.finish(throwing: error)
                return
            } catch is CancellationError {
                break
            } catch {
                let failure = (error as? RelayClientError)
                    ?? RelayClientError(.unreachable, "live connection to \(client.baseURL) lost: \(RelayClient.describe(error))")
                continuation.yield(.reconnecting(failure))
            }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: backoff.next())
        }
        continuation.finish()
    }
}

extension RelayClient {
    /// Opens the owner's live connection, delivering envelopes after sequence `after`.
    public func subscribe(owner: Ed25519.SecretKey, after: Int64 = 0) -> LiveSubscription {
        LiveSubscription(client: self, owner: owner, after: after)
    }
}
