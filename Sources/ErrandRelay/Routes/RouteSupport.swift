import ErrandCrypto
import ErrandProtocol
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension RelayCore {
    /// The `:mailbox` path parameter.
    func mailboxParameter(_ context: RelayRequestContext) throws -> MailboxID {
        let text = try context.parameters.require("mailbox")
        do { return try MailboxID(text) } catch { throw refuse(.badRequest, error.description) }
    }

    /// The `:slot` path parameter.
    func slotParameter(_ context: RelayRequestContext) throws -> PairingSlotID {
        let text = try context.parameters.require("slot")
        guard let bytes = try? ByteEncoding.bytes(base64URL: text), let slot = try? PairingSlotID(bytes: bytes) else {
            throw refuse(.badRequest, "'\(text.prefix(40))' is not a pairing slot id (22 base64url characters)")
        }
        return slot
    }

    /// A query parameter that is a decimal integer in `range` (digits only, at most once), or
    /// `fallback` when it is absent; anything else is refused with 400 naming the parameter.
    func integerParameter(_ request: Request, _ name: String, in range: ClosedRange<Int64>, default fallback: Int64? = nil) throws -> Int64 {
        let values = request.uri.queryParameters.getAll(name)
        let bounds = range.upperBound == .max ? "\(range.lowerBound) or more" : "\(range.lowerBound) to \(range.upperBound)"
        guard values.count <= 1 else { throw refuse(.badRequest, "'\(name)' is given \(values.count) times; give it once") }
        guard let text = values.first else {
            if let fallback { return fallback }
            throw refuse(.badRequest, "'\(name)' is missing (an integer, \(bounds))")
        }
        guard !text.isEmpty, text.utf8.count <= 19, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int64(text), range.contains(value) else {
            throw refuse(.badRequest, "'\(name)' must be an integer, \(bounds); got '\(text.prefix(24))'")
        }
        return value
    }

    /// The request body, refusing more than `limit` bytes with 413 and a body still arriving past
    /// its deadline (`limits.idle_timeout_seconds`) with 400. ``BodyDeadlineMiddleware`` closes the
    /// connection of a body that stops arriving, and of a request answered before its body was
    /// read to the end (these refusals included).
    func body(_ request: Request, _ context: RelayRequestContext, limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await part in request.body {
            guard bytes.count + part.readableBytes <= limit else {
                throw refuse(.tooLarge, "the body is larger than \(limit) bytes (an envelope is at most \(Envelope.maximumLength), a batch at most \(EnvelopeBatch.maximumBodyBytes))")
            }
            if let deadline = context.bodyDeadline?.deadline, ContinuousClock.now >= deadline {
                throw refuse(.badRequest, "the request body did not arrive within \(configuration.idleTimeoutSeconds) seconds")
            }
            bytes.append(contentsOf: part.readableBytesView)
        }
        // Read to its end: nothing more to watch.
        if let watch = context.bodyDeadline?.watch { bodyDeadlines.release(watch) }
        return bytes
    }

    /// Parses an envelope body, refusing anything that is not envelope v1.
    func envelope(_ bytes: [UInt8]) throws -> Envelope {
        do { return try Envelope(parsing: bytes) } catch {
            throw refuse(error.code == .oversized ? .tooLarge : .invalidEnvelope, error.description)
        }
    }

    /// Decodes a JSON body.
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(bytes)) } catch {
            throw refuse(.badRequest, "the JSON body is not a valid \(T.self)")
        }
    }
}

/// A JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONEncoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// A binary response.
func octets(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}
