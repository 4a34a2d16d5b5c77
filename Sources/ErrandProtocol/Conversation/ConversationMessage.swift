import Foundation

/// What runs a task on the host.
public enum Executor: String, Codable, Sendable, CaseIterable {
    /// The configured local agent command gets the text.
    case agent
    /// A named executable from the host's actions folder, with arguments.
    case action
    /// A command line run by `/bin/sh` (only when the device's policy grants it).
    case shell
}

/// Where a task is in its life.
public enum TaskStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled, timedOut, interrupted, refused

    /// Whether the task has ended.
    public var isFinal: Bool {
        switch self {
        case .queued, .running: false
        default: true
        }
    }
}

/// A task a companion asks the host to run.
public struct TaskRequest: Codable, Sendable, Equatable {
    /// The task id the companion chose (a UUID, lowercase).
    public let task: String
    public let executor: Executor
    /// The agent's text, or the shell command line.
    public let text: String?
    /// The action's name.
    public let action: String?
    /// The action's arguments.
    public let arguments: [String]?
    /// An agent task that starts a fresh conversation: the agent forgets the earlier tasks.
    public let newConversation: Bool?

    public init(task: String, executor: Executor, text: String? = nil, action: String? = nil, arguments: [String]? = nil,
                newConversation: Bool? = nil) {
        self.task = task
        self.executor = executor
        self.text = text
        self.action = action
        self.arguments = arguments
        self.newConversation = newConversation
    }

    /// This request with another text and arguments (a history cuts long ones).
    public func with(text: String?, arguments: [String]?) -> TaskRequest {
        TaskRequest(task: task, executor: executor, text: text, action: action, arguments: arguments, newConversation: newConversation)
    }

    /// One line saying what the task runs ("agent: tidy notes", "action: backup --dry-run").
    public var summary: String {
        switch executor {
        case .agent: "agent: \(text ?? "")"
        case .shell: "shell: \(text ?? "")"
        case .action: "action: " + ([action ?? ""] + (arguments ?? [])).joined(separator: " ")
        }
    }
}

/// News about a task from the host: a status change, a piece of output, or the result.
public struct TaskEvent: Codable, Sendable, Equatable {
    public let task: String
    public let status: TaskStatus
    /// Output produced since the previous event (standard output and error, merged, as UTF-8 with
    /// invalid bytes replaced).
    public let output: String?
    /// Byte offset of `output` in the task's whole output.
    public let offset: Int?
    /// Exit status of a finished process.
    public let exitCode: Int32?
    /// Why a task was refused or failed to start, or how it ended.
    public let reason: String?
    /// The output passed the host's cap and was cut (the rest was dropped, with a marker).
    public let truncated: Bool?
    /// Total output bytes and their SHA-256 (hex), on the final event.
    public let outputBytes: Int?
    public let outputDigest: String?
    /// What an agent run by an adapter did, in order (its output is the same steps as text).
    public let steps: [AgentStep]?

    public init(task: String, status: TaskStatus, output: String? = nil, offset: Int? = nil, exitCode: Int32? = nil,
                reason: String? = nil, truncated: Bool? = nil, outputBytes: Int? = nil, outputDigest: String? = nil,
                steps: [AgentStep]? = nil) {
        self.task = task
        self.status = status
        self.output = output
        self.offset = offset
        self.exitCode = exitCode
        self.reason = reason
        self.truncated = truncated
        self.outputBytes = outputBytes
        self.outputDigest = outputDigest
        self.steps = steps
    }
}

