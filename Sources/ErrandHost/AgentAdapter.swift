public import ErrandPeer
import Foundation
import TOMLKit

/// What runs `agent` tasks (`agent.adapter` in config.toml).
public enum AgentAdapterKind: String, Sendable {
    /// `agent.command`, one run per task, its output passed on as it comes.
    case command
    /// Claude Code's headless mode: `claude -p --output-format stream-json --verbose`.
    case claudeCode = "claude-code"
    /// Codex's: `codex exec --json`.
    case codex

    /// The agent's name in messages.
    var displayName: String {
        switch self {
        case .command: "the agent command"
        case .claudeCode: "Claude Code"
        case .codex: "Codex"
        }
    }
}

/// How one adapter's program runs (`agent.claude-code`, `agent.codex`).
public struct AgentProgram: Sendable, Equatable {
    /// A name on the PATH, or a path.
    public var program: String
    /// Passed after the adapter's own arguments.
    public var arguments: [String] = []
    /// `--model`; nil: the program's default.
    public var model: String?
    /// Where it runs; nil: `tasks.working_directory`.
    public var workingDirectory: String?
    /// On top of `tasks.environment`.
    public var environment: [String: String] = [:]

    public init(program: String) { self.program = program }

    /// Reads one adapter's table over `defaults`.
    static func load(_ table: TOMLTable?, at section: String, into defaults: AgentProgram,
                     fail: (String, String) -> PeerError) throws(PeerError) -> AgentProgram {
        guard let table else { throw fail(section, "a table") }
        var program = defaults
        for key in table.keys {
            let value = table[key]!
            switch key {
            case "program":
                guard let text = value.string, !text.isEmpty else { throw fail("\(section).program", "a program's name or path") }
                program.program = text
            case "arguments":
                guard let array = value.array, let strings = Optional(array.compactMap { $0.string }), strings.count == array.count else {
                    throw fail("\(section).arguments", "an array of strings")
                }
                program.arguments = strings
            case "model":
                guard let text = value.string else { throw fail("\(section).model", "a string") }
                program.model = text.isEmpty ? nil : text
            case "working_directory":
                guard let text = value.string else { throw fail("\(section).working_directory", "a string") }
                program.workingDirectory = text.isEmpty ? nil : text
            case "environment":
                guard let variables = value.table else { throw fail("\(section).environment", "a table of strings") }
                for name in variables.keys {
                    guard let text = variables[name]?.string else { throw fail("\(section).environment.\(name)", "a string") }
                    program.environment[name] = text
                }
            default:
                throw fail("\(section).\(key)", "left out: the settings here are program, arguments, model, working_directory and environment")
            }
        }
        return program
    }
}

/// One run of an adapter's agent for a task: the command line, and where the task text goes.
struct AgentInvocation: Equatable {
    var arguments: [String]
    /// The task text, for standard input.
    var input: [UInt8]

    /// Claude Code (https://code.claude.com/docs/en/headless): the text on standard input,
    /// `--session-id` for a new session (the id the host keeps) or `--resume` for the
    /// conversation's session.
    /// With `permissionPrompt`, its permission prompts go to the paired devices (see ``permissionPrompt(tool:task:)``).
    static func claudeCode(_ program: AgentProgram, text: String, session: AgentSession, permissionPrompt: [String] = []) -> AgentInvocation {
        var arguments = ["-p", "--output-format", "stream-json", "--verbose"]
        if let model = program.model { arguments += ["--model", model] }
        switch session {
        case .new(let id): arguments += ["--session-id", id]
        case .resume(let id): arguments += ["--resume", id]
        }
        arguments += permissionPrompt
        return AgentInvocation(arguments: arguments + program.arguments, input: Array(text.utf8))
    }

    /// Claude Code's permission prompts go to Errand's tool (https://code.claude.com/docs/en/headless,
    /// `--permission-prompt-tool`): an MCP server `errand` started by `tool` + `--task TASK`,
    /// whose tool `approve` asks the host, which asks the paired devices.
    static func permissionPrompt(tool: [String], task: String) -> [String] {
        let server: [String: Any] = ["type": "stdio", "command": tool[0], "args": Array(tool.dropFirst()) + ["--task", task]]
        let configuration = (try? JSONSerialization.data(withJSONObject: ["mcpServers": ["errand": server]], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return ["--mcp-config", String(decoding: configuration, as: UTF8.self), "--permission-prompt-tool", permissionToolName]
    }

    /// The tool's name as Claude Code knows it: `mcp__SERVER__TOOL`.
    static let permissionToolName = "mcp__errand__approve"

    /// Codex (https://github.com/openai/codex/blob/main/docs/exec.md): `exec --json`, its
    /// options before `resume THREAD`, and `-` to read the text from standard input.
    static func codex(_ program: AgentProgram, text: String, session: AgentSession) -> AgentInvocation {
        var arguments = ["exec", "--json"]
        if let model = program.model { arguments += ["--model", model] }
        arguments += program.arguments
        if case .resume(let thread) = session { arguments += ["resume", thread] }
        return AgentInvocation(arguments: arguments + ["-"], input: Array(text.utf8))
    }
}

/// Whether a run starts the conversation's agent session or continues it.
enum AgentSession: Equatable {
    /// A fresh session; the id is the one to ask for where the agent lets the caller choose.
    case new(String)
    case resume(String)
}
