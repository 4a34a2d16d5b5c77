import ErrandTestSupport
import Foundation
import Testing

/// A relay, a host with an agent script and actions, and a paired companion — all real processes.
final class Journey: @unchecked Sendable {
    let folder: ScratchFolder
    var relay: RelayProcess
    var hostAgent: RunningProgram?
    var host: String { folder.path("host") }
    var phone: String { folder.path("phone") }
    /// With several relay nodes: the PostgreSQL database they share, the other nodes, and the
    /// node the phone reaches (the host uses `relay`).
    var database: String?
    var otherNodes: [RelayProcess] = []
    var phoneRelay: String?
    /// `--relay NODE` for the phone's commands when it uses another node than the host.
    var phoneRelayArguments: [String] { phoneRelay.map { ["--relay", $0] } ?? [] }

    /// Sets everything up; `config` replaces lines of the host's config.toml (key → value).
    /// With `nodes` > 1 the relay is that many nodes on one PostgreSQL database; the host uses
    /// the first and the phone the second.
    init(config: [String: String] = [:], nodes: Int = 1, relayEnvironment: [String: String] = [:]) async throws {
        folder = try ScratchFolder()
        if nodes > 1 {
            let database = try await TestPostgres.freshDatabase()
            let started = try await RelayProcess.startNodes(nodes, database: database, root: folder.path("relay"))
            self.database = database
            relay = started[0]
            otherNodes = Array(started.dropFirst())
            phoneRelay = started[1].baseURL
        } else {
            relay = try await RelayProcess.start(data: folder.path("relay"), arguments: ["--open-registration"], environment: relayEnvironment)
        }
        try await expectSuccess(["host", "init", "--home", host, "--relay", relay.baseURL, "--name", "studio"])
        // An agent that echoes its input line by line, with pauses, so streaming can be seen in order.
        try write(folder.path("agent.sh"), """
            #!/bin/sh
            echo "agent started for $ERRAND_DEVICE in conversation $ERRAND_CONVERSATION"
            while IFS= read -r line || [ -n "$line" ]; do echo "step: $line …"; sleep 0.2; done
            echo "agent finished ✓"
            """)
        try write(host + "/actions/greet", "#!/bin/sh\n# description: Greets whoever is named\necho \"hello, $1 and $2\"\n")
        try write(host + "/actions/nap", "#!/bin/sh\n# description: Sleeps for a while\necho napping\nsleep \"${1:-30}\"\necho awake\n")
        try write(host + "/actions/chatty", "#!/bin/sh\n# description: Prints a lot\nhead -c 5000 /dev/zero | tr '\\0' x\necho\n")
        try write(host + "/actions/touch", "#!/bin/sh\n# description: Leaves a mark\ntouch \"$1\"\n")
        try write(host + "/actions/args", "#!/bin/sh\n# description: Lists its arguments\nfor a in \"$@\"; do echo \"arg: $a\"; done\n")
        try write(host + "/actions/background", "#!/bin/sh\n# description: Leaves a child running\nsleep 60 &\necho started\n")
        try write(folder.path("args.sh"), "#!/bin/sh\nfor a in \"$@\"; do echo \"arg: $a\"; done\n")
        var settings = ["command": "[\"\(folder.path("agent.sh"))\"]"]
        settings.merge(config) { $1 }
        var text = try String(contentsOfFile: host + "/config.toml", encoding: .utf8)
        for (key, value) in settings {
            text = text.replacingOccurrences(of: #"(?m)^\#(key) = .*$"#, with: "\(key) = \(value)", options: .regularExpression)
        }
        try text.write(toFile: host + "/config.toml", atomically: true, encoding: .utf8)
        try await pair(phone, name: "phone")
    }

    func write(_ path: String, _ text: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o700)
    }

    func pair(_ home: String, name: String) async throws {
        let pairing = try RunningProgram("errand", ["host", "pair", "--home", host, "--terminal", "none", "--png", folder.path("\(name).png"), "--yes"])
        try await pairing.waitForOutput(containing: "Waiting for a device")
        try await expectSuccess(["pair", "--home", home, "--name", name, "--yes", "--image", folder.path("\(name).png")] + phoneRelayArguments)
        #expect(await pairing.finish().status == 0)
    }

    /// Starts `errand host run`; `environment` is added to the host's own.
    func startHost(environment: [String: String] = [:]) async throws {
        let agent = try RunningProgram("errand", ["host", "run", "--home", host, "--relay", relay.baseURL], environment: environment)
        try await agent.waitForOutput(containing: "waiting for tasks")
        hostAgent = agent
    }

