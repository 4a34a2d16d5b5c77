public import ErrandPeer
public import ErrandProtocol
import Foundation
import TOMLKit

/// The host's executors and limits, from `H/config.toml` (written with comments by `host init`).
public struct HostConfiguration: Sendable, Equatable {
    /// How the agent receives the task text.
    public enum AgentInput: String, Sendable {
        case stdin, argument
    }

    /// The agent command and its arguments; `{conversation}`, `{task}` and (with `argument`
    /// input) `{text}` are replaced. Empty: no agent configured.
    public var agentCommand: [String] = []
    public var agentInput: AgentInput = .stdin
    /// What runs `agent` tasks: the command above, or an agent driven through its headless mode.
    public var agentAdapter: AgentAdapterKind = .command
    /// Claude Code (`agent.claude-code`) and Codex (`agent.codex`), for their adapters.
    public var claudeCode = AgentProgram(program: "claude")
    public var codex = AgentProgram(program: "codex")
    /// Tasks running at once.
    public var concurrency = 2
    /// Seconds before a task is stopped (SIGTERM, then SIGKILL 2 s later).
    public var timeoutSeconds = 600
    /// Output bytes kept and sent per task; more is cut with a marker.
    public var outputCapBytes = 1024 * 1024
    /// Where tasks run (`~` is the user's home).
    public var workingDirectory = "~"
    /// Extra environment variables for tasks (besides PATH, HOME, LANG, TERM=dumb and ERRAND_*).
    public var environment: [String: String] = [:]
    /// Executors a newly paired device may use.
    public var defaultExecutors: [Executor] = [.agent, .action]
    /// Seconds between the agent's own checks of the relay's audit log; 0 turns them off.
    public var auditVerifyIntervalSeconds = 600
    /// Seconds an agent's approval request waits for a device's answer before it is denied.
    public var approvalTimeoutSeconds = 600
    /// Where the QR code's link opens the web companion (`pairing.web_app`); nil: the relay's `/app/`.
    public var webApp: String?

    public init() {}

    static let fileName = "config.toml"

    /// The commented file `host init` writes.
    static let template = """
        # Errand host configuration. Changes apply when 'errand host run' starts.

        [agent]
        # What runs 'agent' tasks:
        #   "command"     the command below, one run per task, its output passed on as it comes;
        #   "claude-code" Claude Code's headless mode (claude -p --output-format stream-json), see
        #                 [agent.claude-code];
        #   "codex"       Codex's (codex exec --json), see [agent.codex].
        # With "claude-code" and "codex" the agent keeps one conversation across tasks (each task
        # resumes it; 'errand send --new-conversation' starts a fresh one), its steps reach the
        # device as they happen, and one agent task runs at a time.
        adapter = "command"
        # The local agent command (an AI CLI or any program) and its arguments. These are replaced:
        # {conversation} (one id for the host's whole conversation, to continue it), {task} (this
        # task's id) and, with input = "argument", {text} (the task text; appended when absent).
        # Empty: 'agent' tasks are refused.
        command = []
        # How the agent gets the task text: "stdin" or "argument".
        input = "stdin"

        [agent.claude-code]
        # Runs: PROGRAM -p --output-format stream-json --verbose [--model MODEL]
        #       (--session-id NEW | --resume SESSION) ARGUMENTS…, with the task text on standard input.
        # The program: a name on the PATH, or a path.
        program = "claude"
        # More arguments, e.g. ["--permission-mode", "acceptEdits"] or ["--allowedTools", "Read,Grep"].
        arguments = []
        # The model ("": Claude Code's own default).
        model = ""
        # Where it runs ("": tasks.working_directory).
        working_directory = ""

        [agent.claude-code.environment]
        # Variables for Claude Code only, on top of [tasks.environment].

        [agent.codex]
        # Runs: PROGRAM exec --json [--model MODEL] ARGUMENTS… [resume THREAD] -, with the task text
        # on standard input. Codex wants a Git repository unless ARGUMENTS has "--skip-git-repo-check".
        program = "codex"
        # More arguments, e.g. ["--sandbox", "workspace-write"].
        arguments = []
        # The model ("": Codex's own default).
        model = ""
        # Where it runs ("": tasks.working_directory).
        working_directory = ""

        [agent.codex.environment]
        # Variables for Codex only, on top of [tasks.environment].

        [tasks]
        # Tasks running at the same time; more wait in the queue.
        concurrency = 2
        # A task still running after this many seconds is stopped (SIGTERM, then SIGKILL).
        timeout_seconds = 600
        # Output kept and sent back per task, in bytes; beyond it the output is cut with a marker.
        output_cap_bytes = 1048576
        # Where tasks run ("~" is your home folder).
        working_directory = "~"

        [tasks.environment]
        # Variables given to every task, besides PATH, HOME, LANG, TERM=dumb and ERRAND_TASK,
        # ERRAND_CONVERSATION, ERRAND_DEVICE. Nothing else from the host's environment is passed.
        # EXAMPLE = "value"

        [policy]
        # Executors a newly paired device may use: "agent", "action", "shell". Change one device
        # with 'errand host policy DEVICE --executors …'. "shell" runs any command: grant it with care.
        default_executors = ["agent", "action"]

        [audit]
        # While 'errand host run' runs, it checks the relay's audit log this often (seconds): signed
        # by the key pinned at setup, consistent with the last checkpoint it verified, and holding
        # this host's envelope events. A mismatch is logged as a security error, with the signed
        # checkpoints saved under audit-evidence/. 0 turns the checks off ('errand audit verify'
        # still works).
        verify_interval_seconds = 600

        [approvals]
        # When Claude Code asks before using a tool, every paired device that may answer (see
        # 'errand host policy … --approve') is asked; the first answer counts. With no answer
        # within this many seconds the tool is denied.
        timeout_seconds = 600

        [pairing]
        # Where the link in the pairing QR code opens the web companion, for when you serve the app
        # yourself (an https address; the offer goes after '#'). Empty: the relay's /app/.
        web_app = ""

        """

