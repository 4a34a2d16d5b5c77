import Crypto
import ErrandCrypto
import ErrandProtocol
@testable import ErrandRelay
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import Testing

/// Doorbells against the stand-in push service on loopback, which checks each Web Push call's
/// VAPID JWT and decrypts its RFC 8291 payload with an independent implementation.
@Suite("Doorbells", .serialized, .timeLimit(.minutes(3)))
struct DoorbellTests {
    /// A relay that may call the stand-in (loopback, plain http) and rings at most once a second.
    func withRelay(interval: Int = 1, _ body: (TestRelay, PushService) async throws -> Void) async throws {
        let service = try await PushService.start()
        defer { service.stop() }
        try await TestRelay.with({ configuration in
            configuration.push.allowedHosts = ["127.0.0.1"]
            configuration.push.allowHTTP = true
            configuration.push.minimumIntervalSeconds = interval
        }) { relay in try await body(relay, service) }
    }

    /// Calls to `name` once `count` of them have come (or the wait is over, recorded as an issue).
    func calls(to name: String, reaching count: Int, of service: PushService, within seconds: Double = 10,
               sourceLocation: SourceLocation = #_sourceLocation) async throws -> [PushService.Call] {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let calls = try await service.calls().filter { $0.name == name }
            if calls.count >= count { return calls }
            if Date() > deadline {
                Issue.record("expected \(count) call(s) to \(name) within \(seconds) s, got \(calls.count)", sourceLocation: sourceLocation)
                return calls
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func subscribedOwner(_ relay: TestRelay, _ service: PushService, behavior: String = "ok") async throws -> (Owner, PushService.Subscription) {
        let owner = try await Owner.register(on: relay)
        let subscription = try await service.subscribe(behavior: behavior)
        try await relay.client.saveDoorbell(kind: "webpush", url: subscription.endpoint, p256dh: subscription.p256dh, auth: subscription.auth,
                                            owner: owner.key)
        return (owner, subscription)
    }

    @Test("RFC 8291 Appendix A: the payload encryption gives the published message, byte for byte")
    func rfc8291Vector() throws {
        let sender = try P256.KeyAgreement.PrivateKey(rawRepresentation: ByteEncoding.bytes(base64URL: "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
        let body = try WebPushEncryption.encrypt(
            Array("When I grow up, I want to be a watermelon".utf8),
            subscriberKey: ByteEncoding.bytes(base64URL: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
            authSecret: ByteEncoding.bytes(base64URL: "BTBZMqHH6r4Tts7J_aSIgg"),
            senderKey: sender, salt: ByteEncoding.bytes(base64URL: "DGv6ra1nlYgDCS1FRnbzlw"))
        #expect(ByteEncoding.base64URL(body) == "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")
        #expect(throws: WebPushEncryption.Failure.self) {
            try WebPushEncryption.encrypt([1], subscriberKey: [UInt8](repeating: 4, count: 65), authSecret: [UInt8](repeating: 0, count: 16))
        }
    }

    @Test("Destinations: only allowed hosts, https unless allowed, private addresses only when listed exactly")
    func destinations() {
        let defaults = PushDestinations(allowedHosts: PushDestinations.defaultAllowedHosts, allowHTTP: false)
        #expect(defaults.refusal(of: "https://fcm.googleapis.com/fcm/send/abc") == nil)
        #expect(defaults.refusal(of: "https://web.push.apple.com/QGuQ") == nil)
        #expect(defaults.refusal(of: "https://ntfy.sh/topic") == nil)
        #expect(defaults.refusal(of: "https://push.apple.com/x")?.contains("push.allowed_hosts") == true)  // the wildcard needs a subdomain
        #expect(defaults.refusal(of: "https://evil.example/x")?.contains("push.allowed_hosts") == true)
        #expect(defaults.refusal(of: "https://fcm.googleapis.com.evil.example/x") != nil)
        #expect(defaults.refusal(of: "http://ntfy.sh/topic")?.contains("https") == true)
        #expect(defaults.refusal(of: "https://user:pw@ntfy.sh/topic") != nil)
        #expect(defaults.refusal(of: "file:///etc/passwd") != nil)
        #expect(defaults.refusal(of: "not a url") != nil)
        // A percent-escaped NUL would make the check and the connection see different hosts.
        #expect(defaults.refusal(of: "https://203.0.113.7%00.push.apple.com:8443/x") != nil)
        #expect(defaults.refusal(of: "https://web%2Epush.apple.com/x") != nil)
        #expect(PushDestinations.origin(of: "HTTPS://FCM.googleapis.com.:443/fcm/send/a") == "https://fcm.googleapis.com")
        #expect(PushDestinations.origin(of: "http://[::1]:8443/x") == "http://[::1]:8443")
        #expect(IPAddressClass("2002:c0a8:0101::1")?.isPublic == false)
        #expect(IPAddressClass("fec0::1")?.isPublic == false)

        let local = PushDestinations(allowedHosts: ["127.0.0.1", "*.corp.example", "ntfy.corp.example", "[::1]"], allowHTTP: true)
        #expect(local.refusal(of: "http://127.0.0.1:8080/x") == nil)
        #expect(local.refusal(of: "http://[::1]:8080/x") == nil)
        #expect(local.refusal(of: "http://127.0.0.2/x") != nil)
        #expect(local.refusal(of: "http://10.0.0.1/x") != nil)
        // A name allowed by a wildcard must resolve to public addresses; one listed exactly may resolve anywhere.
        #expect(local.refusal(host: "push.corp.example", resolvedTo: ["10.1.2.3"])?.contains("private") == true)
        #expect(local.refusal(host: "push.corp.example", resolvedTo: ["::ffff:127.0.0.1"])?.contains("loopback") == true)
        #expect(local.refusal(host: "push.corp.example", resolvedTo: ["fe80::1"])?.contains("link-local") == true)
        #expect(local.refusal(host: "push.corp.example", resolvedTo: ["93.184.216.34", "2606:2800:220:1::1"]) == nil)
        #expect(local.refusal(host: "push.corp.example", resolvedTo: []) != nil)
        #expect(local.refusal(host: "ntfy.corp.example", resolvedTo: ["10.1.2.3"]) == nil)
        #expect(IPAddressClass("169.254.169.254")?.kind == "link-local")
        #expect(IPAddressClass("100.64.0.1")?.isPublic == false)
        #expect(IPAddressClass("fd00::1")?.kind == "private")
        #expect(IPAddressClass("8.8.8.8")?.isPublic == true)
        #expect(IPAddressClass("example.com") == nil)
    }

    @Test("An urgent envelope to an offline mailbox rings its Web Push doorbell once: VAPID verifies, the payload is fixed")
    func urgentRingsOnce() async throws {
        try await withRelay { relay, service in
            let (owner, subscription) = try await subscribedOwner(relay, service)
            let secret = Array("the task's own words".utf8)
            let envelope = try Envelope(ciphertext: secret + SecureRandom.bytes(count: 32))
            _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token, urgent: true)
            let posted = Date().timeIntervalSince1970
            let calls = try await calls(to: subscription.name, reaching: 1, of: service)
            let call = try #require(calls.first)
            print("doorbell: Web Push call \(Int(((call.at - posted) * 1000).rounded())) ms after the urgent post returned")
            #expect(call.status == 201)
            #expect(call.vapidProblem == nil, "VAPID: \(call.vapidProblem ?? "")")
            #expect(call.payload == #"{"errand":"doorbell","v":1}"#, "decrypt: \(call.decryptProblem ?? "")")
            #expect(call.headers["content-encoding"] == "aes128gcm")
            #expect(call.headers["urgency"] == "high")
            #expect(!call.body.contains("the task's own words"))
            #expect(call.headers.values.allSatisfy { !$0.contains(owner.mailbox.description) })
            // The same key as the relay publishes for browsers' subscriptions.
            let key = try await relay.client.pushKey()
            #expect(call.headers["authorization"]?.hasSuffix("k=\(key)") == true)
        }
    }

    @Test("Not urgent, or with a live connection: no ring")
    func notUrgentOrLive() async throws {
        try await withRelay { relay, service in
            let (quiet, quietSubscription) = try await subscribedOwner(relay, service)
            let (live, liveSubscription) = try await subscribedOwner(relay, service)
            let (marker, markerSubscription) = try await subscribedOwner(relay, service)
            let connection = relay.client.subscribe(owner: live.key)
            var events = connection.events.makeAsyncIterator()
            guard case .caughtUp? = try await events.next() else { Issue.record("expected caught-up"); return }

            _ = try await relay.client.post(sampleEnvelope(), to: quiet.mailbox, token: quiet.token)
            _ = try await relay.client.post(sampleEnvelope(), to: live.mailbox, token: live.token, urgent: true)
            guard case .envelope? = try await events.next() else { Issue.record("expected the live envelope"); return }
            // A later urgent envelope for an offline mailbox rings; by then the others would have too.
            _ = try await relay.client.post(sampleEnvelope(), to: marker.mailbox, token: marker.token, urgent: true)
            _ = try await calls(to: markerSubscription.name, reaching: 1, of: service)
            try await Task.sleep(for: .milliseconds(300))
            let names = try await service.calls().map(\.name)
            #expect(!names.contains(quietSubscription.name))
            #expect(!names.contains(liveSubscription.name))
            connection.cancel()
        }
    }

    @Test("Urgent envelopes inside the interval ring once more at its end, not once each; batches mark items urgent")
    func coalescing() async throws {
        // An interval long enough that every post below falls inside it, however busy the machine.
        try await withRelay(interval: 3) { relay, service in
            let (owner, subscription) = try await subscribedOwner(relay, service)
            let items = (0..<3).map { index in
                EnvelopeBatch.Item(mailbox: owner.mailbox, token: owner.token, envelope: sampleEnvelope().encoded, urgent: index != 1)
            }
            _ = try await relay.client.post(batch: Array(items.prefix(1)))
            _ = try await relay.client.post(batch: Array(items.dropFirst()))
            for _ in 0..<3 { _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token, urgent: true) }
            let calls = try await calls(to: subscription.name, reaching: 2, of: service)
            if calls.count == 2 { #expect(calls[1].at - calls[0].at >= 2.9) }
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await service.calls().filter { $0.name == subscription.name }.count == 2)
        }
    }

    @Test("A push service answering 410 has its doorbell removed; a 500 is tried again")
    func goneAndRetry() async throws {
        try await withRelay { relay, service in
            let (gone, goneSubscription) = try await subscribedOwner(relay, service, behavior: "gone")
            let (flaky, flakySubscription) = try await subscribedOwner(relay, service, behavior: "fail-once")
            _ = try await relay.client.post(sampleEnvelope(), to: gone.mailbox, token: gone.token, urgent: true)
            _ = try await relay.client.post(sampleEnvelope(), to: flaky.mailbox, token: flaky.token, urgent: true)
            let goneCalls = try await calls(to: goneSubscription.name, reaching: 1, of: service)
            #expect(goneCalls.map(\.status) == [410])
            var remaining = 1
            for _ in 0..<100 where remaining > 0 {
                remaining = try await relay.client.doorbells(owner: gone.key).count
                if remaining > 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(remaining == 0)
            let flakyCalls = try await calls(to: flakySubscription.name, reaching: 2, of: service)
            #expect(flakyCalls.map(\.status) == [500, 201])
            #expect(try await relay.client.doorbells(owner: flaky.key).count == 1)
        }
    }

    @Test("Disallowed, private or malformed destinations are refused at registration and never called")
    func refusedRegistrations() async throws {
        try await withRelay { relay, service in
            let owner = try await Owner.register(on: relay)
            for url in ["https://push.example.com/x", "http://10.0.0.1/x", "http://127.0.0.2:\(service.port)/hook/a",
                        "http://localhost:\(service.port)/hook/a", "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1:\(service.port)/hook/a"] {
                let error = await expectRefusal(.forbidden) { try await relay.client.saveDoorbell(kind: "webhook", url: url, owner: owner.key) }
                #expect(error?.message.contains("push.allowed_hosts") == true || error?.message.contains("must") == true, "\(url): \(error?.message ?? "")")
            }
            await expectRefusal(.badRequest) {
                try await relay.client.saveDoorbell(kind: "webpush", url: "\(service.origin)/push/x", p256dh: "AAAA", auth: "AAAA", owner: owner.key)
            }
            // 65 bytes starting 0x04 that are not a point on the curve.
            let notAPoint = ByteEncoding.base64URL([0x04] + [UInt8](repeating: 0xff, count: 64))
            await expectRefusal(.badRequest) {
                try await relay.client.saveDoorbell(kind: "webpush", url: "\(service.origin)/push/x", p256dh: notAPoint, auth: "AAAAAAAAAAAAAAAAAAAAAA", owner: owner.key)
            }
            await expectRefusal(.badRequest) { try await relay.client.saveDoorbell(kind: "pager", url: "\(service.origin)/hook/a", owner: owner.key) }
            // Only the owner registers.
            let stranger = Ed25519.SecretKey()
            let path = "/v1/mailboxes/\(owner.mailbox)/doorbells"
            let body = Array(#"{"kind":"webhook","url":"\#(service.origin)/hook/stranger"}"#.utf8)
            let identity = try await relay.client.auditVerifierKey()
            let answer = try await raw("POST", relay.url + path, headers: signedHeaders("POST", path, body: body, for: identity, key: stranger), body: body)
            #expect(answer.status == 403)
            #expect(try await relay.client.doorbells(owner: owner.key).isEmpty)
            // At most push.max_doorbells_per_mailbox (4).
            for index in 0..<4 { try await relay.client.saveDoorbell(kind: "webhook", url: "\(service.origin)/hook/\(index)", owner: owner.key) }
            await expectRefusal(.quotaExceeded) { try await relay.client.saveDoorbell(kind: "ntfy", url: "\(service.origin)/ntfy/t", owner: owner.key) }
            try await relay.client.saveDoorbell(kind: "webhook", url: "\(service.origin)/hook/0", owner: owner.key)  // the same URL again is fine
            #expect(try await service.calls().isEmpty)
        }
    }

    @Test("A slow push service does not slow posts")
    func slowService() async throws {
        try await withRelay { relay, service in
            var owners: [Owner] = []
            for _ in 0..<8 { owners.append(try await subscribedOwner(relay, service, behavior: "slow").0) }
            // Each post rings a push service that takes 3 s to answer: none of them waits for it.
            var slowest = Duration.zero
            for owner in owners {
                for _ in 0..<2 {
                    let started = ContinuousClock.now
                    _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token, urgent: true)
                    slowest = max(slowest, ContinuousClock.now - started)
                }
            }
            #expect(slowest < .seconds(2.5), "the slowest post took \(slowest)")
            _ = try await calls(to: "s8", reaching: 1, of: service, within: 20)
        }
    }

    @Test("ntfy and webhook doorbells get a fixed text and nothing of the envelope")
    func ntfyAndWebhook() async throws {
        try await withRelay { relay, service in
            let owner = try await Owner.register(on: relay)
            try await relay.client.saveDoorbell(kind: "ntfy", url: "\(service.origin)/ntfy/my-topic", owner: owner.key)
            try await relay.client.saveDoorbell(kind: "webhook", url: "\(service.origin)/hook/mine", owner: owner.key)
            #expect(Set(try await relay.client.doorbells(owner: owner.key).map(\.kind)) == ["ntfy", "webhook"])
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token, urgent: true)
            let ntfy = try #require(try await calls(to: "my-topic", reaching: 1, of: service).first)
            let hook = try #require(try await calls(to: "mine", reaching: 1, of: service).first)
            #expect(ntfy.body == DoorbellRinger.ntfyMessage)
            #expect(ntfy.headers["title"] == "Errand")
            #expect(hook.body == #"{"event":"doorbell","v":1}"#)
            #expect(hook.headers["content-type"] == "application/json")
            for call in [ntfy, hook] { #expect(!(call.body + call.headers.values.joined()).contains(owner.mailbox.description)) }
        }
    }

    @Test("With push.enabled off, registration and the key answer 404, and posts still work")
    func disabled() async throws {
        try await TestRelay.with({ $0.push.enabled = false }) { relay in
            let owner = try await Owner.register(on: relay)
            await expectRefusal(.notFound) { try await relay.client.pushKey() }
            await expectRefusal(.notFound) { try await relay.client.saveDoorbell(kind: "ntfy", url: "https://ntfy.sh/x", owner: owner.key) }
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token, urgent: true)
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.count == 1)
        }
    }

    @Test("A malformed Errand-Urgent or Errand-Urgent-Items header is refused with 400 and nothing is stored")
    func malformedUrgency() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let single = try await raw("POST", relay.url + "/v1/mailboxes/\(owner.mailbox)/envelopes",
                                       headers: [("Authorization", "Bearer \(owner.token.bearer)"), ("Errand-Urgent", "yes")], body: sampleEnvelope().encoded)
            #expect(single.status == 400)
            #expect(single.body.contains("Errand-Urgent"))
            let batch = EnvelopeBatch(items: [.init(mailbox: owner.mailbox, token: owner.token, envelope: sampleEnvelope().encoded)])
            for value in ["1", "0,0", "-1", "a", "0,", "00000000"] {
                let answer = try await raw("POST", relay.url + "/v1/envelopes", headers: [("Errand-Urgent-Items", value)], body: batch.encoded)
                #expect(answer.status == 400, "\(value)")
            }
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.isEmpty)
        }
    }
}