    func stopHost() async {
        guard let agent = hostAgent else { return }
        kill(agent.process.processIdentifier, SIGTERM)
        _ = await agent.finish(timeout: 20)
        hostAgent = nil
    }

    @discardableResult
    func errand(_ arguments: [String], input: String? = nil) async throws -> CommandResult {
        try await runAsync("errand", arguments, input: input)
    }

    @discardableResult
    func expectSuccess(_ arguments: [String]) async throws -> CommandResult {
        let result = try await errand(arguments)
        #expect(result.status == 0, "errand \(arguments.joined(separator: " ")): \(result.errorOutput)")
        return result
    }

    /// `errand send --wait --json …` from `home`, decoded.
    func sendAndWait(_ arguments: [String], home: String? = nil) async throws -> [String: Any] {
        let result = try await errand(["send", "--home", home ?? phone, "--wait", "--json", "--timeout", "60"] + phoneRelayArguments + arguments)
        let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        return try #require(object, "no JSON from send: \(result.output) \(result.errorOutput)")
    }

    /// Stops the host and every relay node, and drops the shared database if there is one.
    func finish() async {
        await stopHost()
        await relay.stop()
        for node in otherNodes { await node.stop() }
        if let database { await TestPostgres.drop(database) }
    }

    deinit { if let agent = hostAgent { kill(agent.process.processIdentifier, SIGKILL) } }
}

@Suite("Tasks from a companion to the host agent, end to end")
struct ConversationCommandTests {
    @Test("send --help shows the help, wherever it stands, and says how options and words mix")
    func sendHelp() async throws {
        let home = try ScratchFolder().path
        for arguments in [["send", "--help"], ["send", "some", "text", "--help"], ["send", "--action", "greet", "-h"]] {
            let result = try await runAsync("errand", arguments, environment: ["ERRAND_HOME": home])
            #expect(result.status == 0, "\(arguments): \(result.errorOutput)")
            #expect(result.output.contains("USAGE: errand send"), "\(arguments)")
            // The help is wrapped to the terminal's width: compare words, not lines.
            let words = result.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(words.contains("errand send --action grep -- -n TODO"), "\(arguments)")
        }
    }

    @Test("send: its options count wherever they stand; '--' ends them; an unknown option is refused and nothing is sent")
    func sendOptionOrder() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        let phone = journey.phone