/// One thing an agent did, parsed from its event stream by the host's adapter.
public struct AgentStep: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// The agent's text to the person.
        case message
        /// A summary of the agent's thinking.
        case thinking
        /// The agent uses a tool: `tool` names it, `text` says on what ("git status").
        case tool
        /// What a tool gave back (its first line); `failed` when it reported an error.
        case toolResult
        /// The run's end: `text` sums it up (turns, time, cost); `failed` when it ended in error.
        case result
        /// A line the adapter could not parse, passed on as it came.
        case text
    }

    public let kind: Kind
    public let text: String
    public let tool: String?
    public let failed: Bool?

    public init(kind: Kind, text: String, tool: String? = nil, failed: Bool? = nil) {
        self.kind = kind
        self.text = text
        self.tool = tool
        self.failed = failed
    }

    private enum CodingKeys: String, CodingKey { case kind, text, tool, failed }

    /// A kind this version does not know is read as `text`: a newer host's step is still shown.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = Kind(rawValue: try container.decode(String.self, forKey: .kind)) ?? .text
        text = try container.decode(String.self, forKey: .text)
        tool = try container.decodeIfPresent(String.self, forKey: .tool)
        failed = try container.decodeIfPresent(Bool.self, forKey: .failed)
    }

    /// UTF-8 bytes of `text` one step carries at most (the output has the whole text).
    public static let textLimit = 2000
    /// UTF-8 bytes of `tool` at most.
    public static let toolLimit = 100

    /// This step as an event carries it: `text` and `tool` cut at a character boundary to their
    /// limits, a cut text ending in "…".
    public var bounded: AgentStep {
        AgentStep(kind: kind, text: Self.cut(text, to: Self.textLimit), tool: tool.map { Self.cut($0, to: Self.toolLimit) }, failed: failed)
    }

    static func cut(_ text: String, to bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var kept = ""
        var size = 0
        for scalar in text.unicodeScalars {
            let length = String(scalar).utf8.count
            if size + length > bytes - 3 { break }
            kept.unicodeScalars.append(scalar)
            size += length
        }
        return kept + "…"
    }
}

/// An action the host offers.
public struct ActionInfo: Codable, Sendable, Equatable {
    public let name: String
    public let description: String
    public init(name: String, description: String) {
        self.name = name
        self.description = description
    }
}

/// One task of the host's persistent conversation, as any paired device may read it.
public struct ConversationEntry: Codable, Sendable, Equatable {
    /// Position in the conversation (increasing).
    public let position: Int64
    public let task: String
    /// The device that sent it (its name on the host).
    public let device: String
    public let request: TaskRequest
    public let status: TaskStatus
    public let exitCode: Int32?
    /// The output (the first `ConversationMessage.historyOutputLimit` bytes).
    public let output: String
    public let truncated: Bool
    /// Unix seconds.
    public let createdAt: Int64
    public let finishedAt: Int64?

    public init(position: Int64, task: String, device: String, request: TaskRequest, status: TaskStatus, exitCode: Int32?,
                output: String, truncated: Bool, createdAt: Int64, finishedAt: Int64?) {
        self.position = position
        self.task = task
        self.device = device
        self.request = request
        self.status = status
        self.exitCode = exitCode
        self.output = output
        self.truncated = truncated
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }
}

extension ConversationEntry {
    /// Appended to a text or argument the history had to cut.
    public static let cutMarker = "… [cut in the history]"

    /// This entry, cut until its JSON encoding is at most `limit` bytes: the output first
    /// (`truncated` is then set), then the request's text and arguments (each cut one ends with
    /// ``cutMarker``). Position, task, device, status and times are kept whole.
    public func fitting(encodedBytes limit: Int) -> ConversationEntry {
        func size(_ entry: ConversationEntry) -> Int { (try? JSONEncoder().encode(entry).count) ?? .max }
        func cut(_ text: String, to characters: Int) -> String {
            text.count <= characters ? text : String(text.prefix(characters)) + Self.cutMarker
        }
        var entry = self
        var outputKeep = output.count
        var requestKeep = max(request.text?.count ?? 0, request.arguments?.map(\.count).max() ?? 0)
        var argumentsKeep = request.arguments?.count ?? 0
        while size(entry) > limit {
            if outputKeep > 0 {
                outputKeep /= 2
            } else if requestKeep > 0 || argumentsKeep > 0 {
                requestKeep /= 2
                argumentsKeep /= 2
            } else {
                break
            }
            var arguments = request.arguments.map { all in Array(all.prefix(argumentsKeep)).map { cut($0, to: requestKeep) } }
            if let all = request.arguments, all.count > argumentsKeep { arguments?.append(Self.cutMarker) }
            let cutRequest = request.with(text: request.text.map { cut($0, to: requestKeep) }, arguments: arguments)
            entry = ConversationEntry(position: position, task: task, device: device, request: cutRequest, status: status, exitCode: exitCode,
                                      output: String(output.prefix(outputKeep)), truncated: truncated || outputKeep < output.count,
                                      createdAt: createdAt, finishedAt: finishedAt)
        }
        return entry
    }
}

