import ErrandTestSupport
import Foundation
import Testing

@Suite("The whole journey across two relay nodes on one PostgreSQL database",
       .enabled(if: TestPostgres.unavailableReason == nil, "needs the PostgreSQL server scripts/test starts (ERRAND_TEST_POSTGRES_URL)"))
struct MultiNodeJourneyTests {
    /// `errand audit verify --json` from `home` through `relay` until every recorded event is proven.
    func verifyAll(_ journey: Journey, home: String, relay: String) async throws -> [String: Any] {
        for _ in 0..<40 {
            let result = try await journey.errand(["audit", "verify", "--home", home, "--relay", relay, "--json"])
            #expect(result.status == 0, "\(result.errorOutput)")
            let object = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
            if let events = object["events"] as? Int, events > 0, object["verified"] as? Int == events { return object }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestSupportError("the events of \(home) were never all proven")
    }

    @Test("Host on one node, phone on the other: pairing, a streamed task, both audits and the operator's audit pass")
    func journeyAcrossNodes() async throws {
        let journey = try await Journey(nodes: 2)
        do {
            let phoneRelay = try #require(journey.phoneRelay)
            try await journey.startHost()
            let streamed = try await journey.errand(["send", "--home", journey.phone, "--relay", phoneRelay, "--wait", "across\nnodes"])
            #expect(streamed.status == 0, "\(streamed.errorOutput)")
            #expect(streamed.output.contains("step: across …\nstep: nodes …\nagent finished ✓"))
            let result = try await journey.sendAndWait(["--action", "greet", "a", "b"])
            #expect(result["status"] as? String == "succeeded")
            #expect(result["output"] as? String == "hello, a and b\n")

            // Both peers prove their envelopes are in the one log, each through its own node.
            let phone = try await verifyAll(journey, home: journey.phone, relay: phoneRelay)
            #expect(phone["passed"] as? Bool == true)
            let host = try await verifyAll(journey, home: journey.host, relay: journey.relay.baseURL)
            #expect(host["passed"] as? Bool == true)

            // The operator's audit reads the shared database.
            let audit = try await runAsync("errand-relay", ["audit", "--data", journey.folder.path("relay") + "/node-0"],
                                           environment: ["ERRAND_RELAY_STORAGE_POSTGRES": try #require(journey.database)])
            #expect(audit.status == 0, "\(audit.errorOutput)")
            #expect(audit.output.contains("audit passed"))
        } catch {
            await journey.finish()
            throw error
        }
        await journey.finish()
    }
}
