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
    private var running: [String: TaskProcess] = [:]
    /// The device each running task came from (to stop its tasks when it is revoked).
    private var runningDevices: [String: Int64] = [:]
    private var flushing = false
    private var flushAgain = false

    /// - Parameter log: receives one line per thing that happens (never payloads or secrets).
    public init(host: HostSetup.Host, configuration: HostConfiguration, client: RelayClient, log: @escaping @Sendable (String) -> Void) {
        self.host = host
        self.configuration = configuration
        self.client = client
        self.catalog = ActionCatalog(directory: host.directory)
        self.inbox = HostInbox(store: host.store)
        self.log = log
    }

    /// A stable id for the host's one conversation (handed to the agent command).
    public var conversationID: String { String(host.identity.mailbox.description.prefix(16)) }

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
        await startQueued()
        await flushOutbox()
        let retry = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                await self?.flushOutbox()
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
        // Stopping, from tasks that are not cancelled: stop running tasks and let them report,
        // then post what is still queued — a few seconds at most.
        let finish = Task { await self.stopRunningTasks() }
        await finish.value
        retry.cancel()
        _ = await retry.value
        let last = Task { await self.flushOutbox() }
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
                // Not acknowledged when it could not be processed (a database error): it comes again.
                if await receive(envelope), (try? await subscription.acknowledge([envelope.id])) != nil {
                    try? host.store.recordAudit(envelope, mailbox: host.identity.mailbox, event: .delivered, at: Self.now)
                }
            case .caughtUp:
                log("connected to \(client.baseURL); waiting for tasks")
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
        case .received(let device, _): log("message from \(device.name)")
        }
        for followUp in recorded.withLock({ $0 }) {
            switch followUp {
            case .notify(let device, let event): await notify(device, event)
            case .cancel(let device, let task): await cancel(task, from: device)
            case .actions(let device, let request): await send(.actions(request: request, actions: catalog.list()), to: device)
            case .history(let device, let request, let after): await sendHistory(to: device, request: request, after: after)
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
        case .listActions(let request): return [.actions(device.id, request)]
        case .sync(let request, let after): return [.history(device.id, request, after)]
        case .event, .actions, .history:
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
            if configuration.agentCommand.isEmpty { return "no agent command is configured on the host (agent.command in config.toml)" }
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
        for task in queued where running.count < configuration.concurrency {
            guard running[task.id] == nil else { continue }
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
            do {
                let process = try launch(task)
                running[task.id] = process
                runningDevices[task.id] = task.deviceID
                try? host.store.recordProcess(of: task.id, pid: process.processID, start: TaskLeftovers.startTime(of: process.processID))
                log("running task \(task.id.prefix(8)): \(task.request.executor.rawValue)")
                await notify(task.deviceID, TaskEvent(task: task.id, status: .running))
                Task { await self.follow(task, process) }
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

    private func launch(_ task: TaskRecord) throws -> TaskProcess {
        var environment = configuration.environment
        let inherited = ProcessInfo.processInfo.environment
        environment["PATH"] = inherited["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        environment["HOME"] = inherited["HOME"] ?? NSHomeDirectory()
        environment["LANG"] = inherited["LANG"] ?? "C.UTF-8"
        environment["TERM"] = "dumb"
        environment["ERRAND_CONVERSATION"] = conversationID
        environment["ERRAND_DEVICE"] = task.deviceName
        let executable: String
        var arguments: [String]
        var input: [UInt8]? = nil
        switch task.request.executor {
        case .agent:
            let text = task.request.text ?? ""
            let substituted = configuration.agentCommand.map { part in
                part.replacingOccurrences(of: "{conversation}", with: conversationID).replacingOccurrences(of: "{task}", with: task.id)
            }
            guard let command = substituted.first else { throw PeerError("no agent command is configured") }
            executable = try Self.resolve(command, path: environment["PATH"]!)
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
        return try TaskProcess(task: task.id, executable: executable, arguments: arguments, input: input, environment: environment,
                               workingDirectory: configuration.resolvedWorkingDirectory,
                               timeout: .seconds(configuration.timeoutSeconds), outputCap: configuration.outputCapBytes)
    }

    static func resolve(_ command: String, path: String) throws -> String {
        if command.contains("/") { return (command as NSString).expandingTildeInPath }
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(command)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw PeerError("the agent command \(command) is not on the PATH")
    }

    /// Streams a running task's output to its device in batches and records the result.
    private func follow(_ task: TaskRecord, _ process: TaskProcess) async {
        var output: [UInt8] = []
        var pending: [UInt8] = []
        var pendingOffset = 0
        var lastFlush = ContinuousClock.now
        var truncated = false
        for await event in process.events {
            switch event {
            case .truncated:
                truncated = true
            case .output(let chunk):
                output += chunk
                pending += chunk
                if pending.count >= Self.outputPieceLimit || ContinuousClock.now - lastFlush > .milliseconds(150) {
                    await sendOutput(task, &pending, &pendingOffset)
                    lastFlush = ContinuousClock.now
                }
            case .finished(let status, let exitCode, let reason):
                await sendOutput(task, &pending, &pendingOffset, final: true)
                running[task.id] = nil
                runningDevices[task.id] = nil
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

    /// Raw output bytes per event: even if every byte needed JSON's six-character escape, the
    /// message stays inside one envelope.
    static let outputPieceLimit = 8 * 1024

    /// Sends pending output in pieces cut at UTF-8 character boundaries (an incomplete character
    /// at the end waits for the next call unless `final`). Offsets count the bytes of the text
    /// sent, so the companion can tell a repeated piece from a new one.
    private func sendOutput(_ task: TaskRecord, _ pending: inout [UInt8], _ offset: inout Int, final: Bool = false) async {
        while !pending.isEmpty {
            let length = Self.characterBoundary(in: pending, atMost: Self.outputPieceLimit, final: final)
            guard length > 0 else { return }
            let text = String(decoding: pending.prefix(length), as: UTF8.self)
            pending.removeFirst(length)
            await notify(task.deviceID, TaskEvent(task: task.id, status: .running, output: text, offset: offset))
            offset += text.utf8.count
        }
    }

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

    private func send(_ message: ConversationMessage, to device: Int64, urgent: Bool = false) async {
        do {
            guard try host.store.sealAndEnqueue(message.encoded(), to: device, at: Self.now, urgent: urgent) != nil else { return }
        } catch {
            log("could not seal a message for device \(device): \(error)")
            return
        }
        await flushOutbox()
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
