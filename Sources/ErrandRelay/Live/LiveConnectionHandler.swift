import ErrandCrypto
import ErrandProtocol
import Foundation
import Logging
import NIOCore
import NIOWebSocket

/// One live connection (`GET /v1/mailboxes/:mailbox/live` after the WebSocket upgrade).
///
/// After the in-band challenge (``LiveAuthentication``) the owner receives every stored envelope
/// after its cursor, a "caught up" marker, then new envelopes as they arrive; it acknowledges with
/// ack frames.
///
/// The whole connection is this handler on its event loop: no task waits on an idle connection,
/// which is what keeps one to a few KiB. A task runs only while the store is read (a batch to push)
/// or written (acknowledgements). Envelopes the store hands over as it commits them
/// (``LiveHub/publish(_:_:)``) are sent on without a read when nothing is missing before them.
///
/// Bounded: nothing is queued beyond one batch being written (64 envelopes read back, or what
/// one commit stored: at most a batch post, 1 MiB), one wake-up and one owed pong; a batch whose write takes longer than the write timeout drops the connection (the
/// envelopes stay stored for the next one). Acknowledgements are applied one store call at a
/// time; while one runs, or while the peer does not read what it is sent, the handler reads no
/// more from the socket.
final class LiveConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Envelopes read from the store per batch (at most 4 MiB).
    static let batchSize = 64

    private enum Phase {
        /// The challenge is sent; the first message must answer it.
        case awaitingAnswer
        /// The answer verified; the store is asked whether the mailbox exists.
        case checkingMailbox
        case live
        /// A close frame was sent; waiting for the peer's (or the close timeout).
        case closing
        case closed
    }

    private let core: RelayCore
    private let mailbox: MailboxID?
    private var context: ChannelHandlerContext?
    private var phase = Phase.awaitingAnswer
    private var challenge = ""

    // Pushing.
    private var subscription: UInt64?
    private var cursor: Int64 = 0
    private var caughtUp = false
    private var pushing = false
    private var rung = false
    private let writeClock = WriteWatchdog.Clock()
    private var watch: UUID?

    // Keepalive.
    private var pongOwed: ByteBuffer?

    // Acknowledging.
    private var acknowledging = false
    private var pendingAcknowledgements: [EnvelopeID] = []
    private var readHeld = false

    // Timers.
    private var authenticationTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var pingTimer: Scheduled<Void>?
    private var awaitingPong = false

    /// - Parameter mailbox: the mailbox the URL names (nil if it names none; refused in-band).
    init(core: RelayCore, mailbox: MailboxID?) {
        self.core = core
        self.mailbox = mailbox
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        core.metrics.connectionOpened()
        guard mailbox != nil else {
            return refuse(.badRequest, "the URL does not name a mailbox")
        }
        challenge = ByteEncoding.base64URL(SecureRandom.bytes(count: LiveAuthentication.challengeLength))
        let body = (try? JSONEncoder().encode(LiveAuthentication.Challenge(challenge: challenge))) ?? Data()
        send(.text, ByteBuffer(bytes: body), flush: true)
        let seconds = core.configuration.liveAuthenticationSeconds
        authenticationTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(seconds))) { [self] in
            if phase == .awaitingAnswer {
                refuse(.unauthenticated, "no answer to the challenge within \(seconds) seconds")
            }
        }
        schedulePing()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    /// Releases everything the connection holds; safe to call more than once.
    private func finish() {
        guard phase != .closed else { return }
        phase = .closed
        leaveLive()
        authenticationTimer?.cancel()
        closeTimer?.cancel()
        pingTimer?.cancel()
        authenticationTimer = nil
        closeTimer = nil
        pingTimer = nil
        core.metrics.connectionClosed()
    }

    /// Stops being rung and watched (on close, or when a close handshake starts).
    private func leaveLive() {
        if let subscription, let mailbox { core.hub.unsubscribe(mailbox, subscription) }
        subscription = nil
        if let watch { core.watchdog.forget(watch) }
        watch = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // The relay is shutting down: say so, and let the client reconnect elsewhere or later.
            beginClose(code: .goingAway, reason: "relay shutting down")
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            beginClose(code: .messageTooLarge, reason: "message larger than 64 KiB")
        case is NIOWebSocketFrameAggregator.Error:
            beginClose(code: .protocolError, reason: "bad fragmentation")
        case is ClientFrameCheck.Violation:
            beginClose(code: .protocolError, reason: "client frames must be masked and use no reserved bits")
        case is NIOWebSocketError:
            // NIO's protocol error handler has sent the close frame and closes once it is written.
            break
        default:
            // A socket error: the connection is gone.
            context.close(promise: nil)
        }
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Masks and reserved bits were checked frame by frame (``ClientFrameCheck``) before
        // fragments were joined.
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            // Only the latest ping is answered, and only while the peer reads (RFC 6455 §5.5.3):
            // a peer that pings without reading cannot pile up pongs here.
            pongOwed = frame.unmaskedData
            sendOwedPong()
        case .pong:
            awaitingPong = false
        case .connectionClose:
            receivedClose(frame)
        case .text, .binary:
            received(frame)
        default:
            beginClose(code: .protocolError, reason: "unknown opcode")
        }
    }

    private func received(_ frame: WebSocketFrame) {
        switch phase {
        case .awaitingAnswer:
            authenticate(frame)
        case .checkingMailbox:
            refuse(.badRequest, "wait for the caught-up marker before sending acknowledgements")
        case .live:
            guard frame.opcode == .binary, case .acknowledge(let ids)? = try? LiveFrame(parsing: Array(frame.unmaskedData.readableBytesView)) else {
                return refuse(.badRequest, "expected an acknowledgement frame (0x03 followed by envelope ids)")
            }
            acknowledge(ids)
        case .closing, .closed:
            break
        }
    }

    private func authenticate(_ frame: WebSocketFrame) {
        guard let mailbox else { return }
        var data = frame.unmaskedData
        guard frame.opcode == .text, let bytes = data.readBytes(length: data.readableBytes),
              let answer = try? JSONDecoder().decode(LiveAuthentication.Answer.self, from: Data(bytes)),
              let keyBytes = try? ByteEncoding.bytes(base64URL: answer.key), let key = try? Ed25519.PublicKey(bytes: keyBytes),
              let signature = try? ByteEncoding.bytes(base64URL: answer.signature)
        else {
            return refuse(.unauthenticated, "the first message must answer the challenge: {\"key\", \"signature\", \"after\"}")
        }
        guard MailboxID(owner: key) == mailbox else {
            return refuse(.forbidden, "this key does not own mailbox \(mailbox.logPrefix)…")
        }
        guard (answer.after ?? 0) >= 0 else {
            return refuse(.badRequest, "'after' must be a sequence number (0 or more)")
        }
        guard key.isValidSignature(signature, for: LiveAuthentication.message(relay: core.identity, mailbox: mailbox, challenge: challenge)) else {
            return refuse(.unauthenticated, "the challenge signature does not verify (it must sign \(LiveAuthentication.label), this relay's key \(core.identity), the mailbox and the challenge)")
        }
        phase = .checkingMailbox
        challenge = ""
        authenticationTimer?.cancel()
        authenticationTimer = nil
        cursor = answer.after ?? 0
        let store = core.store
        onLoop(of: { try await store.mailboxExists(mailbox) }) { [self] result in
            guard phase == .checkingMailbox else { return }
            switch result {
            case .success(true):
                goLive(mailbox)
            case .success(false):
                refuse(.notFound, "mailbox \(mailbox.logPrefix)… does not exist (or was closed)")
            case .failure(let error):
                storeFailed(error)
            }
        }
    }

    private func goLive(_ mailbox: MailboxID) {
        guard let context else { return }
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let limit = core.configuration.maximumLiveConnectionsPerMailbox
        guard let subscription = core.hub.subscribe(mailbox, limit: limit, wake: {
            eventLoop.execute { bound.value.wake() }
        }, deliver: { previous, envelopes in
            eventLoop.execute { bound.value.deliver(previous: previous, envelopes) }
        }) else {
            return refuse(.rateLimited, "mailbox \(mailbox.logPrefix)… already has \(limit) live connections")
        }
        self.subscription = subscription
        let channel = context.channel
        watch = core.watchdog.watch(writeClock) { channel.close(promise: nil) }
        phase = .live
        push()
    }

    // MARK: Pushing

    /// Something was stored for the mailbox: read it now, or after the batch in progress.
    private func wake() {
        rung = true
        push()
    }

    /// Envelopes just committed for the mailbox: sent on at once if everything up to the one
    /// before them (`previous`) has been sent and nothing else is in progress; otherwise read
    /// from the store like any other arrival.
    private func deliver(previous: Int64?, _ envelopes: [StoredEnvelope]) {
        guard phase == .live, caughtUp, !pushing, let previous, previous <= cursor else { return wake() }
        let fresh = envelopes.filter { $0.sequence > cursor }
        guard !fresh.isEmpty else { return }
        pushing = true
        write(fresh)
    }

    /// Reads the next batch after the cursor and writes it; one batch at a time.
    private func push() {
        guard phase == .live, !pushing, let mailbox else { return }
        pushing = true
        rung = false
        let store = core.store
        let cursor = self.cursor
        onLoop(of: { try await store.envelopes(in: mailbox, after: cursor, limit: Self.batchSize) }) { [self] result in
            guard phase == .live else { return }
            switch result {
            case .success(let batch):
                write(batch)
            case .failure(let error):
                storeFailed(error)
            }
        }
    }

    private func write(_ batch: [StoredEnvelope]) {
        guard let context else { return }
        var frames = batch.map { stored in
            LiveFrame.envelope(sequence: UInt64(stored.sequence), envelope: stored.encoded).encoded
        }
        cursor = batch.last?.sequence ?? cursor
        let full = batch.count == Self.batchSize
        if !full && !caughtUp {
            caughtUp = true
            frames.append(LiveFrame.caughtUp(sequence: UInt64(cursor)).encoded)
        }
        guard !frames.isEmpty else {
            pushing = false
            if rung { push() }
            return
        }
        // The next batch is read once this one has left; the watchdog drops a peer that stops reading.
        writeClock.begin()
        let written = context.eventLoop.makePromise(of: Void.self)
        for (index, frame) in frames.enumerated() {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: frame))),
                          promise: index == frames.count - 1 ? written : nil)
        }
        context.flush()
        written.futureResult.assumeIsolated().whenComplete { [self] result in
            writeClock.end()
            pushing = false
            guard case .success = result else { return }  // the connection is closing
            core.metrics.delivered(count: batch.count)
            if full || rung { push() }
        }
    }

    private func storeFailed(_ error: any Error) {
        core.logger.error("live connection: the store failed", metadata: ["error": "\(error)"])
        refuse(.internalError, "the relay could not use its store; reconnect later", closeCode: .unexpectedServerError)
    }

    // MARK: Acknowledging

    private func acknowledge(_ ids: [EnvelopeID]) {
        pendingAcknowledgements.append(contentsOf: ids)
        guard !acknowledging, let mailbox else { return }
        acknowledging = true
        let batch = pendingAcknowledgements
        pendingAcknowledgements = []
        let store = core.store
        onLoop(of: { try await store.acknowledge(batch, in: mailbox) }) { [self] result in
            acknowledging = false
            if case .failure(let error) = result { return storeFailed(error) }
            if !pendingAcknowledgements.isEmpty {
                acknowledge([])
            } else {
                resumeReading()
            }
        }
    }

    /// Holds reads from the socket while acknowledgements are being applied, or while the
    /// peer does not read what is sent to it (backpressure both ways).
    func read(context: ChannelHandlerContext) {
        if acknowledging || !context.channel.isWritable {
            readHeld = true
        } else {
            context.read()
        }
    }

    private func resumeReading() {
        guard readHeld, !acknowledging, let context, context.channel.isWritable else { return }
        readHeld = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            sendOwedPong()
            resumeReading()
        }
        context.fireChannelWritabilityChanged()
    }

    private func sendOwedPong() {
        guard let data = pongOwed, let context, context.channel.isWritable else { return }
        pongOwed = nil
        send(.pong, data, flush: true)
    }

    // MARK: Keepalive and closing

    private func schedulePing() {
        guard let context else { return }
        pingTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(core.configuration.webSocketPingSeconds))) { [self] in
            ping()
        }
    }

    /// Pings the peer; a peer that did not answer the previous ping is dropped.
    private func ping() {
        guard phase == .live || phase == .awaitingAnswer || phase == .checkingMailbox else { return }
        if awaitingPong {
            return beginClose(code: .goingAway, reason: "no pong within \(core.configuration.webSocketPingSeconds) s")
        }
        awaitingPong = true
        send(.ping, ByteBuffer(bytes: SecureRandom.bytes(count: 8)), flush: true)
        schedulePing()
    }

    private func receivedClose(_ frame: WebSocketFrame) {
        guard let context else { return }
        if phase != .closing {
            // Echo the peer's status code (RFC 6455 §5.5.1), then close; a code a peer may not
            // send (§7.4) is answered with 1002.
            let payload = frame.unmaskedData
            var reply = ByteBuffer()
            if let code = payload.getInteger(at: payload.readerIndex, as: UInt16.self) {
                let valid = (1000...1014).contains(code) && ![1004, 1005, 1006].contains(code) || (3000...4999).contains(code)
                if valid { reply.writeInteger(code) } else { reply.write(webSocketErrorCode: .protocolError) }
            } else if payload.readableBytes == 1 {
                reply.write(webSocketErrorCode: .protocolError)
            }
            phase = .closing
            leaveLive()
            send(.connectionClose, reply, flush: true)
        }
        context.close(promise: nil)
    }

    /// Sends the refusal as a JSON text frame and closes with 1008 (policy violation).
    private func refuse(_ code: RelayErrorCode, _ message: String, closeCode: WebSocketErrorCode = .policyViolation) {
        guard phase != .closing, phase != .closed else { return }
        core.metrics.refused(code)
        let body = (try? JSONEncoder().encode(RelayErrorBody(code: code, message: message))) ?? Data()
        send(.text, ByteBuffer(bytes: body), flush: false)
        beginClose(code: closeCode, reason: code.rawValue)
    }

    /// Sends a close frame and waits (at most the close timeout) for the peer's before closing the socket.
    private func beginClose(code: WebSocketErrorCode, reason: String) {
        guard let context, phase != .closing, phase != .closed else { return }
        phase = .closing
        leaveLive()
        authenticationTimer?.cancel()
        var data = ByteBuffer()
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        send(.connectionClose, data, flush: true)
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(10)) { [self] in
            self.context?.close(promise: nil)
        }
    }

    private func send(_ opcode: WebSocketOpcode, _ data: ByteBuffer, flush: Bool) {
        guard let context else { return }
        let frame = WebSocketFrame(fin: true, opcode: opcode, data: data)
        if flush {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(wrapOutboundOut(frame), promise: nil)
        }
    }

    /// Runs `work` in a task and hands its result to `then` back on this connection's event loop.
    private func onLoop<T: Sendable>(of work: @escaping @Sendable () async throws -> T, then: @escaping (Result<T, any Error>) -> Void) {
        guard let context else { return }
        context.eventLoop.makeFutureWithTask(work).assumeIsolated().whenComplete(then)
    }
}

/// Refuses client frames that break RFC 6455 §5.1–5.2 before fragments are joined (the joined
/// message no longer shows them): every client frame is masked, and no reserved bit is set, as
/// no extension is negotiated. A violation reaches ``LiveConnectionHandler`` as an error, which
/// closes with 1002.
final class ClientFrameCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    struct Violation: Error {}

    private var violated = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !violated else { return }
        let frame = unwrapInboundIn(data)
        guard frame.maskKey != nil, frame.reservedBits.isEmpty else {
            violated = true
            return context.fireErrorCaught(Violation())
        }
        context.fireChannelRead(data)
    }
}
