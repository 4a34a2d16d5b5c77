import Foundation
import Synchronization

/// Token-bucket rate limiting per key (a client IP, a mailbox): `rate` requests per second on
/// average, up to `burst` at once. Refusals say how long to wait, so the relay can answer
/// 429 with `Retry-After` instead of dropping anything.
final class RateLimiter<Key: Hashable & Sendable>: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: TimeInterval
    }

    private let rate: Double
    private let burst: Double
    private let maximumKeys: Int
    private let buckets = Mutex<[Key: Bucket]>([:])

    /// - Parameters:
    ///   - rate: requests per second allowed on average (≤ 0 disables the limit).
    ///   - burst: requests allowed at once.
    ///   - maximumKeys: buckets kept before full (idle) ones are forgotten.
    init(rate: Double, burst: Double, maximumKeys: Int = 100_000) {
        self.rate = rate
        self.burst = max(burst, 1)
        self.maximumKeys = maximumKeys
    }

    /// Takes `cost` tokens for `key` (allowed while at least one is left; the bucket may go into
    /// debt, which later requests wait out); `nil` when allowed, otherwise the seconds to wait (≥ 1).
    func acquire(_ key: Key, cost: Double = 1, now: TimeInterval = ProcessInfo.processInfo.systemUptime) -> Int? {
        guard rate > 0 else { return nil }
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            defer {
                if buckets.count >= maximumKeys { Self.forgetIdle(&buckets, burst: burst, rate: rate, now: now) }
                buckets[key] = bucket
            }
            if bucket.tokens >= 1 {
                bucket.tokens -= cost
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / rate).rounded(.up)))
        }
    }

    /// Drops buckets that have refilled completely: forgetting them changes nothing.
    private static func forgetIdle(_ buckets: inout [Key: Bucket], burst: Double, rate: Double, now: TimeInterval) {
        buckets = buckets.filter { _, bucket in bucket.tokens + (now - bucket.updated) * rate < burst }
    }
}
