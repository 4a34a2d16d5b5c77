import ErrandPeer
import ErrandTransparency
public import ErrandProtocol
public import ErrandRelayClient
import ErrandCrypto
import Foundation
import GRDB
import Synchronization

/// `errand host run`: stays connected to the relay, takes tasks from paired devices, runs them
/// under each device's policy and streams progress and results back, encrypted to the sender.
public actor HostAgent {
    let host: HostSetup.Host
    let configuration: HostConfiguration
    let client: RelayClient
    let catalog: ActionCatalog
    let inbox: HostInbox
    let log: @Sendable (String) -> Void
    var running: [String: TaskProcess] = [:]
    /// The device each running task came from (to stop its tasks when it is revoked).
    private var runningDevices: [String: Int64] = [:]
    private var flushing = false
    private var flushAgain = false
    private var acknowledging = false
    private var acknowledgeAgain = false
    /// Agent tasks run by an adapter: one at a time, as they continue one conversation.
    private var runningAdapterTasks: Set<String> = []
    private let sleepInhibitor: SleepInhibitor
    /// How Claude Code starts the permission tool: this program's path and its arguments before
    /// `--task ID` (nil: approvals are not offered, and Claude Code decides by its own settings).
    let approvalTool: [String]?
    /// Approval requests waiting for a device's answer, by id.
    var pendingApprovals: [String: PendingApproval] = [:]
    /// Approval requests a device could not be sent yet (it had sent nothing), by device.
    var undeliveredApprovals: [Int64: Set<String>] = [:]
    var approvalSocket: ApprovalSocket?

    /// - Parameters:
    ///   - approvalTool: the command that runs `errand host approval-tool --home H`, for Claude
    ///     Code's permission prompts; nil offers none.
    ///   - log: receives one line per thing that happens (never payloads or secrets).
    public init(host: HostSetup.Host, configuration: HostConfiguration, client: RelayClient, approvalTool: [String]? = nil,
                log: @escaping @Sendable (String) -> Void) {
        self.approvalTool = approvalTool
        self.host = host
        self.configuration = configuration
        self.client = client
        self.catalog = ActionCatalog(directory: host.directory)
        self.inbox = HostInbox(store: host.store)
        self.log = log
        self.sleepInhibitor = SleepInhibitor(path: Self.taskPath, log: log)
    }

    /// A stable id for the host's current conversation (handed to the agent command): the same
    /// until a task starts a new conversation.
    var conversationID: String {
        let base = String(host.identity.mailbox.description.prefix(16))
        let number = (try? host.store.conversation()) ?? 1
        return number == 1 ? base : "\(base)-\(number)"
    }

    /// The PATH tasks get: the host's own.
    static var taskPath: String { ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin" }

    /// Runs until the surrounding task is cancelled. Tasks still running then are stopped
    /// (SIGTERM to their process groups, SIGKILL 2 s later) and reported as interrupted.
    /// - Throws: ``PeerError`` when another agent already runs on this state folder.
    public func run() async throws {
        let lock = try HostLock(directory: host.directory)
        defer { lock.release() }
        if !TaskLeftovers.becomeSubreaper() {
            log("note: this system cannot make the host the reaper of its tasks' orphans; a task's child that calls setsid may outlive it")
        }
        // A host that did not stop cleanly (killed, or the machine went down) may have left its
        // tasks' processes running: end them before reporting the tasks interrupted.
        for task in try host.store.runningProcesses() {
            TaskLeftovers.endAbandoned(task: task.id, pid: task.processID, start: task.processStart)
        }
        for task in try host.store.interruptRunning(at: Self.now) {
            log("task \(task.id.prefix(8)) was interrupted by a stop of the host")
            await notify(task.deviceID, TaskEvent(task: task.id, status: .interrupted, reason: task.reason))
        }
        await startApprovals()
        await startQueued()
        await flushOutbox()
        let retry = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                await self?.flushOutbox()
                await self?.acknowledgeReceived()
                TaskLeftovers.reapOrphans()
            }
        }
        let revocations = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                await self?.stopTasksOfRevokedDevices()
            }
        }
        defer { revocations.cancel() }
        let auditChecks = Task { [weak self] in await self?.checkAuditLogPeriodically() }
        defer { auditChecks.cancel() }
        let subscription = client.subscribe(owner: host.identity.signing)
        var failure: (any Error)?
        do { try await listen(subscription) } catch { failure = error }
        subscription.cancel()
        stopping = true
        await stopApprovals()
        // Stopping, from tasks that are not cancelled: stop running tasks and let them report,
        // then post what is still queued — a few seconds at most.
        let finish = Task { await self.stopRunningTasks() }
        await finish.value
        retry.cancel()
        _ = await retry.value
        let last = Task { await self.flushOutbox(); await self.acknowledgeReceived() }
        let limit = Task { try? await Task.sleep(for: .seconds(5)); last.cancel() }
        await last.value
        limit.cancel()
        if let failure { throw failure }
    }

    private var stopping = false

    /// A device revoked while its tasks run (`errand host revoke`, from another process): its
    /// running tasks are stopped, not left to run to their end.
    private func stopTasksOfRevokedDevices() {
        guard !runningDevices.isEmpty, let devices = try? host.store.devices(includeRevoked: true) else { return }
        let revoked = Set(devices.filter(\.isRevoked).map(\.id))
        for (task, device) in runningDevices where revoked.contains(device) {
            runningDevices[task] = nil  // stopped once; it reports when it has ended
            guard let process = running[task] else { continue }
            log("stopping task \(task.prefix(8)): its device was revoked")
            process.stop(.revoked)
        }
    }

    private func stopRunningTasks() async {
        for process in running.values { process.stop(.hostStopping) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !running.isEmpty && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
    }

    private func listen(_ subscription: LiveSubscription) async throws {
        for try await event in subscription.events {
            switch event {
            case .envelope(_, let envelope):
                // Not acknowledged when it could not be processed (a database error): it comes
                // again. Processed, its acknowledgement is queued in the same transaction.
                if await receive(envelope) { Task { await self.acknowledgeReceived() } }
            case .caughtUp:
                log("connected to \(client.baseURL); waiting for tasks")
                Task { await self.acknowledgeReceived() }
            case .reconnecting(let error):
                log("relay connection lost (\(error.message)); reconnecting")
            }
        }
    }

    /// What a received message asks for once its transaction has committed.
    private enum FollowUp: Sendable {
        case notify(Int64, TaskEvent)
        case cancel(Int64, String)
        case actions(Int64, String)
        case history(Int64, String, Int64)
        case approve(Int64, String, Bool, String?)
    }

    /// Processes one envelope (public for tests that drive the agent without a live connection).
    /// - Returns: whether it was dealt with for good (received, duplicate or refused), so that it
    ///   may be acknowledged.
    @discardableResult
    public func receive(_ envelope: Envelope) async -> Bool {
        let recorded = Mutex<[FollowUp]>([])
        let outcome: HostInbox.Outcome
        do {
            outcome = try inbox.process(envelope, now: Date()) { db, device, payload in
                let followUps = try self.record(db, device: device, payload: payload)
                recorded.withLock { $0 = followUps }
            }
        } catch {
            log("could not process envelope \(envelope.id.description.prefix(8)): \(error)")
            return false
        }
        switch outcome {
        case .duplicate: log("envelope \(envelope.id.description.prefix(8)) was already processed; ignored")
        case .refused(let reason): log("refused an envelope: \(reason)")
        case .received(let device, _):
            log("message from \(device.name)")
            await deliverUndeliveredApprovals(to: device.id)
        }
        for followUp in recorded.withLock({ $0 }) {
            switch followUp {
            case .notify(let device, let event): await notify(device, event)
            case .cancel(let device, let task): await cancel(task, from: device)
            case .actions(let device, let request): await send(.actions(request: request, actions: catalog.list()), to: device)
            case .history(let device, let request, let after): await sendHistory(to: device, request: request, after: after)
            case .approve(let device, let approval, let allow, let message): await answerApproval(approval, allow: allow, message: message, from: device)
            }
        }
        await startQueued()
        return true
    }

    /// Inside the receive transaction: records a task (queued, or refused by policy).
    nonisolated private func record(_ db: Database, device: Device, payload: [UInt8]) throws -> [FollowUp] {
        let message: ConversationMessage
        do { message = try ConversationMessage(decoding: payload) } catch {
            log("\(device.name) sent something that is not a conversation message: \(error)")
            return []
        }
        switch message {
        case .task(let request):
            let now = Self.now
            if let refusal = try refusal(of: request, device: device, db: db) {
                guard try HostStore.insertTask(db, request, device: device.id, status: .refused, reason: refusal, at: now) else { return [] }
                try db.execute(sql: "UPDATE task SET finished_at = ? WHERE id = ?", arguments: [now, request.task])
                if let row = try Row.fetchOne(db, sql: "SELECT \(HostStore.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.id = ?",
                                              arguments: [request.task]) {
                    try HostStore.log(db, try HostStore.task(row), at: now)
                }
                log("refused task \(request.task.prefix(8)) from \(device.name): \(Self.printable(refusal))")
                return [.notify(device.id, TaskEvent(task: request.task, status: .refused, reason: refusal))]
            }
            guard try HostStore.insertTask(db, request, device: device.id, status: .queued, reason: nil, at: now) else { return [] }
            log("queued task \(request.task.prefix(8)) from \(device.name): \(request.executor.rawValue)")
            return [.notify(device.id, TaskEvent(task: request.task, status: .queued))]
        case .cancel(let task): return [.cancel(device.id, task)]
        case .approve(let approval, let allow, let message): return [.approve(device.id, approval, allow, message)]
        case .listActions(let request): return [.actions(device.id, request)]
        case .sync(let request, let after): return [.history(device.id, request, after)]
        case .event, .actions, .history, .approval, .approvalResolved, .approvalRefused:
            log("\(device.name) sent a host-to-device message; ignored")
            return []
        }
    }

    nonisolated private func refusal(of request: TaskRequest, device: Device, db: Database) throws -> String? {
        guard UUID(uuidString: request.task) != nil else { return "the task id is not a UUID" }
        let policy = try HostStore.policy(db, of: device.id)
        guard policy.executors.contains(request.executor) else {
            return "this device may not use the \(request.executor.rawValue) executor (grant it with 'errand host policy')"
        }
        switch request.executor {
        case .agent:
            if configuration.agentAdapter == .command && configuration.agentCommand.isEmpty {
                return "no agent command is configured on the host (agent.command or agent.adapter in config.toml)"
            }
            if (request.text ?? "").isEmpty { return "the task has no text" }
        case .shell:
            if (request.text ?? "").isEmpty { return "the shell task has no command" }
        case .action:
            guard let name = request.action else { return "the task names no action" }
            guard policy.allows(request) else { return "this device may not run the action \(name)" }
            do { _ = try catalog.executable(named: name) } catch { return error.message }
        }
        return nil
    }

    // MARK: Running

    private func startQueued() async {
        guard !stopping, let queued = try? host.store.queuedTasks() else { return }
        // An adapter's agent tasks continue one conversation: they run one at a time, in order.
        var adapterTaskWaits = !runningAdapterTasks.isEmpty
        for task in queued where running.count < configuration.concurrency {
            guard running[task.id] == nil else { continue }
            let usesAdapter = task.request.executor == .agent && configuration.agentAdapter != .command
            if usesAdapter && adapterTaskWaits { continue }
            // The device may have been revoked, or its policy narrowed, since the task was queued.
            if let refusal = currentRefusal(of: task) {
                let event = TaskEvent(task: task.id, status: .refused, reason: refusal)
                try? host.store.finishAndNotify(task.id, status: .refused, exitCode: nil, output: [], truncated: false, reason: refusal,
                                                at: Self.now, event: ConversationMessage.event(event).encoded())
                log("refused queued task \(task.id.prefix(8)): \(Self.printable(refusal))")
                await flushOutbox()
                continue
            }
            guard (try? host.store.start(task.id, at: Self.now)) == true else { continue }
            if task.request.newConversation == true, let number = try? host.store.beginConversation() {
                log("task \(task.id.prefix(8)) starts conversation \(number)")
            }
            if usesAdapter { adapterTaskWaits = true }
            do {
                let (process, agent) = try launch(task)
                running[task.id] = process
                runningDevices[task.id] = task.deviceID
                if usesAdapter { runningAdapterTasks.insert(task.id) }
                sleepInhibitor.hold()
                try? host.store.recordProcess(of: task.id, pid: process.processID, start: TaskLeftovers.startTime(of: process.processID))
                log("running task \(task.id.prefix(8)): \(task.request.executor.rawValue)")
                await notify(task.deviceID, TaskEvent(task: task.id, status: .running))
                Task { await self.follow(task, process, agent: agent) }
            } catch {
                let reason = "could not start: \(error)"
                let event = TaskEvent(task: task.id, status: .failed, reason: reason)
                try? host.store.finishAndNotify(task.id, status: .failed, exitCode: nil, output: [], truncated: false, reason: reason,
                                                at: Self.now, event: ConversationMessage.event(event).encoded())
                await flushOutbox()
            }
        }
    }

    private func currentRefusal(of task: TaskRecord) -> String? {
        guard let device = try? host.store.devices(includeRevoked: true).first(where: { $0.id == task.deviceID }), !device.isRevoked else {
            return "the device was revoked before the task started"
        }
        guard let policy = try? host.store.policy(of: task.deviceID), policy.allows(task.request) else {
            return "this device's policy no longer allows it"
        }
        return nil
    }

    /// An adapter's run of a task: the agent's stream to parse, and where its session goes.
    struct AgentRun {
        let adapter: AgentAdapterKind
        let conversation: Int64
        var parser: AgentStreamParser
        /// The session last recorded for the conversation (nil before the agent named one).
        var recordedSession: String?
    }

    private func launch(_ task: TaskRecord) throws -> (TaskProcess, AgentRun?) {
        var environment = configuration.environment
        let inherited = ProcessInfo.processInfo.environment
        environment["PATH"] = Self.taskPath
        environment["HOME"] = inherited["HOME"] ?? NSHomeDirectory()
        environment["LANG"] = inherited["LANG"] ?? "C.UTF-8"
        environment["TERM"] = "dumb"
        environment["ERRAND_CONVERSATION"] = conversationID
        environment["ERRAND_DEVICE"] = task.deviceName
        let executable: String
        var arguments: [String]
        var input: [UInt8]? = nil
        var workingDirectory = configuration.resolvedWorkingDirectory
        var agent: AgentRun?
        switch task.request.executor {
        case .agent where configuration.agentAdapter != .command:
            let adapter = configuration.agentAdapter
            let program = adapter == .claudeCode ? configuration.claudeCode : configuration.codex
            environment.merge(program.environment) { $1 }
            let conversation = try host.store.conversation()
            let session = try host.store.agentSession(conversation: conversation, adapter: adapter).map(AgentSession.resume)
                ?? .new(UUID().uuidString.lowercased())
            let text = task.request.text ?? ""
            let permissionPrompt = approvalSocket != nil ? approvalTool.map { AgentInvocation.permissionPrompt(tool: $0, task: task.id) } : nil
            let invocation = adapter == .claudeCode
                ? AgentInvocation.claudeCode(program, text: text, session: session, permissionPrompt: permissionPrompt ?? [])
                : AgentInvocation.codex(program, text: text, session: session)
            executable = try Self.resolve(program.program, path: environment["PATH"]!, what: "\(adapter.displayName) (\(program.program))",
                                          setting: "agent.\(adapter.rawValue).program")
            arguments = invocation.arguments
            input = invocation.input
            if let folder = program.workingDirectory { workingDirectory = (folder as NSString).expandingTildeInPath }
            var recorded: String?
            if case .resume(let id) = session { recorded = id }
            agent = AgentRun(adapter: adapter, conversation: conversation, parser: AgentStreamParser(kind: adapter), recordedSession: recorded)
        case .agent:
            let text = task.request.text ?? ""
            let substituted = configuration.agentCommand.map { part in
                part.replacingOccurrences(of: "{conversation}", with: conversationID).replacingOccurrences(of: "{task}", with: task.id)
            }
            guard let command = substituted.first else { throw PeerError("no agent command is configured") }
            executable = try Self.resolve(command, path: environment["PATH"]!, what: "the agent command \(command)", setting: "agent.command")
            arguments = Array(substituted.dropFirst())
            if configuration.agentInput == .argument {
                if arguments.contains(where: { $0.contains("{text}") }) {
                    // A text standing alone as an argument must not pass for one of the agent's options.
                    if arguments.contains("{text}") && text.hasPrefix("-") {
                        throw PeerError("the text starts with '-', which the agent would read as an option")
                    }
                    arguments = arguments.map { $0.replacingOccurrences(of: "{text}", with: text) }
                } else {
                    // After "--", the text is an operand whatever it starts with.
                    arguments += ["--", text]
                }
            } else {
                input = Array(text.utf8)
            }
        case .action:
            executable = try catalog.executable(named: task.request.action ?? "")
            arguments = task.request.arguments ?? []
        case .shell:
            executable = "/bin/sh"
            arguments = ["-c", task.request.text ?? ""]
        }
        // An adapter's raw stream is parsed, not kept: the cap applies to the text it renders.
        let process = try TaskProcess(task: task.id, executable: executable, arguments: arguments, input: input, environment: environment,
                                      workingDirectory: workingDirectory, timeout: .seconds(configuration.timeoutSeconds),
                                      outputCap: agent == nil ? configuration.outputCapBytes : Self.agentStreamCap)
        return (process, agent)
    }

    /// The program `command` names: a path as it is, or the first match on `path`.
    /// - Throws: ``PeerError`` naming `what` is missing and the `setting` to change.
    static func resolve(_ command: String, path: String, what: String, setting: String) throws -> String {
        if command.contains("/") {
            let expanded = (command as NSString).expandingTildeInPath
            guard access(expanded, X_OK) == 0 else { throw PeerError("\(what) is not an executable file: install it, or correct \(setting)") }
            return expanded
        }
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(command)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw PeerError("\(what) is not on the host's PATH: install it, or set \(setting) to its path")
    }

    /// What of a running task's output waits to be sent.
    private struct OutputStream {
        var pending: [UInt8] = []
        var steps: [AgentStep] = []
        /// Bytes of text sent so far (the next piece's offset).
        var offset = 0
        var lastSent = ContinuousClock.now
        var sendScheduled = false
    }

    private var outputStreams: [String: OutputStream] = [:]

    /// How long output may wait to be sent with more: pieces go at least this often.
    static let outputInterval = Duration.milliseconds(150)

    /// Streams a running task's output to its device in batches and records the result. With an
    /// adapter, the agent's events become steps, sent as they come, and its text is the output.
    private func follow(_ task: TaskRecord, _ process: TaskProcess, agent: AgentRun?) async {
        var agent = agent
        var output: [UInt8] = []
        var truncated = false
        outputStreams[task.id] = OutputStream()
        for await event in process.events {
            switch event {
            case .truncated:
                truncated = true
            case .output(let chunk):
                var text = chunk
                var steps: [AgentStep] = []
                if agent != nil {
                    steps = agent!.parser.feed(chunk)
                    let wasTruncated = truncated
                    text = capped(Array(steps.map(AgentStreamParser.rendered).joined().utf8), after: output.count, truncated: &truncated)
                    // Past the cap only the run's end is still sent as a step.
                    if wasTruncated { steps = steps.filter { $0.kind == .result } }
                    recordSession(of: &agent!)
                }
                output += text
                await stream(task, text: text, steps: steps)
            case .finished(var status, var exitCode, var reason):
                if agent != nil {
                    let steps = agent!.parser.finish()
                    let text = capped(Array(steps.map(AgentStreamParser.rendered).joined().utf8), after: output.count, truncated: &truncated)
                    output += text
                    outputStreams[task.id]?.pending += text
                    outputStreams[task.id]?.steps += steps
                    recordSession(of: &agent!)
                    (status, exitCode, reason) = Self.agentResult(agent!.parser, status: status, exitCode: exitCode, reason: reason)
                }
                await sendStreamed(task, final: true)
                outputStreams[task.id] = nil
                running[task.id] = nil
                runningDevices[task.id] = nil
                runningAdapterTasks.remove(task.id)
                sleepInhibitor.release()
                await endApprovals(of: task.id, reason: "the task ended before an answer came")
                // The result and the message carrying it are saved together: a crash cannot keep
                // the result from the device.
                let event = TaskEvent(task: task.id, status: status, exitCode: exitCode, reason: reason, truncated: truncated,
                                      outputBytes: output.count, outputDigest: ByteEncoding.hex(SHA256.hash(output)))
                do {
                    try host.store.finishAndNotify(task.id, status: status, exitCode: exitCode, output: output, truncated: truncated,
                                                   reason: reason, at: Self.now, event: ConversationMessage.event(event).encoded())
                } catch {
                    log("could not record the end of task \(task.id.prefix(8)): \(error)")
                }
                await flushOutbox()
                log("task \(task.id.prefix(8)) \(status.rawValue)\(exitCode.map { " (exit \($0))" } ?? "")")
                await startQueued()
            }
        }
    }

    /// Adds output (and steps) to what waits, and sends it when enough has gathered or the
    /// interval has passed; otherwise a send is scheduled, so output that comes before a pause is
    /// not held back until the task says more.
    private func stream(_ task: TaskRecord, text: [UInt8], steps: [AgentStep]) async {
        guard var stream = outputStreams[task.id] else { return }
        stream.pending += text
        stream.steps += steps
        outputStreams[task.id] = stream
        if stream.pending.count >= Self.outputPieceLimit || ContinuousClock.now - stream.lastSent >= Self.outputInterval {
            await sendStreamed(task)
        } else if !stream.sendScheduled {
            outputStreams[task.id]?.sendScheduled = true
            let wait = Self.outputInterval - (ContinuousClock.now - stream.lastSent)
            Task {
                try? await Task.sleep(for: wait)
                await self.sendScheduled(task)
            }
        }
    }

    private func sendScheduled(_ task: TaskRecord) async {
        guard outputStreams[task.id] != nil else { return }
        outputStreams[task.id]?.sendScheduled = false
        await sendStreamed(task)
    }

    /// Seals what waits of a task's output — its steps, then its text in pieces cut at UTF-8
    /// character boundaries (an incomplete character at the end waits unless `final`) — all at
    /// once, so pieces keep their order and offsets, then posts them. Offsets count the bytes of
    /// the text sent, so the companion can tell a repeated piece from a new one.
    private func sendStreamed(_ task: TaskRecord, final: Bool = false) async {
        guard var stream = outputStreams[task.id] else { return }
        var events: [TaskEvent] = []
        var batch: [AgentStep] = []
        var size = 0
        for step in stream.steps.map(\.bounded) {
            let stepSize = (try? JSONEncoder().encode(step).count) ?? Self.stepsPieceBytes
            if size + stepSize > Self.stepsPieceBytes, !batch.isEmpty {
                events.append(TaskEvent(task: task.id, status: .running, steps: batch))
                batch = []
                size = 0
            }
            batch.append(step)
            size += stepSize
        }
        if !batch.isEmpty { events.append(TaskEvent(task: task.id, status: .running, steps: batch)) }
        stream.steps = []
        while !stream.pending.isEmpty {
            let length = Self.characterBoundary(in: stream.pending, atMost: Self.outputPieceLimit, final: final)
            guard length > 0 else { break }
            let text = String(decoding: stream.pending.prefix(length), as: UTF8.self)
            stream.pending.removeFirst(length)
            events.append(TaskEvent(task: task.id, status: .running, output: text, offset: stream.offset))
            stream.offset += text.utf8.count
        }
        stream.lastSent = ContinuousClock.now
        outputStreams[task.id] = stream
        guard !events.isEmpty else { return }
        for event in events { enqueue(.event(event), to: task.deviceID) }
        await flushOutbox()
    }

    /// How an adapter's run ended: the process's end, corrected by what the agent said. A run that
    /// exited 0 but reported an error (or no result) failed; a failed exit gets the agent's reason.
    static func agentResult(_ parser: AgentStreamParser, status: TaskStatus, exitCode: Int32?, reason: String?)
        -> (TaskStatus, Int32?, String?) {
        switch status {
        case .succeeded:
            guard let failure = parser.failure else { return (status, exitCode, reason) }
            return (.failed, exitCode, failure)
        case .failed where reason == nil:
            let said = parser.outcome.map { $0.failed ? $0.summary : nil } ?? parser.lastText.map(AgentStreamParser.oneLine)
            return (.failed, exitCode, "\(parser.kind.displayName) exited with status \(exitCode.map(String.init) ?? "?")" + (said.map { ": \($0)" } ?? ""))
        default:
            return (status, exitCode, reason)
        }
    }

    /// Keeps the session the agent named, so the conversation's next task resumes it.
    private func recordSession(of agent: inout AgentRun) {
        guard let session = agent.parser.session, session != agent.recordedSession else { return }
        do {
            try host.store.recordAgentSession(session, conversation: agent.conversation, adapter: agent.adapter)
            agent.recordedSession = session
        } catch {
            log("could not record the agent's session: \(error)")
        }
    }

    /// Encoded bytes of the steps one event carries at most (a step's text is at most 2,000 bytes
    /// and its tool's name 100: even escaped, one step stays well under this, and an event inside
    /// one envelope).
    static let stepsPieceBytes = 16 * 1024

    /// Bytes of an adapter's raw event stream read at most (its tool results can be large); the
    /// rendered text is held to `tasks.output_cap_bytes`.
    static let agentStreamCap = 1 << 30

    /// Keeps `text` within what is left of the output cap; past it, a marker once, then nothing
    /// (the stream is still parsed, so the run's end is still seen).
    private func capped(_ text: [UInt8], after kept: Int, truncated: inout Bool) -> [UInt8] {
        guard !truncated else { return [] }
        let room = configuration.outputCapBytes - kept
        guard text.count > room else { return text }
        truncated = true
        return Array(text.prefix(Self.characterBoundary(in: text, atMost: max(0, room), final: false))) + TaskProcess.truncationMarker
    }

    /// Raw output bytes per event: even if every byte needed JSON's six-character escape, the
    /// message stays inside one envelope.
    static let outputPieceLimit = 8 * 1024

    /// The longest prefix of `bytes`, at most `limit` long, that does not end inside a UTF-8
    /// character (all of it when `final` and it fits).
    static func characterBoundary(in bytes: [UInt8], atMost limit: Int, final: Bool) -> Int {
        if bytes.count <= limit && final { return bytes.count }
        var end = min(bytes.count, limit)
        // Step back over continuation bytes to the start of the last character…
        var start = end
        while start > 0 && start > end - 4 && bytes[start - 1] & 0xC0 == 0x80 { start -= 1 }
        guard start > 0 else { return end }
        let lead = bytes[start - 1]
        let size = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        // …and leave it out when it is not complete within the prefix.
        if (start - 1) + size > end { end = start - 1 }
        return end
    }

    private func cancel(_ task: String, from device: Int64) async {
        // Any paired device may cancel: they all belong to the person who owns the host.
        guard let record = try? host.store.task(task) else { return }
        if (try? host.store.cancelQueued(task, at: Self.now)) == true {
            log("task \(task.prefix(8)) cancelled before it started")
            await notify(record.deviceID, TaskEvent(task: task, status: .cancelled, reason: "cancelled before it started"))
        } else if let process = running[task] {
            log("cancelling task \(task.prefix(8))")
            process.stop(.cancelled)
        }
    }

    // MARK: Sending

    private func notify(_ device: Int64, _ event: TaskEvent) async {
        // A task's end rings the device's doorbells when it is offline; progress does not.
        await send(.event(event), to: device, urgent: event.status.isFinal)
    }

    private func sendHistory(to device: Int64, request: String, after: Int64) async {
        var position = after
        var batch: [ConversationEntry] = []
        var size = 0
        while true {
            guard let page = try? host.store.conversationSummaries(after: position, limit: 200, outputLimit: ConversationMessage.historyOutputLimit) else { return }
            for whole in page {
                // Measured as encoded: escaping can make text up to six times longer. An entry
                // that alone would not fit a page is cut (output first, then the request).
                let entry = whole.fitting(encodedBytes: ConversationMessage.historyPageBytes)
                let entrySize = (try? JSONEncoder().encode(entry).count) ?? ConversationMessage.historyPageBytes
                if size + entrySize > ConversationMessage.historyPageBytes, !batch.isEmpty {
                    await send(.history(request: request, entries: batch, complete: false), to: device)
                    batch = []
                    size = 0
                }
                batch.append(entry)
                size += entrySize
                position = entry.position
            }
            if page.count < 200 { break }
        }
        await send(.history(request: request, entries: batch, complete: true), to: device)
    }

    func send(_ message: ConversationMessage, to device: Int64, urgent: Bool = false) async {
        guard enqueue(message, to: device, urgent: urgent) else { return }
        await flushOutbox()
    }

    /// Seals a message into the outbox (posted by the next flush); false when it could not be.
    @discardableResult
    func enqueue(_ message: ConversationMessage, to device: Int64, urgent: Bool = false) -> Bool {
        do {
            return try host.store.sealAndEnqueue(message.encoded(), to: device, at: Self.now, urgent: urgent) != nil
        } catch {
            log("could not seal a message for device \(device): \(error)")
            return false
        }
    }

    /// Sends the acknowledgements the relay has not confirmed (queued with each processed
    /// envelope); what fails stays queued for the retry timer or the next connection. As with
    /// ``flushOutbox()``, a call during a round makes it go round once more.
    func acknowledgeReceived() async {
        guard !acknowledging else {
            acknowledgeAgain = true
            return
        }
        acknowledging = true
        defer { acknowledging = false }
        repeat {
            acknowledgeAgain = false
            do { try await inbox.acknowledgePending(client: client, identity: host.identity) } catch let error as RelayClientError {
                if !error.isTransient { log("the relay refused an acknowledgement: \(error.message)") }
                return
            } catch {
                log("could not record acknowledgements: \(error)")
                return
            }
        } while acknowledgeAgain
    }

    /// Posts what waits in the outbox, in order; what fails stays for the next try. A call made
    /// while a flush is under way makes that flush go round once more, so nothing queued is left
    /// behind until the retry timer.
    func flushOutbox() async {
        guard !flushing else {
            flushAgain = true
            return
        }
        flushing = true
        defer { flushing = false }
        repeat {
            flushAgain = false
            guard let pending = try? host.store.pendingOutbox() else { return }
            var blocked: Set<Int64> = []
            // In batches: one request and one commit at the relay for many messages (a
            // streamed output, a history page, a message to every device).
            var start = pending.startIndex
            while start < pending.endIndex {
                let chunk = Array(pending[start..<min(start + Self.outboxBatch, pending.endIndex)].filter { !blocked.contains($0.device) })
                start += Self.outboxBatch
                guard !chunk.isEmpty else { continue }
                let results: [Result<RelayClient.Receipt, RelayClientError>]
                do {
                    results = try await client.post(batch: chunk.map {
                        .init(mailbox: $0.mailbox, token: $0.token, envelope: $0.envelope.encoded, urgent: $0.urgent)
                    })
                } catch {
                    if !error.isTransient { log("the relay refused a batch of \(chunk.count) messages: \(error.message)") }
                    return
                }
                for (item, result) in zip(chunk, results) {
                    switch result {
                    case .success:
                        try? host.store.sent(item.envelope.id)
                        try? host.store.recordAudit(item.envelope, mailbox: item.mailbox, event: .stored, at: Self.now)
                    case .failure(let error):
                        // Keep order per device: later messages wait for this one (the relay
                        // does not store them either: they come back "not attempted").
                        blocked.insert(item.device)
                        if !error.isTransient { log("the relay refused a message for device \(item.device): \(error.message)") }
                    }
                }
            }
            if !blocked.isEmpty { return }
        } while flushAgain
    }

    /// Checks the relay's audit log every `audit.verify_interval_seconds` (the first time a few
    /// seconds after start), until cancelled.
    private func checkAuditLogPeriodically() async {
        let interval = configuration.auditVerifyIntervalSeconds
        guard interval > 0 else { return }
        var delay = Duration.seconds(min(interval, 5))
        while !Task.isCancelled {
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled else { return }
            guard await checkAuditLog() else { return }
            delay = .seconds(interval)
        }
    }

    /// One check of the relay's audit log (as `errand audit verify` does), logged: quietly when it
    /// holds, as a security error when it does not. Returns `false` when checks cannot run here.
    func checkAuditLog() async -> Bool {
        guard let keyText = try? host.store.pinnedAuditKey(), let verifier = try? NoteVerifier(parsing: keyText) else {
            log("no audit-log key is pinned (the relay had no log at setup): the relay's log is not checked")
            return false
        }
        let checker = AuditVerifier(client: client, verifier: verifier, state: HostAuditState(store: host.store),
                                    evidenceFolder: host.directory.file("audit-evidence"))
        do {
            let result = try await checker.verify()
            if result.passed {
                if result.newlyVerified > 0 {
                    log("audit log checked: checkpoint of \(result.checkpointSize) events, \(result.newlyVerified) more of this host's events proven included")
                }
            } else {
                for finding in result.findings { log("SECURITY: the relay's audit log does not match what this host saw: \(finding)") }
                log("SECURITY: evidence saved in \(result.evidence ?? "(could not be saved)"); stop using this relay and tell its operator")
            }
        } catch {
            log("could not check the relay's audit log: \(error.message)")
        }
        return true
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    /// Most outbox messages handed to one batch post (the client splits what one request cannot carry).
    static let outboxBatch = 64

    /// A device-provided string made safe for one log line.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }).prefix(200))
    }
}
