import ErrandTestSupport
import Foundation
import Testing

@Suite("errand audit verify against a real relay")
struct AuditCommandTests {
    func verify(_ journey: Journey, relay: String? = nil) async throws -> (status: Int32, object: [String: Any], errors: String) {
        var arguments = ["audit", "verify", "--home", journey.phone, "--json"]
        if let relay { arguments += ["--relay", relay] }
        let result = try await journey.errand(arguments)
        let object = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
        return (result.status, object, result.errorOutput)
    }

    /// Verifies until every recorded event is proven (the relay integrates every 250 ms).
    func verifyAll(_ journey: Journey) async throws -> [String: Any] {
        // By a deadline, not a count of tries: on a busy machine one verify run takes seconds.
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            let (status, object, errors) = try await verify(journey)
            #expect(status == 0, "\(errors)")
            if let events = object["events"] as? Int, events > 0, object["verified"] as? Int == events { return object }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestSupportError("the device's events were never all proven")
    }

    @Test("The device proves its sent and delivered envelopes are in the log signed by the key pinned at pairing")
    func honest() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        _ = try await journey.sendAndWait(["--action", "greet", "a", "b"])
        let object = try await verifyAll(journey)
        #expect(object["passed"] as? Bool == true)
        #expect((object["events"] as? Int ?? 0) >= 3)  // the task sent, and the events received and acknowledged
        #expect((object["checkpointSize"] as? Int ?? 0) >= 3)

        // The whole log, read from its tiles and checked against the checkpoint; this device's events marked.
        let shown = try await journey.expectSuccess(["audit", "show", "--home", journey.phone, "--mine", "--json"])
        let listing = try JSONSerialization.jsonObject(with: Data(shown.output.utf8)) as? [String: Any]
        let mine = listing?["events"] as? [[String: Any]] ?? []
        #expect(mine.count == object["events"] as? Int)
        #expect(mine.allSatisfy { $0["mine"] as? Bool == true && ($0["envelope"] as? String)?.count == 32 })
        // An offline proof for one of them, in the C2SP tlog-proof layout.
        let envelope = try #require(mine.first { $0["event"] as? String == "stored" }?["envelope"] as? String)
        let proof = try await journey.expectSuccess(["audit", "prove", "--home", journey.phone, String(envelope.prefix(10))])
        let lines = proof.output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first == "c2sp.org/tlog-proof@v1")
        #expect(lines[1].hasPrefix("extra "))
        #expect(lines[2].hasPrefix("index "))
        #expect(proof.output.contains("\n\nerrand-relay/"))
        let unknown = try await journey.errand(["audit", "prove", "--home", journey.phone, "ffffffff"])
        #expect(unknown.status == 1)

        // The host checks too: the results it posted and the task it acknowledged.
        var hostProven = false
        for _ in 0..<40 where !hostProven {
            let result = try await journey.errand(["audit", "verify", "--home", journey.host, "--json"])
            #expect(result.status == 0, "\(result.errorOutput)")
            let hostObject = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
            if let events = hostObject["events"] as? Int, events >= 3, hostObject["verified"] as? Int == events { hostProven = true }
            else { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(hostProven)
    }

    @Test("A missing envelope and a rewritten log are findings, with evidence saved")
    func detections() async throws {
        let journey = try await Journey()
        try await journey.startHost()
        _ = try await journey.sendAndWait(["--action", "greet", "a", "b"])
        _ = try await verifyAll(journey)

        // An envelope this device sent that the relay never logged (made to look 10 minutes old).
        let database = journey.phone + "/companion.sqlite"
        let insert = try await runAsync("sqlite3", [database, """
            INSERT INTO audit_record (envelope_id, event, host_id, mailbox, digest, time)
            SELECT X'00112233445566778899aabbccddeeff', 1, host_id, mailbox, digest, time - 600 FROM audit_record LIMIT 1
            """])
        #expect(insert.status == 0, "\(insert.errorOutput)")
        let missing = try await verify(journey)
        #expect(missing.status == 1)
        #expect((missing.object["findings"] as? [String])?.first?.contains("has no stored event for envelope 00112233445566778899aabbccddeeff") == true)
        #expect(FileManager.default.fileExists(atPath: missing.object["evidence"] as? String ?? "/nonexistent"))
        _ = try await runAsync("sqlite3", [database, "DELETE FROM audit_record WHERE envelope_id = X'00112233445566778899aabbccddeeff'"])

        // The operator rewrites an old leaf and rebuilds the log: same key, different history.
        await journey.stopHost()
        await journey.relay.stop()
        let relayDatabase = journey.folder.path("relay") + "/relay.sqlite"
        let tamper = try await runAsync("sqlite3", [relayDatabase, """
            UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE idx = 2) WHERE idx = 1;
            DELETE FROM audit_node; DELETE FROM audit_checkpoint;
            """])
        #expect(tamper.status == 0, "\(tamper.errorOutput)")
        journey.relay = try await RelayProcess.start(data: journey.folder.path("relay"), arguments: ["--open-registration"])
        try await Task.sleep(for: .milliseconds(600))
        let forked = try await verify(journey, relay: journey.relay.baseURL)
        #expect(forked.status == 1)
        #expect((forked.object["findings"] as? [String])?.first?.contains("not consistent with the checkpoint this device verified before") == true)
        let evidence = try #require(forked.object["evidence"] as? String)
        #expect(FileManager.default.fileExists(atPath: evidence + "/checkpoint-before.txt"))
        #expect(FileManager.default.fileExists(atPath: evidence + "/checkpoint-now.txt"))
    }

    @Test("The running host checks the log by itself and reports a rewritten log as a security error, with evidence")
    func hostChecksInBackground() async throws {
        let journey = try await Journey(config: ["verify_interval_seconds": "1"])
        try await journey.startHost()
        let agent = try #require(journey.hostAgent)
        _ = try await journey.sendAndWait(["--action", "greet", "a", "b"])
        try await agent.waitForOutput(containing: "more of this host's events proven included", timeout: 30)
        #expect(!agent.output.contains("SECURITY"))

        // The operator rewrites an old leaf and rebuilds the log under the running relay.
        let relayDatabase = journey.folder.path("relay") + "/relay.sqlite"
        let tamper = try await runAsync("sqlite3", [relayDatabase, """
            PRAGMA busy_timeout = 5000;
            BEGIN IMMEDIATE;
            UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE idx = 2) WHERE idx = 1;
            DELETE FROM audit_node; DELETE FROM audit_checkpoint;
            COMMIT;
            """])
        #expect(tamper.status == 0, "\(tamper.errorOutput)")
        try await agent.waitForOutput(containing: "SECURITY: the relay's audit log does not match what this host saw", timeout: 30)
        try await agent.waitForOutput(containing: "SECURITY: evidence saved in", timeout: 10)
        let evidence = journey.host + "/audit-evidence"
        let folders = try FileManager.default.contentsOfDirectory(atPath: evidence)
        // Which check catches the rewrite depends on when the host looks (the log is rebuilt under
        // it): a consistency failure keeps both checkpoints, a failed inclusion proof the findings.
        #expect(folders.contains { folder in
            let path = "\(evidence)/\(folder)/"
            return FileManager.default.fileExists(atPath: path + "checkpoint-now.txt")
                && (FileManager.default.fileExists(atPath: path + "checkpoint-before.txt") || FileManager.default.fileExists(atPath: path + "findings.txt"))
        }, "evidence folders: \(folders)")
        await journey.stopHost()
    }
}
