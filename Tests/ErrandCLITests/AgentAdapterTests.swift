import ErrandTestSupport
import Foundation
import Testing

/// The host driving Claude Code and Codex through their headless modes, against a real relay and
/// host, with stand-ins that follow the documented command lines and event formats
/// (`Tests/Agents/claude`, `Tests/Agents/codex`).
@Suite("Agent adapters: Claude Code and Codex", .timeLimit(.minutes(5)))
struct AgentAdapterTests {
    static let agents = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Agents").path

    /// A journey whose host runs `adapter` with the stand-in at `program` (default: the stand-in),
    /// its state in the scratch folder, in a working folder of its own.
    static func journey(adapter: String, program: String? = nil, arguments: String = "[]") async throws -> (Journey, state: String, work: String) {
        let journey = try await Journey(config: ["adapter": "\"\(adapter)\""])
        let state = journey.folder.path("agent-state"), work = journey.folder.path("work")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let name = adapter == "claude-code" ? "claude" : "codex"
        var text = try String(contentsOfFile: journey.host + "/config.toml", encoding: .utf8)
        let table = "[agent.\(adapter)]\n"
        let section = try #require(text.range(of: table))
        // Only this adapter's table: its program, arguments and folder; then its environment.
        var rest = String(text[section.upperBound...])
        rest = rest.replacingOccurrences(of: "program = \"\(name)\"", with: "program = \"\(program ?? "\(agents)/\(name)")\"", options: [], range: rest.startIndex..<rest.endIndex)
        if let line = rest.range(of: "arguments = []") { rest.replaceSubrange(line, with: "arguments = \(arguments)") }
        if let folder = rest.range(of: "working_directory = \"\"") { rest.replaceSubrange(folder, with: "working_directory = \"\(work)\"") }
        rest = rest.replacingOccurrences(of: "[agent.\(adapter).environment]\n",
                                         with: "[agent.\(adapter).environment]\nSTANDIN_AGENT_STATE = \"\(state)\"\nSTANDIN_MARK = \"for \(name) only\"\n")
        text = String(text[..<section.upperBound]) + rest
        try text.write(toFile: journey.host + "/config.toml", atomically: true, encoding: .utf8)
        return (journey, state, work)
    }

