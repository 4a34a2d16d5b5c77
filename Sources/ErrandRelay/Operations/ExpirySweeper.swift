import Logging
import ServiceLifecycle

/// Deletes what has outlived its TTL (envelopes, pairing slots, nonces, invites) every
/// `interval`, until graceful shutdown.
struct ExpirySweeper: Service {
    let core: RelayCore
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await sweep()
                try? await Task.sleep(for: interval)
            }
        }
    }

    func sweep() async {
        do {
            let report = try await core.store.expire(now: core.nowSeconds)
            core.metrics.expired(count: report.envelopes)
            if report.envelopes + report.slots > 0 {
                core.logger.info("expired", metadata: ["envelope.count": "\(report.envelopes)", "slot.count": "\(report.slots)"])
            }
        } catch {
            core.logger.error("expiry sweep failed", metadata: ["error.type": "\(type(of: error))"])
        }
    }
}
