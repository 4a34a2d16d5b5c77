import ErrandCrypto
import ErrandProtocol
import ErrandTransparency
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The transparency log, readable by anyone (it reveals nothing linkable to a mailbox):
/// C2SP tlog-tiles (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) plus
/// `/v1/log/key`, `/v1/log/inclusion?index=&size=`, `/v1/log/consistency?from=&to=` and
/// `/v1/log/leaf?hash=` (the index of a leaf by its hash, base64url).
struct AuditRoutes {
    let core: RelayCore

    struct Proof: Encodable { let proof: [String] }
    struct LeafIndex: Encodable { let index: Int64 }

    func register(on router: Router<RelayRequestContext>) {
        router.get("/checkpoint") { _, _ in
            guard let checkpoint = try await core.store.latestAuditCheckpoint() else {
                throw core.refuse(.unavailable, "the log has no checkpoint yet; try again in a moment")
            }
            return text(checkpoint.note, cache: "no-cache")
        }
        router.get("/v1/log/key") { _, _ in text(core.identity + "\n", cache: "no-cache") }
        router.get("/tile/**") { _, context in try await tile(context) }
        router.get("/v1/log/inclusion") { request, _ in
            let size = try await integratedSize()
            let index = try integer(request, "index"), treeSize = try integer(request, "size")
            guard index >= 0, index < treeSize, treeSize <= size else {
                throw core.refuse(.badRequest, "need 0 ≤ index < size ≤ \(size) (the latest checkpoint)")
            }
            return try json(Proof(proof: try await core.audit.inclusionProof(index: index, size: treeSize).map { Data($0).base64EncodedString() }))
        }
        router.get("/v1/log/consistency") { request, _ in
            let size = try await integratedSize()
            let from = try integer(request, "from"), to = try integer(request, "to")
            guard from >= 1, from <= to, to <= size else { throw core.refuse(.badRequest, "need 1 ≤ from ≤ to ≤ \(size) (the latest checkpoint)") }
            return try json(Proof(proof: try await core.audit.consistencyProof(from: from, to: to).map { Data($0).base64EncodedString() }))
        }
        router.get("/v1/log/leaf") { request, _ in
            guard let text = request.uri.queryParameters["hash"], let hash = try? ByteEncoding.bytes(base64URL: String(text)), hash.count == 32 else {
                throw core.refuse(.badRequest, "'hash' must be a leaf hash (32 bytes, base64url)")
            }
            guard let index = try await core.store.auditLeafIndex(leafHash: hash) else {
                throw core.refuse(.notFound, "no integrated leaf has this hash (it may not be integrated yet)")
            }
            return try json(LeafIndex(index: index - 0))
        }
    }

    private func integratedSize() async throws -> Int64 {
        try await core.store.latestAuditCheckpoint()?.size ?? 0
    }

    private func integer(_ request: Request, _ name: String) throws -> Int64 {
        try core.integerParameter(request, name, in: 0...Int64.max)
    }

    private func tile(_ context: RelayRequestContext) async throws -> Response {
        guard let (level, index, partial) = TilePath.parse(context.parameters.getCatchAll()) else {
            throw core.refuse(.notFound, "not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")
        }
        let size = UInt64(try await integratedSize())
        let width = partial ?? TilePath.width
        let cache = partial == nil ? "public, max-age=31536000, immutable" : "no-cache"
        if let level {
            // Tile hashes are the nodes of tree level 8L: each covers 256^L leaves. Bounds are
            // checked by division first, so no product can overflow.
            let treeLevel = level * TilePath.height
            guard treeLevel < 63 else { throw core.refuse(.notFound, "this tile is beyond the latest checkpoint") }
            let complete = size >> UInt64(treeLevel)  // complete nodes at that level
            guard index <= complete / TilePath.width, index * TilePath.width + width <= complete else {
                throw core.refuse(.notFound, "this tile is beyond the latest checkpoint")
            }
            let first = index * TilePath.width
            let ids = (0..<width).map { AuditNodeID(level: treeLevel, index: Int64(first + $0)) }
            let nodes = try await core.store.auditNodes(ids)
            var body: [UInt8] = []
            for id in ids {
                guard let hash = nodes[id] else { throw core.refuse(.notFound, "this tile is not integrated yet") }
                body += hash
            }
            return octets(body, cache: cache)
        }
        guard index <= size / TilePath.width, index * TilePath.width + width <= size else {
            throw core.refuse(.notFound, "this entry bundle is beyond the latest checkpoint")
        }
        let first = index * TilePath.width
        let leaves = try await core.store.auditLeaves(from: Int64(first), count: Int(width))
        var body: [UInt8] = []
        for leaf in leaves { body += [UInt8(leaf.count >> 8), UInt8(leaf.count & 0xFF)] + leaf }
        return octets(body, cache: cache)
    }

    private func text(_ body: String, cache: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: cache],
                 body: .init(byteBuffer: ByteBuffer(bytes: Array(body.utf8))))
    }

    private func octets(_ bytes: [UInt8], cache: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/octet-stream", .cacheControl: cache],
                 body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
