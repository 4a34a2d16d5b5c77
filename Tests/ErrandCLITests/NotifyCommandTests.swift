import ErrandTestSupport
import Foundation
import Testing

@Suite("Doorbells from the command line", .timeLimit(.minutes(3)))
struct NotifyCommandTests {
    @Test("errand notify: a webhook gets exactly one call for a task finished while the companion is offline, with none of its words")
    func webhook() async throws {
        let service = try await PushService.start()
        defer { service.stop() }
        let journey = try await Journey(relayEnvironment: [
            "ERRAND_RELAY_PUSH_ALLOWED_HOSTS": "127.0.0.1", "ERRAND_RELAY_PUSH_ALLOW_HTTP": "true", "ERRAND_RELAY_PUSH_MIN_INTERVAL_SECONDS": "1",
        ])
        let phone = journey.phone
        // A URL the relay may not call is refused, with the reason and what to do.
        let refused = try await journey.errand(["notify", "--home", phone, "--webhook", "https://hooks.example.com/x"])
        #expect(refused.status != 0)
        #expect(refused.errorOutput.contains("push.allowed_hosts"), "\(refused.errorOutput)")
        #expect(refused.errorOutput.contains("hint:"))
        let conflicting = try await journey.errand(["notify", "--home", phone, "--webhook", "\(service.origin)/hook/a", "--off"])
        #expect(conflicting.status != 0)

        let hook = "\(service.origin)/hook/phone"
        try await journey.expectSuccess(["notify", "--home", phone, "--webhook", hook])
        let listed = try await journey.expectSuccess(["notify", "--home", phone, "--json"])
        let entries = try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]]
        #expect(entries?.count == 1)
        #expect(entries?.first?["url"] as? String == hook && entries?.first?["host"] as? String == "studio")

        try await journey.startHost()
        let sent = try await journey.expectSuccess(["send", "--home", phone, "--action", "greet", "zanzibar", "quokka"])
        let task = sent.output.trimmingCharacters(in: .whitespacesAndNewlines)
        try await journey.hostAgent!.waitForOutput(containing: "task \(task.prefix(8)) succeeded")
        let finished = Date().timeIntervalSince1970
        var calls: [PushService.Call] = []
        for _ in 0..<500 where calls.isEmpty {
            calls = try await service.calls().filter { $0.name == "phone" }
            if calls.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        let call = try #require(calls.first, "the webhook was never called")
        print("doorbell: webhook called \(Int(((call.at - finished) * 1000).rounded())) ms after the host printed the task's end")
        // Exactly one: the task's start is not urgent, and nothing else rings.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(try await service.calls().filter { $0.name == "phone" }.count == 1)
        let seen = call.body + call.headers.values.joined(separator: " ")
        for word in ["zanzibar", "quokka", "greet", "studio", task, String(task.prefix(8))] {
            #expect(!seen.contains(word), "the webhook call holds '\(word)'")
        }
        // The result is still there for the companion to read.
        let followed = try await journey.expectSuccess(["follow", "--home", phone, "--json", task])
        #expect(followed.output.contains("hello, zanzibar and quokka"))

        let off = try await journey.expectSuccess(["notify", "--home", phone, "--off"])
        #expect(off.output.contains("1 doorbell(s) removed"))
        #expect(try await journey.expectSuccess(["notify", "--home", phone]).output.contains("No doorbells"))
        await journey.finish()
    }
}
