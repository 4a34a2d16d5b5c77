import ErrandProtocol
import Foundation
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// Open TCP connections per client address (an IPv6 address counts by its prefix), so one
/// address cannot hold the relay's whole connection allowance with idle sockets.
///
/// Counted from the moment a connection is accepted, before any byte arrives. Connections from
/// a trusted proxy are not counted: they carry many clients.
final class ConnectionsPerAddress: Sendable {
    let maximum: Int
    private let open = Mutex<[String: Int]>([:])

    init(maximum: Int) { self.maximum = maximum }

    /// Counts one more connection for `key`; false (and nothing counted) when it already has `maximum`.
    func admit(_ key: String) -> Bool {
        open.withLock { open in
            let count = open[key, default: 0]
            guard count < maximum else { return false }
            open[key] = count + 1
            return true
        }
    }

    /// Counts a connection of `key` as closed.
    func release(_ key: String) {
        open.withLock { open in
            let count = open[key, default: 0] - 1
            open[key] = count > 0 ? count : nil
        }
    }

    /// Open connections counted for `key`.
    func count(_ key: String) -> Int { open.withLock { $0[key, default: 0] } }
}

/// Wraps a server child channel so every accepted connection is counted against its address's
/// allowance (``ConnectionsPerAddress``). One over it is answered, on plain HTTP, with
/// 429 `rate_limited` and closed; on TLS it is closed at once (no handshake is spent on it).
struct ConnectionLimitChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let core: RelayCore
    let plainHTTP: Bool

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let key = core.connectionLimitKey(peer: channel.remoteAddress?.ipAddress)
        return channel.eventLoop.makeCompletedFuture {
            if let key {
                try channel.pipeline.syncOperations.addHandler(
                    ConnectionCountHandler(key: key, connections: core.connectionsPerAddress, core: core, plainHTTP: plainHTTP))
            }
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Holds one connection's place in ``ConnectionsPerAddress`` for as long as the connection is
/// open, or refuses the connection when its address has no place left.
final class ConnectionCountHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let key: String
    private let connections: ConnectionsPerAddress
    private let core: RelayCore
    private let plainHTTP: Bool
    private var admitted = false
    private var refused = false

    init(key: String, connections: ConnectionsPerAddress, core: RelayCore, plainHTTP: Bool) {
        self.key = key
        self.connections = connections
        self.core = core
        self.plainHTTP = plainHTTP
    }

    func handlerAdded(context: ChannelHandlerContext) {
        admitted = connections.admit(key)
        // An accepted connection may be active already when its pipeline is set up.
        if !admitted && context.channel.isActive { refuse(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if admitted { connections.release(key) }
        admitted = false
    }

    func channelActive(context: ChannelHandlerContext) {
        guard !admitted else { return context.fireChannelActive() }
        refuse(context: context)
    }

    private func refuse(context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        core.metrics.refused(.rateLimited)
        guard plainHTTP else { return context.close(promise: nil) }
        let body = (try? JSONEncoder().encode(RelayErrorBody(
            code: .rateLimited,
            message: "too many open connections from this address (limits.max_connections_per_ip = \(connections.maximum)); "
                + "close some, or retry in a few seconds",
            retryAfterSeconds: 5))) ?? Data()
        let head = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            + "Retry-After: 5\r\nConnection: close\r\n\r\n"
        let channel = context.channel
        // Output closed after the answer, input drained until the client closes (or 5 s), so an
        // unread request does not turn the close into a reset that loses the answer.
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: Array(head.utf8) + body))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
        context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }  // a refused connection's bytes go nowhere
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if refused, let event = event as? ChannelEvent, event == .inputClosed { return context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }
}