    /// The stand-in's record of its runs: argv, cwd, the adapter-only variable.
    static func calls(_ state: String, _ name: String) throws -> [[String: Any]] {
        let text = (try? String(contentsOfFile: "\(state)/\(name)-calls.jsonl", encoding: .utf8)) ?? ""
        return try text.split(separator: "\n").map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    static func value(after option: String, in argv: [String]) -> String? {
        guard let index = argv.firstIndex(of: option), index + 1 < argv.count else { return nil }
        return argv[index + 1]
    }

    /// Where `pieces` stand in `text`, each after the one before; fails naming the first out of order.
    static func expectInOrder(_ text: String, _ pieces: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        var from = text.startIndex
        for piece in pieces {
            guard let found = text.range(of: piece, range: from..<text.endIndex) else {
                Issue.record("'\(piece)' is missing or out of order in: \(text)", sourceLocation: sourceLocation)
                return
            }
            from = found.upperBound
        }
    }

    @Test("Claude Code: steps stream as they happen and in order; the next task resumes the session; a new conversation starts afresh")
    func claudeCodeConversation() async throws {
        let (journey, state, work) = try await Self.journey(adapter: "claude-code", arguments: #"["--permission-mode", "acceptEdits"]"#)
        defer { Task { await journey.finish() } }
        try await journey.startHost()

        // The first task: the tool step reaches the phone while the agent still waits.
        let go = journey.folder.path("go")
        let waiting = try RunningProgram("errand", ["send", "--home", journey.phone, "--wait", "--timeout", "60", "--",
                                                    "remember the word banana\nrun: echo hello-from-the-tool\nwait-for: \(go)\nedit: notes.md"])
        // Each tool use waits for an answer from a device (see the approvals test).
        let bash = try await Self.pendingApproval(journey, home: journey.phone)
        #expect(bash["tool"] as? String == "Bash")
        try await journey.expectSuccess(["approve", "--home", journey.phone, try #require(bash["id"] as? String)])
        try await waiting.waitForOutput(containing: "↳ hello-from-the-tool")
        #expect(!waiting.output.contains("✓ done"), "the run had not ended yet: \(waiting.output)")
        #expect(!waiting.output.contains("Edit"))
        FileManager.default.createFile(atPath: go, contents: Data())
        let edit = try await Self.pendingApproval(journey, home: journey.phone)
        #expect(edit["tool"] as? String == "Edit")
        try await journey.expectSuccess(["approve", "--home", journey.phone, try #require(edit["id"] as? String)])
        let first = await waiting.finish(timeout: 60)
        #expect(first.status == 0, "\(first.output) \(first.errorOutput)")
        Self.expectInOrder(first.output, ["This conversation holds 0 earlier prompts.", "▸ Bash: echo hello-from-the-tool",
                                          "↳ hello-from-the-tool", "▸ Edit: notes.md", "↳ The file notes.md has been updated.",
                                          "All done.", "✓ done: 3 turns"])
        #expect(first.output.contains("$0.0036"))

        // The second continues the session: the agent remembers the first.
        let second = try await journey.sendAndWait(["what was the word?"])
        #expect(second["status"] as? String == "succeeded")
        #expect((second["output"] as? String)?.contains("holds 1 earlier prompt; the last was: remember the word banana.") == true,
                "\(second)")

        // A new conversation: a fresh session that remembers nothing.
        let third = try await journey.sendAndWait(["--new-conversation", "start over"])
        #expect(third["status"] as? String == "succeeded")
        #expect((third["output"] as? String)?.contains("holds 0 earlier prompts.") == true, "\(third)")
        let fourth = try await journey.sendAndWait(["and now?"])
        #expect((fourth["output"] as? String)?.contains("holds 1 earlier prompt; the last was: start over.") == true, "\(fourth)")

        // The command lines, as documented: --session-id for a new session, then --resume it.
        let calls = try Self.calls(state, "claude")
        try #require(calls.count == 4, "\(calls)")
        let argvs = calls.map { $0["argv"] as? [String] ?? [] }
        for argv in argvs {
            #expect(Array(argv.prefix(4)) == ["-p", "--output-format", "stream-json", "--verbose"], "\(argv)")
            #expect(argv.suffix(2) == ["--permission-mode", "acceptEdits"], "the configured arguments come last: \(argv)")
            // Permission prompts go to Errand's MCP tool, started as this host's approval tool.
            #expect(Self.value(after: "--permission-prompt-tool", in: argv) == "mcp__errand__approve")
            let configuration = try #require(Self.value(after: "--mcp-config", in: argv))
            #expect(configuration.contains("\"args\":[\"host\",\"approval-tool\",\"--home\",\"\(journey.host)\",\"--task\""), "\(configuration)")
        }
        let session = try #require(Self.value(after: "--session-id", in: argvs[0]))
        #expect(Self.value(after: "--resume", in: argvs[1]) == session)
        let fresh = try #require(Self.value(after: "--session-id", in: argvs[2]))
        #expect(fresh != session)
        #expect(Self.value(after: "--resume", in: argvs[3]) == fresh)
        for call in calls {
            #expect(call["cwd"] as? String == work)
            #expect(call["mark"] as? String == "for claude only")
        }

        // The history shows where the first conversation ended.
        let history = try await journey.expectSuccess(["history", "--home", journey.phone])
        Self.expectInOrder(history.output, ["remember the word banana", "what was the word?", "══ a new conversation with the agent begins ══",
                                            "start over", "and now?"])
        #expect(history.output.components(separatedBy: "a new conversation").count == 2)
        // --new-conversation is for the agent only.
        let refused = try await journey.errand(["send", "--home", journey.phone, "--new-conversation", "--action", "greet"])
        #expect(refused.status != 0)
        #expect(refused.errorOutput.contains("--new-conversation is for text to the agent"))
    }

    @Test("Claude Code's failures reach the phone with a reason: an error result, a crash, a line that is not JSON, a lost session, no program")
    func claudeCodeFailures() async throws {
        let (journey, state, _) = try await Self.journey(adapter: "claude-code")
        defer { Task { await journey.finish() } }
        try await journey.startHost()

        let failed = try await journey.sendAndWait(["try this\nfail"])
        #expect(failed["status"] as? String == "failed")
        #expect(failed["exitCode"] as? Int == 1)
        #expect((failed["reason"] as? String)?.contains("Claude Code exited with status 1: error_during_execution: Something went wrong.") == true,
                "\(failed)")
        #expect((failed["output"] as? String)?.contains("✗ error_during_execution") == true, "\(failed)")

        let crashed = try await journey.sendAndWait(["crash"])
        #expect(crashed["status"] as? String == "failed")
        #expect((crashed["reason"] as? String)?.contains("ended by signal 9") == true, "\(crashed)")

        // Not JSON: passed on as it came; the run still succeeds.
        let noisy = try await journey.sendAndWait(["noise"])
        #expect(noisy["status"] as? String == "succeeded", "\(noisy)")
        #expect((noisy["output"] as? String)?.contains("this is not JSON\n") == true)

        // The conversation's session vanished on the computer: the agent's own words say why.
        let calls = try Self.calls(state, "claude")
        let session = try #require(Self.value(after: "--session-id", in: calls[0]["argv"] as? [String] ?? []))
        try FileManager.default.removeItem(atPath: "\(state)/claude/\(session).json")
        let lost = try await journey.sendAndWait(["hello again"])
        #expect(lost["status"] as? String == "failed")
        #expect((lost["reason"] as? String)?.contains("No conversation found with session ID: \(session)") == true, "\(lost)")

        // No program: the task fails at once, saying what to install or set; nothing ran.
        await journey.stopHost()
        let config = journey.host + "/config.toml"
        let text = try String(contentsOfFile: config, encoding: .utf8)
        try text.replacingOccurrences(of: "program = \"\(Self.agents)/claude\"", with: "program = \"claude-is-not-installed\"")
            .write(toFile: config, atomically: true, encoding: .utf8)
        try await journey.startHost()
        let missing = try await journey.sendAndWait(["anyone there?"])
        #expect(missing["status"] as? String == "failed")
        #expect((missing["reason"] as? String)?.contains("Claude Code (claude-is-not-installed) is not on the host's PATH") == true, "\(missing)")
        #expect(try Self.calls(state, "claude").count == calls.count + 1)
    }

    @Test("Codex: exec --json, the next task resumes the thread; a failed turn and a refused folder are reported")
    func codexConversation() async throws {
        let (journey, state, work) = try await Self.journey(adapter: "codex", arguments: #"["--skip-git-repo-check"]"#)
        defer { Task { await journey.finish() } }
        try await journey.startHost()

        let first = try await journey.sendAndWait(["list the files\nrun: ls -d /\nedit: notes.md"])
        #expect(first["status"] as? String == "succeeded", "\(first)")
        Self.expectInOrder(first["output"] as? String ?? "", ["~ **Reading the request**", "▸ command: bash -lc ls -d /", "↳ /",
                                                              "▸ edit: update notes.md", "This thread holds 0 earlier prompts.",
                                                              "✓ done: 2400 tokens in, 120 out"])
        let second = try await journey.sendAndWait(["and then?\nrun: false"])
        #expect(second["status"] as? String == "succeeded", "\(second)")
        #expect((second["output"] as? String)?.contains("holds 1 earlier prompt; the last was: list the files.") == true, "\(second)")
        #expect((second["output"] as? String)?.contains("✗ exit 1: failed") == true, "\(second)")

        let calls = try Self.calls(state, "codex")
        try #require(calls.count == 2)
        let argvs = calls.map { $0["argv"] as? [String] ?? [] }
        #expect(argvs[0] == ["exec", "--json", "--skip-git-repo-check", "-"])
        let thread = try #require(argvs[1].count == 6 ? argvs[1][4] : nil, "\(argvs[1])")
        #expect(argvs[1] == ["exec", "--json", "--skip-git-repo-check", "resume", thread, "-"])
        #expect(calls.allSatisfy { $0["cwd"] as? String == work && $0["mark"] as? String == "for codex only" })

        let failed = try await journey.sendAndWait(["fail"])
        #expect(failed["status"] as? String == "failed")
        #expect((failed["reason"] as? String)?.contains("Codex exited with status 1: stream disconnected before completion") == true, "\(failed)")

        // Without --skip-git-repo-check, outside a repository Codex refuses; its words are the reason.
        await journey.stopHost()
        let config = journey.host + "/config.toml"
        let text = try String(contentsOfFile: config, encoding: .utf8)
        try text.replacingOccurrences(of: #"arguments = ["--skip-git-repo-check"]"#, with: "arguments = []")
            .write(toFile: config, atomically: true, encoding: .utf8)
        try await journey.startHost()
        let refused = try await journey.sendAndWait(["anything"])
        #expect(refused["status"] as? String == "failed")
        #expect((refused["reason"] as? String)?.contains("Not inside a trusted directory") == true, "\(refused)")
    }

    /// The approval request `home` lists, decoded, once it has come (it goes to each device on its own).
    static func pendingApproval(_ journey: Journey, home: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let listed = try await journey.expectSuccess(["approvals", "--home", home, "--json"])
            let all = try #require(JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]], "\(listed.output)")
            if let first = all.first { return first }
            guard ContinuousClock.now < deadline else { throw TestFailure("no approval listed on \(home): \(listed.output) \(listed.errorOutput)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test("Approvals: Claude Code asks through Errand's MCP tool; allow runs the tool, deny does not; of two devices answering at once one counts; a device without the right, a revoked device and the timeout cannot allow")
    func approvals() async throws {
        let (journey, _, work) = try await Self.journey(adapter: "claude-code")
        defer { Task { await journey.finish() } }
        let tablet = journey.folder.path("tablet")
        try await journey.pair(tablet, name: "tablet")
        let config = journey.host + "/config.toml"
        var text = try String(contentsOfFile: config, encoding: .utf8)
        let section = try #require(text.range(of: "[approvals]"))
        let timeout = try #require(text.range(of: "timeout_seconds = 600", range: section.upperBound..<text.endIndex))
        text.replaceSubrange(timeout, with: "timeout_seconds = 8")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try await journey.startHost()

        /// Sends `text` with --wait from the phone; returns it once the phone was told of the request.
        func ask(_ text: String) async throws -> RunningProgram {
            let waiting = try RunningProgram("errand", ["send", "--home", journey.phone, "--wait", "--timeout", "60", "--", text])
            let deadline = ContinuousClock.now + .seconds(30)
            while !waiting.errorOutput.contains("answer with 'errand approve") {
                guard ContinuousClock.now < deadline else { throw TestFailure("no approval request shown: \(waiting.output) \(waiting.errorOutput)") }
                try await Task.sleep(for: .milliseconds(50))
            }
            return waiting
        }

        // Allowed from the tablet: the tool runs, and the phone's later answer does not count.
        let allowed = try await ask("run: touch \(work)/allowed")
        #expect(allowed.errorOutput.contains("studio wants to use Bash: touch \(work)/allowed"), "\(allowed.errorOutput)")
        let first = try await Self.pendingApproval(journey, home: tablet)
        let id = try #require(first["id"] as? String)
        #expect(first["tool"] as? String == "Bash")
        #expect((first["input"] as? String)?.contains("\"command\":\"touch \(work)/allowed\"") == true, "\(first)")
        // Both devices answer at once, one allows and one denies: exactly one answer counts, the
        // other is told it came second, and the tool ran exactly when the allow won.
        async let fromTablet = journey.errand(["approve", "--home", tablet, String(id.prefix(8))])
        async let fromPhone = journey.errand(["approve", "--home", journey.phone, "--deny", String(id.prefix(8))])
        let (tabletAnswer, phoneAnswer) = try await (fromTablet, fromPhone)
        #expect([tabletAnswer.status, phoneAnswer.status].filter { $0 == 0 }.count == 1, "\(tabletAnswer.output) | \(phoneAnswer.output)")
        let allowWon = tabletAnswer.status == 0
        let loser = allowWon ? phoneAnswer : tabletAnswer
        #expect(loser.output.contains(allowWon ? "allowed by tablet" : "denied by phone"), "\(loser.output)")
        let allowedRun = await allowed.finish()
        #expect(allowedRun.status == 0, "\(allowedRun.output) \(allowedRun.errorOutput)")
        #expect(FileManager.default.fileExists(atPath: "\(work)/allowed") == allowWon)
        #expect(allowedRun.output.contains(allowWon ? "↳ (no output)" : "✗ denied from phone"), "\(allowedRun.output)")
        // A late answer, once both know the outcome, is refused at once.
        let late = try await journey.errand(["approve", "--home", journey.phone, String(id.prefix(8))])
        #expect(late.status != 0)
        #expect(late.output.contains("already answered"), "\(late.output)")

        // Denied from the phone, with a message the agent gets: the tool does not run.
        let denied = try await ask("run: touch \(work)/denied")
        let second = try await Self.pendingApproval(journey, home: journey.phone)
        let refusal = try await journey.expectSuccess(["approve", "--home", journey.phone, try #require(second["id"] as? String), "--deny", "--message", "not now"])
        #expect(refusal.output.contains("denied by phone"), "\(refusal.output)")
        let deniedRun = await denied.finish()
        #expect(deniedRun.output.contains("✗ denied from phone: not now"), "\(deniedRun.output)")
        #expect(!FileManager.default.fileExists(atPath: "\(work)/denied"))

        // A device whose policy lacks approvals is told so; the request still waits for another.
        try await journey.expectSuccess(["host", "policy", "--home", journey.host, "tablet", "--approve", "no"])
        let unallowed = try await ask("run: touch \(work)/unallowed")
        // (The tablet is no longer sent requests: it answers with the id the phone shows.)
        let third = try #require(try await Self.pendingApproval(journey, home: journey.phone)["id"] as? String)
        let refused = try await journey.errand(["approve", "--home", tablet, third])
        #expect(refused.status != 0)
        #expect(refused.output.contains("did not count: this device may not answer approval requests"), "\(refused.output)")
        #expect(!FileManager.default.fileExists(atPath: "\(work)/unallowed"))
        try await journey.expectSuccess(["approve", "--home", journey.phone, third])
        #expect(await unallowed.finish().status == 0)
        #expect(FileManager.default.fileExists(atPath: "\(work)/unallowed"))

        // A revoked device's answer never reaches the host; with no other answer the timeout denies.
        try await journey.expectSuccess(["host", "policy", "--home", journey.host, "tablet", "--approve", "yes"])
        try await journey.expectSuccess(["host", "revoke", "--home", journey.host, "tablet"])
        let unanswered = try await ask("run: touch \(work)/unanswered")
        let fourth = try #require(try await Self.pendingApproval(journey, home: journey.phone)["id"] as? String)
        let revoked = try await journey.errand(["approve", "--home", tablet, fourth])
        #expect(!revoked.output.contains("allowed"), "\(revoked.output)")
        let unansweredRun = await unanswered.finish()
        #expect(unansweredRun.output.contains("✗ no answer within 8 seconds"), "\(unansweredRun.output)")
        #expect(!FileManager.default.fileExists(atPath: "\(work)/unanswered"))
        let hostLog = journey.hostAgent?.output ?? ""
        #expect(hostLog.contains("approval \(fourth.prefix(8)) denied: no answer within 8 seconds"), "\(hostLog)")
        #expect(hostLog.contains("approval \(id.prefix(8)) allowed by tablet") || hostLog.contains("approval \(id.prefix(8)) denied by phone"))
        // The host's own record of every request and answer.
        let recorded = try await journey.expectSuccess(["host", "log", "--home", journey.host, "--approvals", "--json"])
        let records = try #require(JSONSerialization.jsonObject(with: Data(recorded.output.utf8)) as? [[String: Any]])
        #expect(records.map { $0["status"] as? String }.dropFirst() == ["denied", "allowed", "denied"], "\(records)")
        #expect(records.map { $0["answeredBy"] as? String }.dropFirst() == ["phone", "phone", nil])
        #expect(records.allSatisfy { $0["tool"] as? String == "Bash" })
    }

    @Test("While a task runs the computer is kept from sleeping; after it, not")
    func keptAwake() async throws {
        // A stand-in systemd-inhibit first on the host's PATH: it records how it was called and
        // runs the command it holds the lock for.
        let journey = try await Journey()
        defer { Task { await journey.finish() } }
        let bin = journey.folder.path("bin"), record = journey.folder.path("inhibit")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try journey.write(bin + "/systemd-inhibit", """
            #!/bin/sh
            echo "$$ $*" >> \(record)
            while [ "${1#--}" != "$1" ]; do shift; done
            exec "$@"
            """)
        let go = journey.folder.path("go")
        try journey.write(journey.host + "/actions/hold", "#!/bin/sh\n# description: Waits for a file\nwhile [ ! -e \(go) ]; do sleep 0.05; done\necho held\n")
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        try await journey.startHost(environment: ["PATH": path])
        let sent = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "hold"])
        #expect(!sent.output.isEmpty)
        try await eventually("the inhibitor started") { (try? String(contentsOfFile: record, encoding: .utf8))?.contains("--mode=block") == true }
        let line = try String(contentsOfFile: record, encoding: .utf8)
        #expect(line.contains("--what=sleep:idle --who=Errand"), "\(line)")
        let pid = try #require(line.split(separator: " ").first.flatMap { pid_t($0) })
        #expect(kill(pid, 0) == 0, "the inhibitor runs while the task does")
        FileManager.default.createFile(atPath: go, contents: Data())
        try await eventually("the inhibitor ended after the task") { kill(pid, 0) != 0 }
        // One inhibitor for that task, none left.
        #expect(try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").count == 1)
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Waits up to 30 s for `condition`; records a failure naming `what` when it never holds.
    func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("never: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
