public import ErrandProtocol

/// A failure talking to the relay: refused (with the relay's code and message), unreachable,
/// or an answer that does not follow the protocol.
public struct RelayClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The relay answered with a refusal.
        case refused(RelayErrorCode)
        /// No connection, or it broke (worth retrying).
        case unreachable
        /// The relay's answer made no sense.
        case protocolViolation
    }

    public let kind: Kind
    public let message: String
    /// Seconds the relay asked us to wait (429).
    public let retryAfterSeconds: Int?
    /// The HTTP status, when there was one.
    public let status: Int?

    public init(_ kind: Kind, _ message: String, status: Int? = nil, retryAfterSeconds: Int? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// The relay's refusal code, if it refused.
    public var code: RelayErrorCode? {
        if case .refused(let code) = kind { return code }
        return nil
    }

    /// Whether trying again later may succeed.
    public var isTransient: Bool {
        switch kind {
        case .unreachable: true
        case .refused(let code): code == .rateLimited || code == .unavailable || code == .internalError || code == .notAttempted
        case .protocolViolation: false
        }
    }

    public var description: String { message }
}
