public import ErrandProtocol
import Foundation

/// Turns an adapter's JSON Lines (Claude Code's `stream-json`, Codex's `exec --json`) into
/// ``AgentStep``s as the bytes arrive, with their whole text (events carry them
/// ``AgentStep/bounded``). A line that is not a JSON object is passed on as a `text`
/// step, never dropped; events that carry nothing for the person (a turn starting, a partial
/// update) are skipped.
public struct AgentStreamParser: Sendable {
    /// How the run ended, by the agent's own account.
    struct Outcome: Equatable, Sendable {
        let failed: Bool
        /// One line: "3 turns, 12.4 s, $0.0123", or the error.
        let summary: String
    }

    let kind: AgentAdapterKind
    private var buffer: [UInt8] = []
    /// The agent's session (Claude Code's `session_id`, Codex's `thread_id`) once it named it.
    private(set) var session: String?
    private(set) var outcome: Outcome?
    /// The last line that was not JSON (often the agent's error on standard error).
    private(set) var lastText: String?
    /// Codex: an `error` event's message, the reason when no turn result follows.
    private var lastError: String?
    /// Codex: items whose start was shown, so their completion does not show the tool again.
    private var startedItems: Set<String> = []

    public init(kind: AgentAdapterKind) { self.kind = kind }

    /// The steps of the complete lines in `bytes` (with what came before); a partial last line waits.
    public mutating func feed(_ bytes: [UInt8]) -> [AgentStep] {
        buffer += bytes
        var steps: [AgentStep] = []
        var start = buffer.startIndex
        while let newline = buffer[start...].firstIndex(of: 10) {
            steps += parse(buffer[start..<newline])
            start = newline + 1
        }
        buffer.removeSubrange(..<start)
        return steps
    }

    /// The steps of a last line that had no newline.
    public mutating func finish() -> [AgentStep] {
        guard !buffer.isEmpty else { return [] }
        defer { buffer = [] }
        return parse(buffer[...])
    }

    /// The reason a run failed by its own account, or ended without saying how (nil: it succeeded).
    var failure: String? {
        if let outcome { return outcome.failed ? "\(kind.displayName) reported an error: \(outcome.summary)" : nil }
        if let lastError { return "\(kind.displayName) stopped: \(lastError)" }
        return "\(kind.displayName) ended without a result" + (lastText.map { ": \(Self.oneLine($0))" } ?? "")
    }

    private mutating func parse(_ bytes: ArraySlice<UInt8>) -> [AgentStep] {
        let isSpace = { (byte: UInt8) in byte == 32 || byte == 9 || byte == 13 || byte == 10 }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else { return [] }
        // Only a line that starts like an object is handed to the JSON parser.
        guard bytes[first] == UInt8(ascii: "{"),
              let object = (try? JSONSerialization.jsonObject(with: Data(bytes[first...last]))) as? [String: Any],
              let type = object["type"] as? String else {
            let line = String(decoding: bytes, as: UTF8.self)
            lastText = String(decoding: bytes[first...last], as: UTF8.self)
            return [AgentStep(kind: .text, text: line)]
        }
        switch kind {
        case .claudeCode: return claudeCode(type, object)
        case .codex: return codex(type, object)
        case .command: return [AgentStep(kind: .text, text: String(decoding: bytes, as: UTF8.self))]
        }
    }

    // MARK: Claude Code