/// An agent asks, through the host, whether it may use a tool (Claude Code's permission prompt).
public struct ApprovalRequest: Codable, Sendable, Equatable {
    /// The request's id (a lowercase UUID chosen by the host).
    public let id: String
    /// The task whose agent asks.
    public let task: String
    /// The tool ("Bash", "Edit", …) and what it would work on, in a line ("git status").
    public let tool: String
    public let summary: String
    /// The tool's input as JSON text, cut to ``inputLimit`` bytes (then ending in "…" and no
    /// longer valid JSON).
    public let input: String
    /// The whole input's length in bytes (more than `input` carries when it was cut).
    public let inputBytes: Int?
    /// Unix seconds after which the host denies it unanswered.
    public let expiresAt: Int64

    public init(id: String, task: String, tool: String, summary: String, input: String, inputBytes: Int? = nil, expiresAt: Int64) {
        self.id = id
        self.task = task
        self.tool = tool
        self.summary = summary
        self.input = input
        self.inputBytes = inputBytes
        self.expiresAt = expiresAt
    }

    /// Whether `input` is only the start of the tool's input.
    public var inputIsCut: Bool { (inputBytes ?? 0) > input.utf8.count }

    /// Bytes of `input` carried at most (well inside one envelope, even escaped).
    public static let inputLimit = 8 * 1024
}

/// How an approval request ended.
public struct ApprovalResolution: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        case allowed, denied
    }

    public let approval: String
    public let task: String
    public let outcome: Outcome
    /// The device that answered (its name on the host); nil when the host decided (timeout, stop).
    public let by: String?
    /// Why, when it was denied: the person's message, or what the host decided on.
    public let reason: String?

    public init(approval: String, task: String, outcome: Outcome, by: String?, reason: String?) {
        self.approval = approval
        self.task = task
        self.outcome = outcome
        self.by = by
        self.reason = reason
    }
}

/// The application messages of a session, as JSON objects with a `type` member.
///
/// Companion → host: `task`, `cancel`, `listActions`, `sync`, `approve`. Host → companion:
/// `event`, `actions`, `history`, `approval`, `approvalResolved`, `approvalRefused`. See
/// `docs/protocol.md`, "Conversation messages".
public enum ConversationMessage: Sendable, Equatable {
    case task(TaskRequest)
    case cancel(task: String)
    case listActions(request: String)
    /// Asks for the conversation after `after` (a position).
    case sync(request: String, after: Int64)
    case event(TaskEvent)
    case actions(request: String, actions: [ActionInfo])
    /// Part of the conversation; `complete` is false when more entries follow in another message.
    case history(request: String, entries: [ConversationEntry], complete: Bool)
    /// An agent waits for a person's answer.
    case approval(ApprovalRequest)
    /// A device's answer to an approval request; `message` says why when it denies.
    case approve(approval: String, allow: Bool, message: String?)
    /// An approval request ended (sent to every device).
    case approvalResolved(ApprovalResolution)
    /// This device's answer did not count: already answered, not allowed, or unknown.
    case approvalRefused(approval: String, reason: String)

    /// Output bytes of one task carried in a history entry.
    public static let historyOutputLimit = 4096
    /// Encoded bytes of the entries of one `history` message at most: with the message's own
    /// members, well inside the largest payload of one envelope (63,487 bytes).
    public static let historyPageBytes = 40_000
    /// Output bytes carried by one event (well inside one envelope).
    public static let eventOutputLimit = 16 * 1024

