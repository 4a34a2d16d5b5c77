import HummingbirdCore
import Logging
import NIOCore

/// Closes a connection whose first request head has not fully arrived within `deadline`, or
/// grows past `maximumHeadBytes`.
///
/// Hummingbird's WebSocket-upgrade channel arms its idle timer only after the first request
/// head is parsed, so without this a client could open connections and send a head byte by
/// byte (or never) and hold them for ever. Removed from the pipeline once the head is complete.
final class FirstRequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let deadline: TimeAmount
    private let maximumHeadBytes: Int
    private var timer: Scheduled<Void>?
    private var received = 0
    private var lastBytes: (UInt8, UInt8, UInt8) = (0, 0, 0)

    init(deadline: TimeAmount, maximumHeadBytes: Int) {
        self.deadline = deadline
        self.maximumHeadBytes = maximumHeadBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        var complete = false
        for byte in buffer.readableBytesView {
            received += 1
            if received > maximumHeadBytes {
                context.close(promise: nil)
                return
            }
            if lastBytes == (UInt8(ascii: "\r"), UInt8(ascii: "\n"), UInt8(ascii: "\r")) && byte == UInt8(ascii: "\n") {
                complete = true
                break
            }
            lastBytes = (lastBytes.1, lastBytes.2, byte)
        }
        context.fireChannelRead(data)
        if complete {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// Wraps a server child channel so every connection gets a ``FirstRequestDeadlineHandler``
/// ahead of the HTTP decoder (and behind TLS, when there is TLS).
struct FirstRequestDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let deadline: TimeAmount
    let maximumHeadBytes: Int

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                FirstRequestDeadlineHandler(deadline: deadline, maximumHeadBytes: maximumHeadBytes))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