    /// Reads `config.toml` from `directory` (defaults when it is missing).
    /// - Throws: ``PeerError`` naming the file and the line or key that is wrong.
    public static func load(from directory: StateDirectory) throws(PeerError) -> HostConfiguration {
        let path = directory.file(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return HostConfiguration() }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PeerError("cannot read \(path): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw PeerError("\(path): line \(error.source.begin.line): \(error.description)", hint: "fix the file; see the comments 'errand host init' wrote in it")
        } catch {
            throw PeerError("\(path) is not valid TOML")
        }
        var configuration = HostConfiguration()
        func fail(_ key: String, _ expected: String) -> PeerError {
            PeerError("\(path): '\(key)' must be \(expected)")
        }
        for section in table.keys {
            guard let sectionTable = table[section]?.table else { throw PeerError("\(path): unknown setting '\(section)'") }
            for key in sectionTable.keys {
                let value = sectionTable[key]!
                switch (section, key) {
                case ("agent", "command"):
                    guard let array = value.array, let strings = Optional(array.compactMap { $0.string }), strings.count == array.count else {
                        throw fail("agent.command", "an array of strings")
                    }
                    configuration.agentCommand = strings
                case ("agent", "adapter"):
                    guard let adapter = value.string.flatMap(AgentAdapterKind.init(rawValue:)) else {
                        throw fail("agent.adapter", "\"command\", \"claude-code\" or \"codex\"")
                    }
                    configuration.agentAdapter = adapter
                case ("agent", "claude-code"):
                    configuration.claudeCode = try AgentProgram.load(value.table, at: "agent.claude-code", into: configuration.claudeCode, fail: fail)
                case ("agent", "codex"):
                    configuration.codex = try AgentProgram.load(value.table, at: "agent.codex", into: configuration.codex, fail: fail)
                case ("agent", "input"):
                    guard let input = value.string.flatMap(AgentInput.init(rawValue:)) else { throw fail("agent.input", "\"stdin\" or \"argument\"") }
                    configuration.agentInput = input
                case ("tasks", "concurrency"):
                    guard let number = value.int, (1...64).contains(number) else { throw fail("tasks.concurrency", "an integer from 1 to 64") }
                    configuration.concurrency = number
                case ("tasks", "timeout_seconds"):
                    guard let number = value.int, (1...86_400).contains(number) else { throw fail("tasks.timeout_seconds", "an integer from 1 to 86400") }
                    configuration.timeoutSeconds = number
                case ("tasks", "output_cap_bytes"):
                    guard let number = value.int, (1024...(64 << 20)).contains(number) else { throw fail("tasks.output_cap_bytes", "an integer from 1024 to 67108864") }
                    configuration.outputCapBytes = number
                case ("tasks", "working_directory"):
                    guard let folder = value.string else { throw fail("tasks.working_directory", "a string") }
                    configuration.workingDirectory = folder
                case ("tasks", "environment"):
                    guard let variables = value.table else { throw fail("tasks.environment", "a table of strings") }
                    for name in variables.keys {
                        guard let text = variables[name]?.string else { throw fail("tasks.environment.\(name)", "a string") }
                        configuration.environment[name] = text
                    }
                case ("policy", "default_executors"):
                    guard let array = value.array else { throw fail("policy.default_executors", "an array of \"agent\", \"action\", \"shell\"") }
                    let executors = array.compactMap { $0.string.flatMap(Executor.init(rawValue:)) }
                    guard executors.count == array.count else { throw fail("policy.default_executors", "an array of \"agent\", \"action\", \"shell\"") }
                    configuration.defaultExecutors = executors
                case ("audit", "verify_interval_seconds"):
                    guard let number = value.int, (0...86_400).contains(number) else { throw fail("audit.verify_interval_seconds", "an integer from 0 (off) to 86400") }
                    configuration.auditVerifyIntervalSeconds = number
                case ("approvals", "timeout_seconds"):
                    guard let number = value.int, (5...86_400).contains(number) else { throw fail("approvals.timeout_seconds", "an integer from 5 to 86400") }
                    configuration.approvalTimeoutSeconds = number
                case ("pairing", "web_app"):
                    guard let address = value.string else { throw fail("pairing.web_app", "a string (an https address)") }
                    configuration.webApp = address.isEmpty ? nil : address
                default:
                    throw PeerError("\(path): unknown setting '\(section).\(key)'", hint: "see the comments 'errand host init' wrote in the file")
                }
            }
        }
        return configuration
    }

    /// Writes the commented template unless a configuration exists.
    static func writeTemplate(in directory: StateDirectory) throws(PeerError) {
        let path = directory.file(fileName)
        guard !FileManager.default.fileExists(atPath: path) else { return }
        do { try Data(template.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw PeerError("cannot write \(path): \(error.localizedDescription)")
        }
        chmod(path, 0o600)
    }

    /// The working directory with `~` expanded.
    public var resolvedWorkingDirectory: String { (workingDirectory as NSString).expandingTildeInPath }
}
