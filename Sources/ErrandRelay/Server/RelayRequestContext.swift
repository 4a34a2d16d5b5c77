public import Hummingbird
public import NIOCore

/// The request context of every relay route: Hummingbird's core storage plus the peer address
/// (for per-IP limits).
public struct RelayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The TCP peer (nil in in-process tests).
    public let remoteAddress: SocketAddress?
    /// The request's connection.
    let channel: any Channel
    /// The deadline of the request's body, when it declares one (see ``BodyDeadlineMiddleware``).
    var bodyDeadline: (watch: BodyDeadlines.Watch, deadline: ContinuousClock.Instant)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// Largest JSON body a route decodes.
    public var maxUploadSize: Int { 64 * 1024 }
}
