import ArgumentParser
import ErrandCrypto
import ErrandHost
import ErrandProtocol
import Foundation

/// What the Claude Code adapter adds per agent event: parsing a stream-json line into steps and
/// rendering their text, against what every event costs anyway (its conversation message encoded
/// and sealed into the session), in the same run.
struct AdapterBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adapter",
        abstract: "Claude Code stream-json parsed into steps, per event, vs. encoding and sealing the event it becomes.")

    @Option(help: "Events per round.") var events = 20_000
    @Option(help: "Rounds; the median round is reported.") var rounds = 7

    func validate() throws {
        guard events >= 100, rounds >= 1 else { throw ValidationError("--events ≥ 100 and --rounds ≥ 1") }
    }

    /// A realistic mix: the agent's text, a tool use, its result (2 KB of output), every fourth a thinking block.
    static func stream(events: Int) -> [UInt8] {
        let session = UUID().uuidString.lowercased()
        let output = String(repeating: "drwxr-xr-x  5 user staff  160 Dec  3 10:00 notes\n", count: 40)
        var lines: [String] = []
        for index in 0..<events {
            let line: [String: Any]
            switch index % 4 {
            case 0: line = ["type": "assistant", "session_id": session, "message": ["content": [["type": "text", "text": String(repeating: "I will look at the notes folder first. ", count: 8)]]]]
            case 1: line = ["type": "assistant", "session_id": session, "message": ["content": [["type": "tool_use", "id": "toolu_\(index)", "name": "Bash", "input": ["command": "ls -l notes", "description": "List the notes"]]]]]
            case 2: line = ["type": "user", "session_id": session, "message": ["content": [["type": "tool_result", "tool_use_id": "toolu_\(index - 1)", "content": output, "is_error": false]]]]
            default: line = ["type": "assistant", "session_id": session, "message": ["content": [["type": "thinking", "thinking": "The folder has yesterday's files; sort them by topic."]]]]
            }
            lines.append(String(decoding: try! JSONSerialization.data(withJSONObject: line), as: UTF8.self))
        }
        return Array((lines.joined(separator: "\n") + "\n").utf8)
    }

    func run() throws {
        let bytes = Self.stream(events: events)
        var parse: [Double] = [], seal: [Double] = []
        var stepCount = 0, renderedBytes = 0
        for _ in 0..<rounds {
            var parser = AgentStreamParser(kind: .claudeCode)
            var steps: [AgentStep] = []
            var rendered = 0
            // In 4 KiB reads, as the output pipe delivers them.
            parse.append(measure(events) {
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + 4096, bytes.count)
                    let new = parser.feed(Array(bytes[offset..<end]))
                    for step in new { rendered += AgentStreamParser.rendered(step).utf8.count }
                    steps += new
                    offset = end
                }
            })
            stepCount = steps.count
            renderedBytes = rendered
            // What each event costs anyway: its message encoded and sealed (one direction).
            var (sender, _) = try SessionBenchmark.pair()
            let sample = Array(steps.prefix(4))
            var failure: (any Error)?
            seal.append(measure(events) {
                for index in 0..<events {
                    let message = ConversationMessage.event(TaskEvent(task: "t", status: .running, steps: [sample[index % sample.count]])).encoded()
                    do { _ = try sender.seal(message) } catch { failure = error }
                }
            })
            if let failure { throw failure }
        }
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        print("errand-bench adapter: \(events) Claude Code events (\(bytes.count / events) bytes each on average), median of \(rounds) rounds, µs per event")
        print(String(format: "parse + render (the adapter)      %8.2f  → %d steps, %d bytes of output text", median(parse), stepCount, renderedBytes))
        print(String(format: "encode + seal the event message   %8.2f  (the adapter adds %.0f%% of it)", median(seal), median(parse) / median(seal) * 100))
    }

    /// Microseconds per event for one pass of `body` over `count` events.
    private func measure(_ count: Int, _ body: () -> Void) -> Double {
        let start = ContinuousClock.now
        body()
        let elapsed = ContinuousClock.now - start
        return (Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12) / Double(count)
    }
}
