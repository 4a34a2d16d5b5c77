import ErrandPeer
import ErrandProtocol
import Foundation

/// An approval request waiting for its first answer.
struct PendingApproval {
    let request: ApprovalRequest
    var task: String { request.task }
    let continuation: CheckedContinuation<ApprovalDecision, Never>
    let timer: Task<Void, Never>
}

/// What the agent is told.
enum ApprovalDecision: Equatable {
    case allow
    case deny(String)
}

/// Approvals: Claude Code's permission tool asks through the local socket, the host sends an
/// urgent `approval` to every device that may answer, and the first answer (or the timeout, the
/// task's end, the host's stop) settles it; every device then gets `approvalResolved`.
extension HostAgent {
    /// Opens the local socket (when a permission tool is configured) and denies what a host
    /// that stopped left pending.
    func startApprovals() async {
        for stale in (try? host.store.denyPendingApprovals(reason: "the host stopped before an answer came", at: Self.now)) ?? [] {
            await announce(ApprovalResolution(approval: stale.id, task: stale.task, outcome: .denied, by: nil,
                                              reason: "the host stopped before an answer came"))
        }
        guard approvalTool != nil else { return }
        do {
            let socket = try ApprovalSocket(path: host.directory.file(ApprovalSocket.fileName))
            socket.serve { [weak self] line in await self?.answerToolRequest(line) ?? ApprovalSocket.denial("the Errand host is stopping") }
            approvalSocket = socket
        } catch {
            log("note: approvals from devices are off: \((error as? HostSystemError)?.message ?? "\(error)")")
        }
    }

    /// Closes the socket and denies what still waits: the agents that asked are being stopped.
    func stopApprovals() async {
        approvalSocket?.close()
        approvalSocket = nil
        for id in Array(pendingApprovals.keys) {
            _ = await settle(id, .denied, by: nil, reason: "the host stopped before an answer came")
        }
    }

    /// Denies the requests of a task that ended.
    func endApprovals(of task: String, reason: String) async {
        for (id, pending) in pendingApprovals where pending.task == task {
            _ = await settle(id, .denied, by: nil, reason: reason)
        }
    }

    /// One request from the permission tool, `{"task", "tool", "input"}`, answered as Claude
    /// Code's permission prompt tool must: `{"behavior": "allow", "updatedInput"}` or
    /// `{"behavior": "deny", "message"}`.
    func answerToolRequest(_ line: [UInt8]) async -> [UInt8] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
              let task = object["task"] as? String, let tool = object["tool"] as? String, !tool.isEmpty else {
            return ApprovalSocket.denial("the request to the host was not {task, tool, input}")
        }
        guard let input = object["input"] as? [String: Any] else {
            return ApprovalSocket.denial("the tool's input is not a JSON object; Errand cannot show it for approval")
        }
        let inputText = String(decoding: (try? JSONSerialization.data(withJSONObject: input, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8),
                               as: UTF8.self)
        let summary = AgentStreamParser.toolSummary(input)
        switch await requestApproval(task: task, tool: tool, summary: summary, input: inputText) {
        case .allow:
            return ApprovalSocket.allowance(input)
        case .deny(let message):
            return ApprovalSocket.denial(message)
        }
    }

    /// Asks the devices and waits for the first answer, the timeout, or the task's end.
    func requestApproval(task: String, tool: String, summary: String, input: String) async -> ApprovalDecision {
        guard running[task] != nil, let record = try? host.store.task(task), record.request.executor == .agent else {
            return .deny("no agent task \(task.prefix(8)) is running on this host")
        }
        let answering = ((try? host.store.devices(includeRevoked: false)) ?? []).filter { (try? host.store.policy(of: $0.id).mayApprove) == true }
        guard !answering.isEmpty else { return .deny("no paired device may answer approval requests on this host") }
        let timeout = configuration.approvalTimeoutSeconds
        let cut = input.utf8.count <= ApprovalRequest.inputLimit ? input
            : String(decoding: input.utf8.prefix(ApprovalRequest.inputLimit - 3), as: UTF8.self) + "…"
        let request = ApprovalRequest(id: UUID().uuidString.lowercased(), task: task, tool: tool, summary: summary, input: cut,
                                      inputBytes: input.utf8.count, expiresAt: Self.now + Int64(timeout))
        do { try host.store.insertApproval(request, at: Self.now) } catch {
            return .deny("the host could not record the request: \(error)")
        }
        log("task \(task.prefix(8)) asks to use \(Self.printable(tool))\(summary.isEmpty ? "" : ": \(Self.printable(summary))") (approval \(request.id.prefix(8)))")
        for device in answering where !enqueue(.approval(request), to: device.id, urgent: true) {
            // A device that has not yet sent anything cannot be written to (its session starts
            // with its first message): it gets the request when that message comes.
            undeliveredApprovals[device.id, default: []].insert(request.id)
        }
        return await withCheckedContinuation { continuation in
            let timer = Task { [weak self] in
                try? await Task.sleep(for: .seconds(timeout))
                guard !Task.isCancelled else { return }
                _ = await self?.settle(request.id, .denied, by: nil, reason: "no answer within \(timeout) seconds")
            }
            pendingApprovals[request.id] = PendingApproval(request: request, continuation: continuation, timer: timer)
            Task { await self.flushOutbox() }
        }
    }

