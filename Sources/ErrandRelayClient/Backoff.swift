/// Exponential backoff with full jitter: attempt *n* waits a random time between 0 and
/// `min(maximum, initial × 2ⁿ)`, so many clients reconnecting at once spread out.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    private(set) var attempt = 0

    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The next delay (and counts the attempt).
    public mutating func next() -> Duration {
        let ceiling = min(maximum, initial * Int(1 << min(attempt, 20)))
        attempt += 1
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanoseconds, 1)))
    }

    /// Back to the first delay after a success.
    public mutating func reset() { attempt = 0 }
}