    /// https://code.claude.com/docs/en/headless and the Agent SDK's message types: `system`
    /// (`init` names the session), `assistant` and `user` carry a message's content blocks,
    /// `result` ends the run.
    private mutating func claudeCode(_ type: String, _ object: [String: Any]) -> [AgentStep] {
        if type == "system", object["subtype"] as? String == "init", let id = object["session_id"] as? String, Self.isSessionID(id) { session = id }
        let content = ((object["message"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
        switch type {
        case "assistant":
            return content.compactMap { block in
                switch block["type"] as? String {
                case "text": (block["text"] as? String).flatMap { $0.isEmpty ? nil : AgentStep(kind: .message, text: $0) }
                case "thinking": (block["thinking"] as? String).flatMap { $0.isEmpty ? nil : AgentStep(kind: .thinking, text: $0) }
                case "tool_use":
                    AgentStep(kind: .tool, text: Self.toolSummary(block["input"] as? [String: Any] ?? [:]), tool: block["name"] as? String ?? "tool")
                default: nil
                }
            }
        case "user":
            return content.compactMap { block in
                guard block["type"] as? String == "tool_result" else { return nil }
                let text: String
                if let string = block["content"] as? String {
                    text = string
                } else {
                    text = ((block["content"] as? [[String: Any]]) ?? []).compactMap { $0["text"] as? String }.joined(separator: "\n")
                }
                let failed = block["is_error"] as? Bool == true
                return AgentStep(kind: .toolResult, text: Self.firstLine(text, empty: failed ? "failed" : "done"), failed: failed)
            }
        case "result":
            var parts: [String] = []
            if let turns = object["num_turns"] as? Int { parts.append(turns == 1 ? "1 turn" : "\(turns) turns") }
            if let milliseconds = object["duration_ms"] as? Double { parts.append(String(format: "%.1f s", milliseconds / 1000)) }
            if let cost = object["total_cost_usd"] as? Double { parts.append(String(format: "$%.4f", cost)) }
            let subtype = object["subtype"] as? String ?? "unknown"
            let failed = object["is_error"] as? Bool == true || subtype != "success"
            var summary = parts.joined(separator: ", ")
            if failed {
                let said = (object["result"] as? String).map { ": " + Self.oneLine($0) } ?? ""
                summary = "\(subtype)\(said)" + (summary.isEmpty ? "" : " (\(summary))")
            }
            outcome = Outcome(failed: failed, summary: summary)
            return [AgentStep(kind: .result, text: failed ? summary : "done" + (summary.isEmpty ? "" : ": \(summary)"), failed: failed)]
        default:
            return []  // system events, partial messages: nothing for the person
        }
    }

    /// What a tool call works on, in a line: the command, the file, the pattern, the address.
    static func toolSummary(_ input: [String: Any]) -> String {
        for key in ["command", "file_path", "notebook_path", "path", "pattern", "url", "query", "description", "prompt"] {
            if let value = input[key] as? String, !value.isEmpty { return oneLine(value) }
        }
        if let todos = input["todos"] as? [Any] { return todos.count == 1 ? "1 item" : "\(todos.count) items" }
        guard !input.isEmpty, let data = try? JSONSerialization.data(withJSONObject: input, options: [.sortedKeys]) else { return "" }
        return oneLine(String(decoding: data, as: UTF8.self))
    }

    // MARK: Codex

    /// https://github.com/openai/codex/blob/main/docs/exec.md: `thread.started` names the
    /// thread, `item.*` carry messages, reasoning, commands, file changes and tool calls,
    /// `turn.completed` / `turn.failed` end the run, `error` reports a failure.
    private mutating func codex(_ type: String, _ object: [String: Any]) -> [AgentStep] {
        switch type {
        case "thread.started":
            if let id = object["thread_id"] as? String, Self.isSessionID(id) { session = id }
            return []
        case "item.started", "item.completed":
            guard let item = object["item"] as? [String: Any] else { return [] }
            return codexItem(item, completed: type == "item.completed")
        case "turn.completed":
            let usage = object["usage"] as? [String: Any] ?? [:]
            var parts: [String] = []
            if let input = usage["input_tokens"] as? Int { parts.append("\(input) tokens in") }
            if let output = usage["output_tokens"] as? Int { parts.append("\(output) out") }
            let summary = parts.joined(separator: ", ")
            outcome = Outcome(failed: false, summary: summary)
            return [AgentStep(kind: .result, text: "done" + (summary.isEmpty ? "" : ": \(summary)"), failed: false)]
        case "turn.failed":
            let message = ((object["error"] as? [String: Any])?["message"] as? String).map(Self.oneLine) ?? "the turn failed"
            outcome = Outcome(failed: true, summary: message)
            return [AgentStep(kind: .result, text: message, failed: true)]
        case "error":
            let message = (object["message"] as? String).map(Self.oneLine) ?? "an error"
            lastError = message
            return [AgentStep(kind: .text, text: "error: \(message)", failed: true)]
        default:
            return []  // turn.started, item.updated
        }
    }

    private mutating func codexItem(_ item: [String: Any], completed: Bool) -> [AgentStep] {
        let id = item["id"] as? String ?? ""
        // Older releases named the item's type `item_type`.
        let type = item["type"] as? String ?? item["item_type"] as? String ?? ""
        func toolOnce(_ tool: String, _ text: String) -> [AgentStep] {
            guard !startedItems.contains(id) else { return [] }
            startedItems.insert(id)
            return [AgentStep(kind: .tool, text: text, tool: tool)]
        }
        switch type {
        case "agent_message", "assistant_message":
            guard completed, let text = item["text"] as? String, !text.isEmpty else { return [] }
            return [AgentStep(kind: .message, text: text)]
        case "reasoning":
            guard completed, let text = item["text"] as? String, !text.isEmpty else { return [] }
            return [AgentStep(kind: .thinking, text: text)]
        case "command_execution":
            var steps = toolOnce("command", Self.oneLine(item["command"] as? String ?? ""))
            if completed {
                let code = item["exit_code"] as? Int
                let failed = item["status"] as? String == "failed" || (code ?? 0) != 0
                let first = Self.firstLine(item["aggregated_output"] as? String ?? "", empty: failed ? "failed" : "done")
                steps.append(AgentStep(kind: .toolResult, text: code.map { $0 == 0 ? first : "exit \($0): \(first)" } ?? first, failed: failed))
            }
            return steps
        case "file_change":
            guard completed else { return [] }
            let changes = (item["changes"] as? [[String: Any]] ?? []).map { "\($0["kind"] as? String ?? "change") \($0["path"] as? String ?? "?")" }
            return toolOnce("edit", Self.oneLine(changes.joined(separator: ", ")))
        case "mcp_tool_call":
            let name = [item["server"] as? String, item["tool"] as? String].compactMap { $0 }.joined(separator: ".")
            var steps = toolOnce(name.isEmpty ? "tool" : name, "")
            if completed {
                let failed = item["status"] as? String == "failed"
                steps.append(AgentStep(kind: .toolResult, text: failed ? "failed" : "done", failed: failed))
            }
            return steps
        case "web_search":
            return toolOnce("web search", Self.oneLine(item["query"] as? String ?? ""))
        case "todo_list":
            guard completed else { return [] }
            let items = (item["items"] as? [[String: Any]] ?? []).compactMap { $0["text"] as? String }
            return items.isEmpty ? [] : [AgentStep(kind: .thinking, text: "plan: " + items.joined(separator: "; "))]
        case "error":
            let message = Self.oneLine(item["message"] as? String ?? "an error")
            return [AgentStep(kind: .text, text: "error: \(message)", failed: true)]
        default:
            return []
        }
    }

    /// A session or thread id the host will pass back on the command line: letters, digits,
    /// `.`, `_` and `-`, not starting with `-` (so it can never read as an option), at most 200.
    static func isSessionID(_ id: String) -> Bool {
        guard let first = id.unicodeScalars.first, first != "-", id.utf8.count <= 200 else { return false }
        return id.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
    }

    // MARK: Text

    /// A step as the lines of the task's output.
    public static func rendered(_ step: AgentStep) -> String {
        let line: String
        switch step.kind {
        case .message, .text: line = step.text
        case .thinking: line = "~ " + step.text
        case .tool: line = "▸ \(step.tool ?? "tool")" + (step.text.isEmpty ? "" : ": \(step.text)")
        case .toolResult: line = (step.failed == true ? "  ✗ " : "  ↳ ") + step.text
        case .result: line = (step.failed == true ? "✗ " : "✓ ") + step.text
        }
        return line.hasSuffix("\n") ? line : line + "\n"
    }

    /// The first non-empty line, at most 200 characters, and how many more lines follow.
    static func firstLine(_ text: String, empty: String) -> String {
        // On the UTF-8 bytes: tool results can be long, and only their first line is kept.
        let lines = Array(text.utf8).split(separator: 10)
            .map { $0.drop(while: { $0 == 32 || $0 == 9 || $0 == 13 }) }
            .filter { line in line.contains { $0 != 32 && $0 != 9 && $0 != 13 } }
        guard let first = lines.first else { return empty }
        let line = oneLine(String(decoding: first, as: UTF8.self).trimmingCharacters(in: .whitespaces))
        return lines.count > 1 ? "\(line) (+\(lines.count - 1) lines)" : line
    }

    /// `text` on one line of at most 200 characters.
    static func oneLine(_ text: String) -> String {
        let short = text.utf8.count <= 800 ? text : String(text.prefix(201))
        let joined = short.split(whereSeparator: \.isNewline).joined(separator: " ⏎ ")
        return joined.count <= 200 ? joined : String(joined.prefix(200)) + "…"
    }
}
