public import Hummingbird
public import HummingbirdWebSocket
public import NIOCore

/// The request context of every relay route: Hummingbird's core storage plus the peer address
/// (for per-IP limits) and the WebSocket handler slot.
public struct RelayRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<RelayRequestContext>
    /// The TCP peer (nil in in-process tests).
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
    }

    /// Largest JSON body a route decodes.
    public var maxUploadSize: Int { 64 * 1024 }

    /// The client IP as text, or "local" when there is no socket.
    var clientIP: String { remoteAddress?.ipAddress ?? "local" }
}
