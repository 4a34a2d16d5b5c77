import ArgumentParser
import ErrandCompanion
import ErrandPeer
import ErrandProtocol
import Foundation

/// `errand approvals`: what the hosts' agents wait for.
struct ApprovalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List the requests the hosts' agents wait on (a tool to run, a file to edit); answer one with 'errand approve'.")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Print JSON.") var json = false
    @Option(help: ArgumentHelp("Seconds to wait for each host's answer before showing what this device knows.", valueName: "seconds"))
    var timeout = 10

    func run() async throws {
        let conversations = try await reportingPeerErrors { try choice.conversations() }
        var pending: [(host: String, approval: ApprovalRequest)] = []
        for conversation in conversations {
            do {
                if !(try await conversation.syncTelling(timeout: .seconds(timeout))) && !json {
                    Console.warn("\(conversation.host.name) did not answer; showing what this device knows")
                }
            } catch {
                if !json { Console.warn("\(error.message); showing what this device knows") }
            }
            let approvals = (try? conversation.store.pendingApprovals(host: conversation.host.id)) ?? []
            pending += approvals.map { (conversation.host.name, $0.request) }
        }
        if json {
            try Console.json(pending.map { item -> [String: Any] in
                ["id": item.approval.id, "host": item.host, "task": item.approval.task, "tool": item.approval.tool,
                 "summary": item.approval.summary, "input": item.approval.input, "inputCut": item.approval.inputIsCut,
                 "expiresAt": item.approval.expiresAt]
            })
            return
        }
        guard !pending.isEmpty else { Console.line("Nothing waits for an answer."); return }
        let now = Int64(Date().timeIntervalSince1970)
        for item in pending {
            Console.line(Self.describe(item.approval, host: item.host) + "  (\(max(0, item.approval.expiresAt - now)) s left)")
            let input = item.approval.input.count > 400 ? String(item.approval.input.prefix(400)) + "…" : item.approval.input
            Console.line("          input: \(TerminalText.neutralized(input))")
        }
        Console.line("Answer with: errand approve ID, or errand approve ID --deny [--message TEXT]")
    }

    /// "3f2a1b4c  studio wants to use Bash: git status  (task 8d0e…)"
    static func describe(_ approval: ApprovalRequest, host: String) -> String {
        let what = approval.summary.isEmpty ? approval.tool : "\(approval.tool): \(approval.summary)"
        let cut = approval.inputIsCut ? "  [input cut: \(approval.inputBytes) bytes in all; see it on the computer]" : ""
        return "\(TerminalText.neutralized(String(approval.id.prefix(8))))  \(TerminalText.neutralized(host)) wants to use \(TerminalText.neutralized(what))"
            + "  (task \(TerminalText.neutralized(String(approval.task.prefix(8)))))\(cut)"
    }
}

/// `errand approve ID [--deny [--message TEXT]]`.
struct ApproveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Answer an agent's request: allow it, or --deny it (the first answer from any device counts).")

    @OptionGroup var choice: HostChoice
    @Flag(help: "Deny instead of allow.") var deny = false
    @Option(help: ArgumentHelp("With --deny: what to tell the agent.", valueName: "text")) var message: String?
    @Option(help: ArgumentHelp("Seconds to wait for the host to confirm.", valueName: "seconds")) var timeout = 30
    @Argument(help: ArgumentHelp("The request's id (or its first characters), from 'errand approvals'.", valueName: "id")) var id: String

    func validate() throws {
        if message != nil && !deny { throw ValidationError("--message goes with --deny: it tells the agent why") }
    }

    func run() async throws {
        let conversations = try await reportingPeerErrors { try choice.conversations() }
        // The request may have come while this device was away: ask the hosts when it is unknown.
        var found = Self.find(id, in: conversations)
        if found == nil {
            for conversation in conversations { _ = await conversation.sync(timeout: .seconds(10)) }
            found = Self.find(id, in: conversations)
        }
        let conversation: CompanionConversation
        let approvalID: String
        if let (known, approval) = found {
            guard approval.isPending else {
                Console.line("\(TerminalText.neutralized(String(approval.id.prefix(8)))) was already answered: \(Self.outcome(approval))")
                throw ExitCode(1)
            }
            (conversation, approvalID) = (known, approval.id)
        } else if UUID(uuidString: id) != nil, conversations.count == 1 {
            // A request this device was not sent (seen on another device): the host decides.
            (conversation, approvalID) = (conversations[0], id.lowercased())
        } else {
            throw UserFacingError(PeerError("no approval request \(id) is known on this device",
                                            hint: "see what waits with 'errand approvals', or give the whole id and --host"))
        }
        try? conversation.store.clearRefusal(of: approvalID)
        _ = try await reportingPeerErrors {
            try await conversation.send(.approve(approval: approvalID, allow: !deny, message: message))
        }
        let store = conversation.store
        let settled = try await reportingPeerErrors {
            try await conversation.wait(timeout: .seconds(timeout), until: {
                if try store.reply(to: CompanionStore.refusalReply(approvalID)) != nil { return true }
                return (try store.approval(approvalID)).map { !$0.isPending } ?? false
            })
        }
        guard settled else {
            Console.line("answer sent for \(TerminalText.neutralized(String(approvalID.prefix(8)))); \(TerminalText.neutralized(conversation.host.name)) has not confirmed yet (it may be offline)")
            return
        }
        if let refusal = try? store.reply(to: CompanionStore.refusalReply(approvalID)) {
            Console.line("\(TerminalText.neutralized(String(approvalID.prefix(8)))): your answer did not count: \(TerminalText.neutralized(refusal))")
            throw ExitCode(1)
        }
        guard let now = try? store.approval(approvalID) else { return }
        Console.line("\(TerminalText.neutralized(String(approvalID.prefix(8)))): \(Self.outcome(now))")
        // Another device may have been first, with the other answer.
        if (now.status == "allowed") == deny { throw ExitCode(1) }
    }

    static func find(_ reference: String, in conversations: [CompanionConversation]) -> (CompanionConversation, CachedApproval)? {
        for conversation in conversations {
            if let approval = try? conversation.store.approval(reference), approval.hostID == conversation.host.id { return (conversation, approval) }
        }
        return nil
    }

    static func outcome(_ approval: CachedApproval) -> String {
        var text = approval.status + (approval.answeredBy.map { " by \(TerminalText.neutralized($0))" } ?? "")
        if approval.status == "denied", let reason = approval.reason, approval.answeredBy == nil { text += " (\(TerminalText.neutralized(reason)))" }
        return text
    }
}
