import ArgumentParser
import ErrandCompanion
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import Foundation
import Synchronization

/// Options naming the host a companion command talks to.
struct HostChoice: ParsableArguments {
    @OptionGroup var peer: PeerOptions
    @Option(help: ArgumentHelp("The paired host to use (needed when there are several).", valueName: "name"))
    var host: String?

    func conversation() throws(PeerError) -> CompanionConversation {
        try CompanionConversation(store: store(), hostName: host, relayURL: peer.relay)
    }

    /// The conversation with `--host`, or one with every paired host when it is not given.
    func conversations() throws(PeerError) -> [CompanionConversation] {
        let store = try store()
        if host != nil { return [try CompanionConversation(store: store, hostName: host, relayURL: peer.relay)] }
        let hosts: [PairedHost]
        do { hosts = try store.hosts() } catch { throw PeerError("cannot read the paired hosts: \(error)") }
        guard !hosts.isEmpty else { throw PeerError("this device is not paired with any host", hint: "pair first: errand pair --image CODE.png") }
        var conversations: [CompanionConversation] = []
        for paired in hosts { conversations.append(try CompanionConversation(store: store, hostName: paired.name, relayURL: peer.relay)) }
        return conversations
    }

    private func store() throws(PeerError) -> CompanionStore {
        let directory = peer.directory
        guard CompanionStore.exists(in: directory) else {
            throw PeerError("\(directory.path) holds no paired device", hint: "pair first: errand pair --home \(directory.path) --image CODE.png")
        }
        return try CompanionStore(directory: directory)
    }
}

/// Shows a task's output as it streams in, and its end.
final class TaskFollower: Sendable {
    let conversation: CompanionConversation
    let task: String
    let json: Bool
    let printed = Mutex(0)
    let lastStatus = Mutex<TaskStatus?>(nil)
    /// On a terminal: one live line (spinner, status, elapsed time) instead of status lines.
    let live = isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    let started = ContinuousClock.now

    init(conversation: CompanionConversation, task: String, json: Bool) {
        self.conversation = conversation
        self.task = task
        self.json = json
    }

    /// Approval requests of this task already shown.
    let shownApprovals = Mutex<Set<String>>([])

    /// Prints what is new; returns whether the task has ended.
    func update() throws -> Bool {
        guard let cached = try conversation.store.task(task) else { return false }
        // A request the agent waits on, said once, with how to answer it.
        for approval in try conversation.store.pendingApprovals(host: conversation.host.id, task: task) {
            guard shownApprovals.withLock({ $0.insert(approval.id).inserted }) else { continue }
            if live { clearLiveLine() }
            FileHandle.standardError.write(Data("errand: \(ApprovalsCommand.describe(approval.request, host: conversation.host.name))\n".utf8))
            FileHandle.standardError.write(Data("errand: answer with 'errand approve \(TerminalText.neutralized(String(approval.id.prefix(8))))' or add --deny\n".utf8))
        }
        if !json {
            let fresh = printed.withLock { count -> [UInt8] in
                defer { count = cached.output.count }
                return cached.output.count > count ? Array(cached.output[count...]) : []
            }
            if !fresh.isEmpty {
                if live { clearLiveLine() }
                FileHandle.standardOutput.write(Data(TerminalText.neutralized(bytes: fresh)))
            }
            let changed = lastStatus.withLock { previous -> Bool in
                defer { previous = cached.status }
                return previous != cached.status
            }
            if changed && !cached.status.isFinal && !live { status("\(cached.status.rawValue)…") }
        }
        return cached.status.isFinal
    }

    func status(_ text: String) {
        FileHandle.standardError.write(Data("errand: \(task.prefix(8)) \(text)\n".utf8))
    }

    func clearLiveLine() {
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
    }