        /// One `errand send …` that must print one JSON object with the task's whole result.
        func result(_ arguments: [String]) async throws -> [String: Any] {
            let run = try await journey.expectSuccess(["send"] + arguments)
            let object = try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any]
            let decoded = try #require(object, "errand send \(arguments.joined(separator: " ")) printed no JSON: \(run.output)")
            #expect(decoded["status"] as? String == "succeeded", "\(arguments): \(decoded)")
            return decoded
        }

        // The README's own order: the action's argument first, then the options.
        let readme = try await result(["--home", phone, "--action", "args", "/", "--wait", "--json"])
        #expect(readme["output"] as? String == "arg: /\n")
        // Options before, between and after the arguments.
        let mixed = try await result(["--action", "greet", "--wait", "Ada", "--home", phone, "Grace", "--json", "--timeout", "60"])
        #expect(mixed["output"] as? String == "hello, Ada and Grace\n")
        let first = try await result(["--wait", "--json", "--home", phone, "--timeout", "60", "--action", "greet", "Ada", "Grace"])
        #expect(first["output"] as? String == "hello, Ada and Grace\n")
        // After '--' every word is an argument, even one that looks like an option of send.
        let literal = try await result(["--home", phone, "--wait", "--json", "--action", "args", "--", "-n", "TODO", "--wait"])
        #expect(literal["output"] as? String == "arg: -n\narg: TODO\narg: --wait\n")
        // The same rule for the agent's text.
        let text = try await result(["fix", "--wait", "the", "--home", phone, "bug", "--json"])
        #expect((text["output"] as? String)?.contains("step: fix the bug …\n") == true)
        let dashed = try await result(["--home", phone, "--wait", "--json", "--", "--verbose", "please"])
        #expect((dashed["output"] as? String)?.contains("step: --verbose please …\n") == true)

        // Without '--', a word like an option that send does not know is an error, with the way out; nothing is sent.
        let before = try await journey.expectSuccess(["history", "--home", phone, "--offline", "--json"])
        for arguments in [["--action", "args", "-n", "TODO"], ["--wiat", "fix the bug"]] {
            let refused = try await journey.errand(["send", "--home", phone] + arguments)
            #expect(refused.status != 0)
            #expect(refused.errorOutput.contains("Unknown option"), "\(refused.errorOutput)")
            #expect(refused.errorOutput.contains("errand: hint: words that start with '-' go after '--'"), "\(refused.errorOutput)")
            #expect(refused.output.isEmpty)
        }
        let after = try await journey.expectSuccess(["history", "--home", phone, "--offline", "--json"])
        let count = { (run: CommandResult) in
            ((try? JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])?["tasks"] as? [Any])?.count
        }
        #expect(count(before) == 6)
        #expect(count(after) == count(before))
        await journey.finish()
    }

    @Test("Text goes to the agent; its output streams back in order; history and the host's log record it")
    func agentTask() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        let streamed = try await journey.errand(["send", "--home", journey.phone, "--wait", "first line\nsecond line\nthird line"])
        #expect(streamed.status == 0, "\(streamed.errorOutput)")
        let lines = streamed.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("agent started for phone in conversation ") == true)
        // Multi-byte characters in every piece: the stream must stay whole and in order.
        #expect(Array(lines.dropFirst()) == ["step: first line …", "step: second line …", "step: third line …", "agent finished ✓"])
        #expect(streamed.errorOutput.contains("succeeded (exit 0)"))

        let result = try await journey.sendAndWait(["one more"])
        #expect(result["status"] as? String == "succeeded")
        #expect(result["exitCode"] as? Int == 0)
        #expect((result["output"] as? String)?.hasSuffix("step: one more …\nagent finished ✓\n") == true)
        let task = try #require(result["task"] as? String)

        let history = try await journey.expectSuccess(["history", "--home", journey.phone, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any]
        #expect(object?["synced"] as? Bool == true)
        let tasks = object?["tasks"] as? [[String: Any]]
        #expect(tasks?.count == 2)
        #expect(tasks?.last?["task"] as? String == task)
        let log = try await journey.expectSuccess(["host", "log", "--home", journey.host, "--json"])
        let entries = try JSONSerialization.jsonObject(with: Data(log.output.utf8)) as? [[String: Any]]
        #expect(entries?.count == 2)
        #expect(entries?.last?["task"] as? String == task)
        #expect(entries?.last?["device"] as? String == "phone")
        #expect((entries?.last?["outputSHA256"] as? String)?.count == 64)
    }

    @Test("Escape sequences in task text and output are shown, never acted on: send, history, host log, the host's own log")
    func controlCharacters() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        let hostile = "\u{1B}]0;pwned\u{07}title\rSECURITY: forged"
        let streamed = try await journey.errand(["send", "--home", journey.phone, "--wait", hostile])
        #expect(streamed.status == 0, "\(streamed.errorOutput)")
        let history = try await journey.expectSuccess(["history", "--home", journey.phone])
        let log = try await journey.expectSuccess(["host", "log", "--home", journey.host])
        // JSON keeps the text exactly as sent.
        let json = try await journey.sendAndWait([hostile])
        #expect((json["output"] as? String)?.contains("step: " + hostile + " …") == true)
        let agent = journey.hostAgent
        await journey.stopHost()
        let hostOutput = agent?.output ?? ""
        for (name, text) in [("send", streamed.output), ("history", history.output), ("host log", log.output), ("host run", hostOutput)] {
            #expect(!text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x0D }, "\(name): \(text.debugDescription)")
        }
        #expect(streamed.output.contains(#"step: \x1B]0;pwned\x07title\x0DSECURITY: forged …"#), "\(streamed.output.debugDescription)")
        #expect(history.output.contains(#"\x1B]0;pwned\x07title\x0DSECURITY: forged"#))
        // No line of the history or the host's log begins with text the device chose.
        #expect(!history.output.split(separator: "\n").contains { $0.hasPrefix("SECURITY") })
        #expect(!log.output.split(separator: "\n").contains { $0.hasPrefix("SECURITY") })
        await journey.finish()
    }

    @Test("Text as an argument cannot pass for an option; default executors apply to new devices")
    func agentArguments() async throws {
        let journey = try await Journey(config: ["input": "\"argument\"", "default_executors": "[\"action\"]"])
        var text = try String(contentsOfFile: journey.host + "/config.toml", encoding: .utf8)
        text = text.replacingOccurrences(of: journey.folder.path("agent.sh"), with: journey.folder.path("args.sh"))
        try text.write(toFile: journey.host + "/config.toml", atomically: true, encoding: .utf8)
        try await journey.startHost()
        // The phone was paired under default_executors = ["action"]: no agent.
        let refused = try await journey.sendAndWait(["--", "--dangerously-skip-everything"])
        #expect(refused["status"] as? String == "refused")
        try await journey.expectSuccess(["host", "policy", "--home", journey.host, "phone", "--executors", "agent,action"])
        let result = try await journey.sendAndWait(["--", "--dangerously-skip-everything"])
        #expect(result["status"] as? String == "succeeded")
        #expect(result["output"] as? String == "arg: --\narg: --dangerously-skip-everything\n")
    }

    @Test("History: a task too large for one history page arrives cut, and the sync still completes with every task")
    func largeHistoryEntry() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        // 9,000 control characters: about 54 KB of JSON in the request, and 4 KiB of them in the output (24 KB).
        let control = String(repeating: "\u{1}", count: 9_000)
        let big = try await journey.sendAndWait(["--action", "args", "--", control])
        #expect(big["status"] as? String == "succeeded")
        let small = try await journey.sendAndWait(["--action", "greet", "Ada", "Grace"])
        #expect(small["status"] as? String == "succeeded")
        // Another device knows the conversation only from the host's pages.
        let tablet = journey.folder.path("tablet")
        try await journey.pair(tablet, name: "tablet")
        let history = try await journey.expectSuccess(["history", "--home", tablet, "--json", "--timeout", "30"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any])
        #expect(object["synced"] as? Bool == true, "\(history.errorOutput)")
        let tasks = try #require(object["tasks"] as? [[String: Any]])
        #expect(tasks.map { $0["task"] as? String } == [big["task"] as? String, small["task"] as? String])
        #expect(tasks.first?["truncated"] as? Bool == true)
        await journey.finish()
    }

    @Test("Actions: listed with descriptions, run with arguments; unknown actions are refused")
    func actions() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        let listed = try await journey.expectSuccess(["actions", "--home", journey.phone])
        #expect(listed.output.contains("greet"))
        #expect(listed.output.contains("Greets whoever is named"))
        let result = try await journey.sendAndWait(["--action", "greet", "Ada", "Grace"])
        #expect(result["status"] as? String == "succeeded")
        #expect(result["output"] as? String == "hello, Ada and Grace\n")
        let unknown = try await journey.sendAndWait(["--action", "format-disk"])
        #expect(unknown["status"] as? String == "refused")
        #expect((unknown["reason"] as? String)?.contains("no action called format-disk") == true)
    }

    @Test("Shell is refused by default — nothing runs — and works once the device is granted it")
    func shellPolicy() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        let mark = journey.folder.path("shell-ran")
        let refused = try await journey.sendAndWait(["--shell", "touch \(mark)"])
        #expect(refused["status"] as? String == "refused")
        #expect(!FileManager.default.fileExists(atPath: mark))
        try await journey.expectSuccess(["host", "policy", "--home", journey.host, "phone", "--executors", "agent,action,shell"])
        let allowed = try await journey.sendAndWait(["--shell", "touch \(mark) && echo made"])
        #expect(allowed["status"] as? String == "succeeded")
        #expect(FileManager.default.fileExists(atPath: mark))
        // The conversation shows both, the refused one with no output.
        let history = try await journey.expectSuccess(["history", "--home", journey.phone, "--json"])
        let tasks = (try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any])?["tasks"] as? [[String: Any]]
        #expect(tasks?.map { $0["status"] as? String } == ["refused", "succeeded"])
        #expect((try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any])?["synced"] as? Bool == true)
    }

    @Test("Cancel a long task; a task past the timeout is stopped; output past the cap is cut with a marker")
    func limits() async throws {
        // The timeout leaves the cancel below (on a loaded machine) time to arrive first.
        let journey = try await Journey(config: ["timeout_seconds": "6", "output_cap_bytes": "1024"])
        try await journey.startHost()
        let sent = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "nap", "30"])
        let task = sent.output.trimmingCharacters(in: .whitespacesAndNewlines)
        try await Task.sleep(for: .milliseconds(500))
        let cancelled = try await journey.expectSuccess(["cancel", "--home", journey.phone, task])
        #expect(cancelled.output.contains("cancelled"), "\(cancelled.output)")

        let slow = try await journey.sendAndWait(["--action", "nap", "30"])
        #expect(slow["status"] as? String == "timedOut")
        #expect((slow["output"] as? String)?.contains("napping") == true)

        // A child left running in the background neither keeps the task running nor outlives it.
        let started = ContinuousClock.now
        let background = try await journey.sendAndWait(["--action", "background"])
        #expect(background["status"] as? String == "succeeded")
        // A stall bound well below the child's 60 s, not a speed check.
        #expect(ContinuousClock.now - started < .seconds(30))

        let chatty = try await journey.sendAndWait(["--action", "chatty"])
        #expect(chatty["truncated"] as? Bool == true)
        let output = try #require(chatty["output"] as? String)
        #expect(output.hasPrefix(String(repeating: "x", count: 1024)))
        #expect(output.contains("output truncated"))
        #expect(output.utf8.count < 1200)
    }

    @Test("Host restarted mid-task: the running task is reported interrupted, the queued one still runs; one agent per folder")
    func restart() async throws {
        let journey = try await Journey(config: ["concurrency": "1"])
        try await journey.startHost()
        let another = try await journey.errand(["host", "run", "--home", journey.host])
        #expect(another.status == 1)
        #expect(another.errorOutput.contains("already running"))
        let long = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "nap", "30"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let queued = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "greet", "a", "b"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        try await journey.hostAgent!.waitForOutput(containing: "queued task \(queued.prefix(8))")
        await journey.stopHost()
        try await journey.startHost()
        let first = try await journey.errand(["follow", "--home", journey.phone, "--json", "--timeout", "30", long])
        #expect((try JSONSerialization.jsonObject(with: Data(first.output.utf8)) as? [String: Any])?["status"] as? String == "interrupted", "\(first.output)")
        let second = try await journey.errand(["follow", "--home", journey.phone, "--json", "--timeout", "30", queued])
        let result = try JSONSerialization.jsonObject(with: Data(second.output.utf8)) as? [String: Any]
        #expect(result?["status"] as? String == "succeeded")
        #expect(result?["output"] as? String == "hello, a and b\n")
    }

    @Test("Offline: a task sent while the host is down runs when it is back; the result waits for the companion")
    func hostOffline() async throws {
        let journey = try await Journey()
        let sent = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "greet", "x", "y"])
        let task = sent.output.trimmingCharacters(in: .whitespacesAndNewlines)
        try await journey.startHost()
        try await journey.hostAgent!.waitForOutput(containing: "task \(task.prefix(8)) succeeded")
        await journey.stopHost()
        // The companion was away the whole time: the result is waiting at the relay.
        let followed = try await journey.errand(["follow", "--home", journey.phone, "--json", task])
        let result = try JSONSerialization.jsonObject(with: Data(followed.output.utf8)) as? [String: Any]
        #expect(result?["status"] as? String == "succeeded")
        #expect(result?["output"] as? String == "hello, x and y\n")
    }

    @Test("Relay down at send time: the task waits in the outbox and goes when the relay is back")
    func relayDown() async throws {
        let journey = try await Journey()
        await journey.relay.stop()
        let sent = try await journey.errand(["send", "--home", journey.phone, "--action", "greet", "p", "q"])
        #expect(sent.status == 0)
        #expect(sent.errorOutput.contains("outbox"))
        let task = sent.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let status = try await journey.errand(["status", "--home", journey.phone, "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any])?["outbox"] as? Int == 1)
        // The relay comes back (same data, a new port): the next command delivers the outbox.
        journey.relay = try await RelayProcess.start(data: journey.folder.path("relay"), arguments: ["--open-registration"])
        try await journey.startHost()
        let followed = try await journey.errand(["follow", "--home", journey.phone, "--relay", journey.relay.baseURL, "--json", "--timeout", "30", task])
        let result = try JSONSerialization.jsonObject(with: Data(followed.output.utf8)) as? [String: Any]
        #expect(result?["status"] as? String == "succeeded", "\(followed.output) \(followed.errorOutput)")
    }

    @Test("A revoked device is refused and nothing it sends runs; two companions share one conversation")
    func devices() async throws {
        let journey = try await Journey()
        let laptop = journey.folder.path("laptop")
        try await journey.pair(laptop, name: "laptop")
        try await journey.startHost()
        let fromPhone = try await journey.sendAndWait(["--action", "greet", "from", "phone"])
        #expect(fromPhone["status"] as? String == "succeeded")
        let history = try await journey.expectSuccess(["history", "--home", laptop, "--json"])
        let tasks = (try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [String: Any])?["tasks"] as? [[String: Any]]
        #expect(tasks?.count == 1)
        #expect(tasks?.first?["device"] as? String == "phone")
        #expect(tasks?.first?["output"] as? String == "hello, from and phone\n")

        try await journey.expectSuccess(["host", "revoke", "--home", journey.host, "phone"])
        let mark = journey.folder.path("revoked-ran")
        let refused = try await journey.errand(["send", "--home", journey.phone, "--action", "touch", mark])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("revoked"))
        try await Task.sleep(for: .milliseconds(500))
        #expect(!FileManager.default.fileExists(atPath: mark))
        let fromLaptop = try await journey.sendAndWait(["--action", "greet", "still", "fine"], home: laptop)
        #expect(fromLaptop["status"] as? String == "succeeded")
    }
}
