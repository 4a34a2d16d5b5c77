import ArgumentParser

/// `errand-bench`: performance measurements. Run release builds only:
/// `swift run -c release errand-bench crypto`.
@main
struct ErrandBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "errand-bench",
        abstract: "Measure Errand's performance (build with -c release).",
        subcommands: [CryptoBenchmark.self, SessionBenchmark.self, AdapterBenchmark.self, RelayBenchmark.self, StoreBenchmark.self, PairingBenchmark.self, RoundTripBenchmark.self, AuditBenchmark.self]
    )
}
