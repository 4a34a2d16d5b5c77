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

    /// The request body, refusing more than `limit` bytes with 413 and a body that takes longer
    /// than the idle timeout to arrive (a slow sender must not hold a connection for ever).
    ///
    /// A body still arriving past its deadline is refused at its next part; one that stops
    /// arriving has its connection closed (``BodyDeadlines``, one check a second for all
    /// requests rather than a timer task for each). A request refused before its body was read
    /// to the end loses its connection once the answer is out, so the rest is never read.
    func body(_ request: Request, _ context: RelayRequestContext, limit: Int) async throws -> [UInt8] {
        let deadline = ContinuousClock.now + .seconds(configuration.idleTimeoutSeconds)
        let watch = bodyDeadlines.watch(context.channel, until: deadline)
        var bytes: [UInt8] = []
        do {
            for try await part in request.body {
                guard bytes.count + part.readableBytes <= limit else {
                    throw refuse(.tooLarge, "the body is larger than \(limit) bytes (an envelope is at most \(Envelope.maximumLength), a batch at most \(EnvelopeBatch.maximumBodyBytes))")
                }
                guard ContinuousClock.now < deadline else {
                    throw refuse(.badRequest, "the request body did not arrive within \(configuration.idleTimeoutSeconds) seconds")
                }
                bytes.append(contentsOf: part.readableBytesView)
            }
        } catch var refusal as RelayError {
            // Not read to its end: the client must not send another request on this connection.
            bodyDeadlines.closeSoon(watch)
            refusal.closesConnection = true
            throw refusal
        } catch {
            bodyDeadlines.closeSoon(watch)
            throw error
        }
        bodyDeadlines.release(watch)
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
