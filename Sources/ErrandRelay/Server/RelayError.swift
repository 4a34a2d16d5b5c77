import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// A refusal: the HTTP status from its code, and the JSON body every refusal carries
/// (`{"error": {"code", "message", "retryAfterSeconds"}}`), plus `Retry-After` when it applies.
struct RelayError: HTTPResponseError {
    let code: RelayErrorCode
    let message: String
    var retryAfterSeconds: Int?
    /// The connection is closed after this answer (`Connection: close`): the request's body was
    /// not read to its end.
    var closesConnection = false

    init(_ code: RelayErrorCode, _ message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    var status: HTTPResponse.Status { HTTPResponse.Status(code: code.status) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = try JSONEncoder().encode(RelayErrorBody(code: code, message: message, retryAfterSeconds: retryAfterSeconds))
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        if closesConnection { headers[.connection] = "close" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every error a route lets escape into a JSON refusal (Hummingbird's own errors, such
/// as an oversized body, included), so no client ever gets an empty error body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as RelayError {
            throw error
        } catch let error as NIOTooManyBytesError {
            throw RelayError(.tooLarge, "the request body is larger than \(error.maxBytes ?? 0) bytes")
        } catch let error as any HTTPResponseError {
            switch error.status {
            case .notFound: throw RelayError(.notFound, "no such endpoint: \(request.method) \(request.uri.path)")
            case .badRequest: throw RelayError(.badRequest, "the request is malformed")
            case .contentTooLarge: throw RelayError(.tooLarge, "the request body is too large")
            default: throw RelayError(.internalError, "the request failed (\(error.status.code))")
            }
        } catch is DecodingError {
            throw RelayError(.badRequest, "the JSON body does not have the expected fields")
        } catch {
            context.logger.error("request failed", metadata: ["error.type": "\(type(of: error))"])
            throw RelayError(.internalError, "the relay failed to handle the request; try again")
        }
    }
}
