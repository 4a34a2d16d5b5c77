/// Machine-readable reasons the relay gives for refusing a request. Every refusal carries a
/// JSON body `{"error": {"code": "...", "message": "...", "retryAfterSeconds": n?}}`.
public enum RelayErrorCode: String, Sendable, Codable, CaseIterable {
    /// 400: the request is malformed (bad JSON, bad id, bad parameter).
    case badRequest = "bad_request"
    /// 400: the body is not a valid envelope v1.
    case invalidEnvelope = "invalid_envelope"
    /// 401: no or invalid signature / send token / registration token.
    case unauthenticated = "unauthenticated"
    /// 401: a signed request was seen before.
    case replayedRequest = "replayed_request"
    /// 403: authenticated, but not allowed (wrong mailbox, revoked token, closed registration).
    case forbidden = "forbidden"
    /// 404: no such mailbox or pairing slot (or it expired).
    case notFound = "not_found"
    /// 409: the pairing slot already has a request (or reply) from someone.
    case slotAlreadyUsed = "slot_already_used"
    /// 424: in a batch, an earlier envelope for the same mailbox was refused, so this one was not
    /// stored either (a mailbox's envelopes keep their order).
    case notAttempted = "not_attempted"
    /// 413: the body exceeds the size limit.
    case tooLarge = "too_large"
    /// 429: too many requests; retry after `retryAfterSeconds`.
    case rateLimited = "rate_limited"
    /// 503: the relay is shutting down or overloaded.
    case unavailable = "unavailable"
    /// 507: the mailbox's quota (envelopes or bytes) is full until its owner acknowledges some.
    case quotaExceeded = "quota_exceeded"
    /// 500: something failed inside the relay.
    case internalError = "internal_error"

    /// The HTTP status that goes with the code.
    public var status: Int {
        switch self {
        case .badRequest, .invalidEnvelope: 400
        case .unauthenticated, .replayedRequest: 401
        case .forbidden: 403
        case .notFound: 404
        case .slotAlreadyUsed: 409
        case .tooLarge: 413
        case .notAttempted: 424
        case .rateLimited: 429
        case .unavailable: 503
        case .quotaExceeded: 507
        case .internalError: 500
        }
    }
}

/// The JSON body of every refusal.
public struct RelayErrorBody: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public let code: String
        public let message: String
        public let retryAfterSeconds: Int?

        public init(code: String, message: String, retryAfterSeconds: Int? = nil) {
            self.code = code
            self.message = message
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    public let error: Detail

    public init(code: RelayErrorCode, message: String, retryAfterSeconds: Int? = nil) {
        error = Detail(code: code.rawValue, message: message, retryAfterSeconds: retryAfterSeconds)
    }
}