    /// Sends a device the requests it could not be sent before its session started.
    func deliverUndeliveredApprovals(to device: Int64) async {
        guard let ids = undeliveredApprovals.removeValue(forKey: device) else { return }
        // Revoked or no longer allowed since: it gets nothing.
        guard (try? host.store.devices(includeRevoked: false))?.contains(where: { $0.id == device }) == true,
              (try? host.store.policy(of: device).mayApprove) == true else { return }
        var sent = false
        for id in ids.sorted() {
            guard let pending = pendingApprovals[id] else { continue }
            if enqueue(.approval(pending.request), to: device, urgent: true) {
                sent = true
            } else {
                undeliveredApprovals[device, default: []].insert(id)
            }
        }
        if sent { await flushOutbox() }
    }

    /// A device's answer: counted when it is the first and the device may answer; otherwise the
    /// device is told why not.
    func answerApproval(_ id: String, allow: Bool, message: String?, from deviceID: Int64) async {
        guard let device = try? host.store.devices(includeRevoked: false).first(where: { $0.id == deviceID }) else { return }
        guard (try? host.store.policy(of: deviceID).mayApprove) == true else {
            log("\(device.name) may not answer approval requests; its answer to \(id.prefix(8)) was refused")
            await send(.approvalRefused(approval: id, reason: "this device may not answer approval requests (allow it on the host with 'errand host policy \(device.name) --approve yes')"),
                       to: deviceID)
            return
        }
        let text = message.map(Self.printable).flatMap { $0.isEmpty ? nil : $0 }
        let reason = allow ? nil : (text.map { "denied from \(device.name): \($0)" } ?? "denied from \(device.name)")
        if await settle(id, allow ? .allowed : .denied, by: device.name, reason: reason) { return }
        let reply: String
        if let record = try? host.store.approval(id) {
            reply = "already answered: \(record.status)" + (record.answeredBy.map { " by \($0)" } ?? "") + (record.answeredBy == nil ? record.reason.map { " (\($0))" } ?? "" : "")
        } else {
            reply = "this host has no approval request \(id.prefix(8))"
        }
        await send(.approvalRefused(approval: id, reason: reply), to: deviceID)
    }

    /// Settles a request once: records it, answers the agent, tells every device.
    /// - Returns: false when it was already settled.
    /// (The waiting request itself decides who was first: the agent is answered even when the
    /// database cannot record it.)
    func settle(_ id: String, _ outcome: ApprovalResolution.Outcome, by device: String?, reason: String?) async -> Bool {
        guard let pending = pendingApprovals.removeValue(forKey: id) else { return false }
        pending.timer.cancel()
        pending.continuation.resume(returning: outcome == .allowed ? .allow : .deny(reason ?? "denied"))
        do {
            _ = try host.store.settleApproval(id, outcome: outcome, by: device, reason: reason, at: Self.now)
        } catch {
            log("could not record the answer to approval \(id.prefix(8)): \(error)")
        }
        let record = pending.request
        log("approval \(id.prefix(8)) \(outcome.rawValue)" + (device.map { " by \(Self.printable($0))" } ?? "") + (reason.map { ": \(Self.printable($0))" } ?? ""))
        await announce(ApprovalResolution(approval: id, task: record.task, outcome: outcome, by: device, reason: reason))
        return true
    }

    /// Tells every device how a request ended, so each can stop offering it.
    private func announce(_ resolution: ApprovalResolution) async {
        for device in (try? host.store.devices(includeRevoked: false)) ?? [] { enqueue(.approvalResolved(resolution), to: device.id) }
        await flushOutbox()
    }
}
