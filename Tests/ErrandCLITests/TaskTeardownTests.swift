import ErrandTestSupport
import Foundation
import Testing

/// What a task leaves running ends with it: when it finishes, when its device is revoked, and
/// when the host that ran it was killed (at the next start). Linux: it needs /proc.
@Suite("Task teardown", .enabled(if: FileManager.default.fileExists(atPath: "/proc/self/environ")))
struct TaskTeardownTests {
    /// Starts children three ways and writes their pids into the folder given as $1: one in the
    /// background, one detached from the output, one in a session of its own; then waits (`hold`)
    /// or exits at once (`leave`).
    static func script(waits: Bool) -> String {
        """
        #!/bin/sh
        # description: Leaves children behind
        echo $$ > "$1/main"
        sleep 300 &
        echo $! > "$1/background"
        sleep 300 </dev/null >/dev/null 2>&1 &
        echo $! > "$1/detached"
        setsid sleep 300 &
        echo $! > "$1/session"
        echo started
        \(waits ? "wait" : "")
        """
    }

    static let names = ["main", "background", "detached", "session"]

    func setUp() async throws -> (Journey, String) {
        let journey = try await Journey()
        try journey.write(journey.host + "/actions/leave", Self.script(waits: false))
        try journey.write(journey.host + "/actions/hold", Self.script(waits: true))
        let pids = journey.folder.path("pids")
        try FileManager.default.createDirectory(atPath: pids, withIntermediateDirectories: true)
        return (journey, pids)
    }

    /// A running host with the `hold` action started: the journey, the task and its processes.
    func startHolding() async throws -> (Journey, String, [String: pid_t]) {
        let (journey, folder) = try await setUp()
        try await journey.startHost()
        let task = try await journey.expectSuccess(["send", "--home", journey.phone, "--action", "hold", folder])
            .output.trimmingCharacters(in: .whitespacesAndNewlines)
        return (journey, task, try await pids(in: folder))
    }

    /// The pids the script wrote, once all four are there.
    func pids(in folder: String) async throws -> [String: pid_t] {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let found = Self.names.compactMap { name in
                (try? String(contentsOfFile: "\(folder)/\(name)", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                    .map { (name, $0) }
            }
            if found.count == Self.names.count { return Dictionary(uniqueKeysWithValues: found) }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("the action did not write its children's pids")
    }

    /// Processes still there. A zombie counts when `zombies` (nobody reaped it) — not for the
    /// children of a killed host, which go to init (a container's init may never reap).
    func present(_ pids: [String: pid_t], zombies: Bool = true) -> [String] {
        pids.filter { _, pid in
            guard kill(pid, 0) == 0 || errno != ESRCH else { return false }
            if zombies { return true }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            return stat.split(separator: ")").last?.split(separator: " ").first != "Z"
        }.keys.sorted()
    }

    func waitUntilGone(_ pids: [String: pid_t], within seconds: Double = 10, zombies: Bool = true) async throws -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        while !present(pids, zombies: zombies).isEmpty && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return present(pids, zombies: zombies)
    }

    @Test("A finished task's children — in the background, detached, or in a session of their own — end with it and are reaped")
    func finished() async throws {
        let (journey, folder) = try await setUp()
        try await journey.startHost()
        let started = ContinuousClock.now
        let result = try await journey.sendAndWait(["--action", "leave", folder])
        #expect(result["status"] as? String == "succeeded", "\(result)")
        #expect(ContinuousClock.now - started < .seconds(15), "the task was kept running by its children")
        let pids = try await pids(in: folder)
        #expect(try await waitUntilGone(pids) == [], "left running after the task ended")
        // Nor does a task get any of the host's open files (its relay connections, its database).
        try journey.write(journey.host + "/actions/files", "#!/bin/sh\n# description: Lists its open files\nfor f in /proc/$$/fd/*; do readlink \"$f\"; done\n")
        let files = try #require(try await journey.sendAndWait(["--action", "files"])["output"] as? String)
        #expect(!files.contains("socket:") && !files.contains("anon_inode") && !files.contains(".sqlite"), "\(files)")
        #expect(files.contains("pipe:"), "\(files)")
        await journey.stopHost()
    }

    @Test("Revoking a device stops its running task and everything it started, at once")
    func revoked() async throws {
        let (journey, task, pids) = try await startHolding()
        #expect(present(pids) == Self.names.sorted(), "the task's processes did not start")
        try await journey.expectSuccess(["host", "revoke", "--home", journey.host, "phone"])
        try await journey.hostAgent!.waitForOutput(containing: "task \(task.prefix(8)) cancelled", timeout: 15)
        #expect(journey.hostAgent!.output.contains("stopping task \(task.prefix(8)): its device was revoked"))
        #expect(try await waitUntilGone(pids) == [], "left running after the revocation")
        let log = try await journey.expectSuccess(["host", "log", "--home", journey.host, "--json"])
        #expect(log.output.contains("cancelled"), "\(log.output)")
        await journey.stopHost()
    }

    @Test("A host killed mid-task: at its next start the task's processes are ended, then it is reported interrupted")
    func hostKilled() async throws {
        let (journey, task, pids) = try await startHolding()
        try await journey.hostAgent!.waitForOutput(containing: "running task \(task.prefix(8))")
        let agent = journey.hostAgent!
        kill(agent.process.processIdentifier, SIGKILL)
        _ = await agent.finish(timeout: 20)
        journey.hostAgent = nil
        // Nothing supervises them now: they run on (this is what the next start must clean up).
        #expect(present(pids).contains("session"), "the detached child did not survive the host, so this test proves nothing")
        try await journey.startHost()
        #expect(try await waitUntilGone(pids, zombies: false) == [], "left running after the host restarted")
        let followed = try await journey.errand(["follow", "--home", journey.phone, "--json", "--timeout", "30", task])
        let result = try JSONSerialization.jsonObject(with: Data(followed.output.utf8)) as? [String: Any]
        #expect(result?["status"] as? String == "interrupted", "\(followed.output)")
        await journey.stopHost()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