    /// The JSON bytes.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these value types cannot fail.
        return Array(try! encoder.encode(Wire(self)))
    }

    /// Parses JSON bytes.
    /// - Throws: ``ConversationError`` for anything that is not a known message.
    public init(decoding bytes: [UInt8]) throws(ConversationError) {
        do {
            self = try JSONDecoder().decode(Wire.self, from: Data(bytes)).message
        } catch let error as ConversationError {
            throw error
        } catch {
            throw ConversationError("not a conversation message: \(error)")
        }
    }

    private struct Wire: Codable {
        let message: ConversationMessage
        init(_ message: ConversationMessage) { self.message = message }

        enum Key: String, CodingKey {
            case type, task, request, after, event, actions, entries, complete, approval, allow, message, resolution, reason
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            switch try container.decode(String.self, forKey: .type) {
            case "task": message = .task(try container.decode(TaskRequest.self, forKey: .task))
            case "cancel": message = .cancel(task: try container.decode(String.self, forKey: .task))
            case "listActions": message = .listActions(request: try container.decode(String.self, forKey: .request))
            case "sync": message = .sync(request: try container.decode(String.self, forKey: .request), after: try container.decode(Int64.self, forKey: .after))
            case "event": message = .event(try container.decode(TaskEvent.self, forKey: .event))
            case "actions": message = .actions(request: try container.decode(String.self, forKey: .request),
                                               actions: try container.decode([ActionInfo].self, forKey: .actions))
            case "history": message = .history(request: try container.decode(String.self, forKey: .request),
                                               entries: try container.decode([ConversationEntry].self, forKey: .entries),
                                               complete: try container.decode(Bool.self, forKey: .complete))
            case "approval": message = .approval(try container.decode(ApprovalRequest.self, forKey: .approval))
            case "approve": message = .approve(approval: try container.decode(String.self, forKey: .approval),
                                               allow: try container.decode(Bool.self, forKey: .allow),
                                               message: try container.decodeIfPresent(String.self, forKey: .message))
            case "approvalResolved": message = .approvalResolved(try container.decode(ApprovalResolution.self, forKey: .resolution))
            case "approvalRefused": message = .approvalRefused(approval: try container.decode(String.self, forKey: .approval),
                                                               reason: try container.decode(String.self, forKey: .reason))
            case let other: throw ConversationError("unknown message type \"\(other)\"")
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            switch message {
            case .task(let request): try container.encode("task", forKey: .type); try container.encode(request, forKey: .task)
            case .cancel(let task): try container.encode("cancel", forKey: .type); try container.encode(task, forKey: .task)
            case .listActions(let request): try container.encode("listActions", forKey: .type); try container.encode(request, forKey: .request)
            case .sync(let request, let after):
                try container.encode("sync", forKey: .type); try container.encode(request, forKey: .request); try container.encode(after, forKey: .after)
            case .event(let event): try container.encode("event", forKey: .type); try container.encode(event, forKey: .event)
            case .actions(let request, let actions):
                try container.encode("actions", forKey: .type); try container.encode(request, forKey: .request); try container.encode(actions, forKey: .actions)
            case .history(let request, let entries, let complete):
                try container.encode("history", forKey: .type); try container.encode(request, forKey: .request)
                try container.encode(entries, forKey: .entries); try container.encode(complete, forKey: .complete)
            case .approval(let request): try container.encode("approval", forKey: .type); try container.encode(request, forKey: .approval)
            case .approve(let approval, let allow, let message):
                try container.encode("approve", forKey: .type); try container.encode(approval, forKey: .approval)
                try container.encode(allow, forKey: .allow); try container.encodeIfPresent(message, forKey: .message)
            case .approvalResolved(let resolution):
                try container.encode("approvalResolved", forKey: .type); try container.encode(resolution, forKey: .resolution)
            case .approvalRefused(let approval, let reason):
                try container.encode("approvalRefused", forKey: .type); try container.encode(approval, forKey: .approval)
                try container.encode(reason, forKey: .reason)
            }
        }
    }
}

/// A session payload that is not a conversation message this version understands.
public struct ConversationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