    /// Redraws the live line every 100 ms until cancelled.
    func spin() async {
        let frames = Array("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
        var frame = 0
        while !Task.isCancelled {
            let state = lastStatus.withLock { $0 }?.rawValue ?? "sent"
            let elapsed = Double((ContinuousClock.now - started) / .milliseconds(100)) / 10
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(frames[frame % frames.count]) \(task.prefix(8)) \(state) \(String(format: "%.1f", elapsed))s".utf8))
            frame += 1
            try? await Task.sleep(for: .milliseconds(100))
        }
        clearLiveLine()
    }

    /// Waits for the end (or `timeout`), then reports it; the exit status follows the task's.
    func finish(timeout: Int) async throws -> Int32 {
        let spinner = live && !json ? Task { await spin() } : nil
        let done: Bool
        do {
            done = try await reportingPeerErrors {
                try await conversation.wait(timeout: .seconds(timeout), until: { try self.update() })
            }
        } catch {
            spinner?.cancel()
            _ = await spinner?.value
            throw error
        }
        spinner?.cancel()
        _ = await spinner?.value
        guard let cached = try conversation.store.task(task) else { throw UserFacingError("unknown task \(task)") }
        if json {
            var object: [String: Any] = ["task": cached.id, "host": conversation.host.name, "status": cached.status.rawValue,
                                         "output": String(decoding: cached.output, as: UTF8.self), "truncated": cached.truncated,
                                         "exitCode": cached.exitCode.map { Int($0) as Any } ?? NSNull(), "request": cached.request.summary]
            if let reason = cached.reason { object["reason"] = reason }
            if !done { object["waiting"] = "no result within \(timeout) s; follow it later with 'errand follow \(cached.id)'" }
            try Console.json(object, pretty: false)
        } else if done {
            if cached.output.last != UInt8(ascii: "\n") && !cached.output.isEmpty { Console.line("") }
            let exit = cached.exitCode.map { " (exit \($0))" } ?? ""
            let reason = cached.reason.map { ": \(TerminalText.neutralized($0))" } ?? ""
            status("\(cached.status.rawValue)\(exit)\(reason)\(cached.truncated ? " [output truncated by the host]" : "")")
        } else {
            status("no result within \(timeout) s; it goes on on the host: errand follow \(cached.id)")
        }
        guard done else { return 2 }
        return cached.status == .succeeded ? 0 : 1
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a task to the host: text for its agent, an action, or a shell command.",
        usage: """
            errand send [OPTIONS] TEXT…
            errand send [OPTIONS] --action NAME [ARG…]
            errand send [OPTIONS] --shell COMMAND
            """,
        discussion: """
            The options can stand anywhere: before, between or after the words, so \
            'errand send --action disk-report / --wait --json' waits and prints JSON. Everything after '--' is \
            text or arguments, even when it starts with '-': 'errand send --action grep -- -n TODO'.

            Prints the task id at once. With --wait, streams the output until the result (exit status 0 when the \
            task succeeded). With --wait --json, prints one JSON object: task, status, exitCode, output, truncated, \
            reason. If the relay cannot be reached the task waits in this device's outbox and goes with the next command.
            """)

    @OptionGroup var choice: HostChoice
    @Option(help: ArgumentHelp("Run this action from the host's actions folder; the words are its arguments.", valueName: "name"))
    var action: String?
    @Option(help: ArgumentHelp("Run this command line with /bin/sh on the host (only if the host's policy allows it).", valueName: "command"))
    var shell: String?
    @Flag(help: "Start a new conversation with the host's agent: it forgets the earlier tasks.") var newConversation = false
    @Flag(help: "Wait for the result, streaming progress.") var wait = false
    @Flag(help: "Print JSON.") var json = false
    @Option(help: ArgumentHelp("With --wait: give up waiting after this many seconds (the task goes on).", valueName: "seconds"))
    var timeout = 3600
    @Argument(help: ArgumentHelp("The text for the agent, or the action's arguments (after '--' when one starts with '-').", valueName: "word"))
    var words: [String] = []

    func validate() throws {
        if action != nil && shell != nil { throw ValidationError("choose one of --action and --shell") }
        if shell != nil && !words.isEmpty {
            throw ValidationError("--shell takes the whole command line as one argument: errand send --shell 'ls -l /tmp'")
        }
        if newConversation && (action != nil || shell != nil) {
            throw ValidationError("--new-conversation is for text to the agent, not for --action or --shell")
        }
        if action == nil && shell == nil && words.isEmpty { throw ValidationError("say what to do: TEXT, --action NAME [ARGS…] or --shell COMMAND") }
        if timeout < 1 { throw ValidationError("--timeout must be at least 1 second") }
    }

    func run() async throws {
        let id = UUID().uuidString.lowercased()
        let request: TaskRequest
        if let action {
            request = TaskRequest(task: id, executor: .action, action: action, arguments: words)
        } else if let shell {
            request = TaskRequest(task: id, executor: .shell, text: shell)
        } else {
            request = TaskRequest(task: id, executor: .agent, text: words.joined(separator: " "), newConversation: newConversation ? true : nil)
        }
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        let delivered = try await reportingPeerErrors { try await conversation.send(request) }
        if !wait {
            if json {
                try Console.json(["delivered": delivered, "host": conversation.host.name, "status": "queued", "task": id] as [String: Any], pretty: false)
            } else {
                Console.line(id)
                if !delivered { Console.warn("the relay cannot be reached; the task waits in this device's outbox and goes with the next command") }
            }
            return
        }
        if !json {
            FileHandle.standardError.write(Data("errand: task \(id) sent to \(conversation.host.name)\(delivered ? "" : " (queued: relay unreachable)")\n".utf8))
        }
        let follower = TaskFollower(conversation: conversation, task: id, json: json)
        throw ExitCode(try await follower.finish(timeout: timeout))
    }
}

struct FollowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "follow", abstract: "Show a task's output so far and follow it to its result (default: the last task sent).")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Print one JSON object at the end.") var json = false
    @Option(help: ArgumentHelp("Give up waiting after this many seconds.", valueName: "seconds")) var timeout = 3600
    @Argument(help: ArgumentHelp("The task id (or its first characters).", valueName: "task")) var task: String?

    func run() async throws {
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        let cached = try await reportingPeerErrors { () throws(PeerError) -> CachedTask in
            do {
                let found = try task.map { try conversation.store.task($0) } ?? conversation.store.latestTask(for: conversation.host.id)
                guard let found else {
                    throw PeerError(task.map { "no task \($0) is known on this device" } ?? "this device has sent no task yet",
                                    hint: "see the conversation with 'errand history'")
                }
                return found
            } catch let error as PeerError { throw error } catch { throw PeerError("cannot read the task cache: \(error)") }
        }
        _ = try? await conversation.flush()
        throw ExitCode(try await TaskFollower(conversation: conversation, task: cached.id, json: json).finish(timeout: timeout))
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a queued or running task.")

    @OptionGroup var choice: HostChoice
    @Option(help: ArgumentHelp("Seconds to wait for the host to confirm.", valueName: "seconds")) var timeout = 30
    @Argument(help: ArgumentHelp("The task id (or its first characters).", valueName: "task")) var task: String

    func run() async throws {
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        let id = (try? conversation.store.task(task))??.id ?? task
        _ = try await reportingPeerErrors { try await conversation.send(.cancel(task: id)) }
        let ended = try await reportingPeerErrors {
            try await conversation.wait(timeout: .seconds(timeout), until: { (try conversation.store.task(id))?.status.isFinal ?? false })
        }
        let status = (try? conversation.store.task(id))??.status
        if ended, let status {
            Console.line("\(id): \(status.rawValue)")
        } else {
            Console.line("cancel sent for \(id); the host has not confirmed yet (it may be offline)")
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "The host's persistent conversation: every task from every paired device, synced from the host and cached here.")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Do not ask the host; show the local cache.") var offline = false
    @Option(help: ArgumentHelp("Seconds to wait for the host's answer before showing the cache.", valueName: "seconds")) var timeout = 10

    func run() async throws {
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        var synced = false
        if !offline {
            do {
                synced = try await conversation.syncTelling(timeout: .seconds(timeout))
                if !synced && !json { Console.warn("\(conversation.host.name) did not answer; showing what this device has cached") }
            } catch {
                if !json { Console.warn("\(error.message); showing what this device has cached") }
            }
        }
        let tasks = try await reportingPeerErrors { () throws(PeerError) -> [CachedTask] in
            do { return try conversation.store.conversation(for: conversation.host.id) } catch { throw PeerError("cannot read the cache: \(error)") }
        }
        if json {
            let objects = tasks.map { task -> [String: Any] in
                ["task": task.id, "device": task.device ?? "this device", "request": task.request.summary, "status": task.status.rawValue,
                 "exitCode": task.exitCode.map { Int($0) as Any } ?? NSNull(), "output": String(decoding: task.output, as: UTF8.self),
                 "truncated": task.truncated, "createdAt": task.createdAt, "position": task.position.map { $0 as Any } ?? NSNull(),
                 "newConversation": task.request.newConversation == true]
            }
            let object: [String: Any] = ["host": conversation.host.name, "synced": synced, "tasks": objects]
            try Console.json(object)
            return
        }
        guard !tasks.isEmpty else { Console.line("The conversation with \(conversation.host.name) is empty."); return }
        for task in tasks {
            if task.request.newConversation == true { Console.line("══ a new conversation with the agent begins ══") }
            let exit = task.exitCode.map { ", exit \($0)" } ?? ""
            let device = TerminalText.neutralized(task.device ?? "this device")
            Console.line("── \(HostCommand.Devices.time(task.createdAt))  \(device)  \(TerminalText.neutralized(task.request.summary))  [\(task.status.rawValue)\(exit)]  \(TerminalText.neutralized(String(task.id.prefix(8))))")
            let text = TerminalText.neutralized(String(decoding: task.output, as: UTF8.self), multiline: true)
            if !text.isEmpty { Console.line(text.hasSuffix("\n") ? String(text.dropLast()) : text) }
            if task.truncated { Console.line("[output truncated]") }
        }
    }
}

struct ActionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "actions", abstract: "List the actions the host offers, with their descriptions.")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Print JSON.") var json = false
    @Option(help: ArgumentHelp("Seconds to wait for the host's answer.", valueName: "seconds")) var timeout = 10

    func run() async throws {
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        let request = UUID().uuidString.lowercased()
        let delivered = try await reportingPeerErrors { try await conversation.send(.listActions(request: request)) }
        guard delivered else { throw UserFacingError("the relay cannot be reached", hint: "check the network and try again") }
        let answered = try await reportingPeerErrors {
            try await conversation.wait(timeout: .seconds(timeout), until: { try conversation.store.reply(to: request) != nil })
        }
        guard answered, let body = try conversation.store.reply(to: request),
              let actions = try? JSONDecoder().decode([ActionInfo].self, from: Data(body.utf8)) else {
            throw UserFacingError("\(conversation.host.name) did not answer within \(timeout) s", hint: "is 'errand host run' running on the computer?")
        }
        if json {
            let objects = actions.map { ["name": $0.name, "description": $0.description] }
            try Console.json(objects)
        } else if actions.isEmpty {
            Console.line("\(conversation.host.name) offers no actions (executables in its actions folder).")
        } else {
            Console.line(Table.render(header: ["ACTION", "DESCRIPTION"], rows: actions.map { [$0.name, $0.description] }))
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Is the relay reachable, when was the host last heard from, what waits in the outbox.")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let conversation = try await reportingPeerErrors { try choice.conversation() }
        let reachable = await conversation.client.isHealthy()
        if reachable { _ = try? await conversation.flush(); _ = try? await conversation.receive() }
        let host = (try? conversation.store.host(named: conversation.host.name)) ?? conversation.host
        let pending = (try? conversation.store.pending(for: host.id).count) ?? 0
        if json {
            let object: [String: Any] = ["host": host.name, "relay": conversation.client.baseURL, "relayReachable": reachable,
                                         "hostLastHeardAt": host.lastHeardAt.map { $0 as Any } ?? NSNull(), "outbox": pending]
            try Console.json(object, pretty: false)
            return
        }
        Console.line("host:       \(host.name) (fingerprint \(host.fingerprint))")
        Console.line("relay:      \(conversation.client.baseURL) — \(reachable ? "reachable" : "NOT reachable")")
        Console.line("last heard: \(host.lastHeardAt.map(HostCommand.Devices.time) ?? "never")")
        Console.line("outbox:     \(pending == 0 ? "empty" : "\(pending) message(s) waiting for the relay")")
    }
}
