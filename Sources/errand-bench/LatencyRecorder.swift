import Synchronization
import struct Histogram.Histogram

/// Latencies in microseconds, in an HdrHistogram shared by many tasks.
final class LatencyRecorder: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000,
                                                    numberOfSignificantValueDigits: .three))

    func record(microseconds: UInt64) {
        histogram.withLock { _ = $0.record(max(microseconds, 1)) }
    }

    struct Summary: Sendable {
        let count: UInt64
        let p50: UInt64
        let p99: UInt64
        let p999: UInt64
        let max: UInt64
    }

    var summary: Summary {
        histogram.withLock { h in
            Summary(count: h.totalCount, p50: h.valueAtPercentile(50), p99: h.valueAtPercentile(99),
                    p999: h.valueAtPercentile(99.9), max: h.maxRecorded)
        }
    }
}
