import ErrandProtocol
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /healthz` (200 while the store answers; asked at most once a second, however many
/// probes come) and `GET /metrics` (Prometheus text format).
struct OperationsRoutes {
    let core: RelayCore

    struct Health: Encodable { let status: String; let liveConnections: Int }

    func register(on router: Router<RelayRequestContext>) {
        router.get("/healthz") { _, _ in
            guard await core.storeHealth.isHealthy() else {
                throw core.refuse(.unavailable, "the store does not answer")
            }
            return try json(Health(status: "ok", liveConnections: core.hub.connectionCount))
        }
        router.get("/metrics") { _, _ in
            if let log = core.store.writeAheadLog { core.metrics.record(log) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: core.metrics.exposition())))
        }
    }
}
