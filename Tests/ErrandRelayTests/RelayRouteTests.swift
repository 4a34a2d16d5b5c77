import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import ErrandTransparency
import Foundation
import Testing

/// The relay's HTTP API over a real loopback socket, through the client library and raw requests.
@Suite("Relay routes")
struct RelayRouteTests {
    @Test("Post, fetch, acknowledge; a retried post is stored once")
    func postFetchAcknowledge() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let envelope = sampleEnvelope()
            let receipt = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            #expect(!receipt.duplicate)
            let again = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            #expect(again == RelayClient.Receipt(sequence: receipt.sequence, duplicate: true))
            let second = sampleEnvelope(size: 1000)
            _ = try await relay.client.post(second, to: owner.mailbox, token: owner.token)

            let page = try await relay.client.fetch(owner: owner.key)
            #expect(page.envelopes.map(\.envelope) == [envelope, second])
            #expect(!page.more)
            let afterFirst = try await relay.client.fetch(owner: owner.key, after: receipt.sequence)
            #expect(afterFirst.envelopes.map(\.envelope) == [second])
            let limited = try await relay.client.fetch(owner: owner.key, limit: 1)
            #expect(limited.more)

            #expect(try await relay.client.acknowledge([envelope.id], owner: owner.key) == 1)
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.map(\.envelope) == [second])
        }
    }

    @Test("An id is a duplicate while its envelope is stored; once acknowledged the envelope is gone, and a repeat is stored anew")
    func repostAfterAcknowledgement() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let envelope = sampleEnvelope()
            let receipt = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            #expect(try await relay.client.acknowledge([envelope.id], owner: owner.key) == 1)
            // Deleted on acknowledgement, id and all (docs/protocol.md, Endpoints): the relay keeps
            // nothing of a delivered envelope, and the receiver drops the repeat by its id.
            let again = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            #expect(!again.duplicate)
            #expect(again.sequence > receipt.sequence)
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.map(\.envelope) == [envelope])
            let leaves = try await relay.store.pendingAuditLeaves(after: 0, limit: 100).map { try AuditLeaf(bytes: $0.bytes) }
            #expect(leaves.map(\.event) == [.stored, .delivered, .stored])
        }
    }

    @Test("Malformed, out-of-range and repeated query parameters are refused with 400 and a reason that names them")
    func queryParameters() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token)
            let identity = try await relay.client.auditVerifierKey()
            func fetch(_ query: String) async throws -> (status: Int, body: String) {
                let path = "/v1/mailboxes/\(owner.mailbox)/envelopes?\(query)"
                let answer = try await raw("GET", relay.url + path, headers: signedHeaders("GET", path, for: identity, key: owner.key))
                return (answer.status, answer.body)
            }
            for (query, named) in [("limit=0", "limit"), ("limit=-1", "limit"), ("limit=501", "limit"), ("limit=abc", "limit"),
                                   ("limit=", "limit"), ("limit=+5", "limit"), ("after=abc", "after"), ("after=-5", "after"),
                                   ("after=99999999999999999999", "after"), ("after=1&after=2", "after")] {
                let answer = try await fetch(query)
                #expect(answer.status == 400, "\(query): \(answer.body)")
                #expect(answer.body.contains("\"code\":\"bad_request\""), "\(query)")
                #expect(answer.body.contains("'\(named)'"), "\(query): \(answer.body)")
            }
            // The edges of the range, and the defaults, are fine.
            for query in ["limit=1", "limit=500", "after=0", "after=0&limit=100"] {
                #expect(try await fetch(query).status == 200, "\(query)")
            }
            // The log's proofs: missing, malformed and repeated integers too.
            for path in ["/v1/log/inclusion?index=0", "/v1/log/inclusion?index=x&size=1", "/v1/log/consistency?from=1&to=-1",
                         "/v1/log/consistency?from=1&from=1&to=1", "/v1/log/leaf?hash=nothex"] {
                let answer = try await raw("GET", relay.url + path)
                #expect(answer.status == 400, "\(path): \(answer.body)")
                #expect(answer.body.contains("bad_request"), "\(path)")
            }
        }
    }

    @Test("Send tokens past limits.max_send_tokens are refused with 507 and do not authorise posts")
    func sendTokenCap() async throws {
        try await TestRelay.with({ $0.maximumSendTokens = 3 }) { relay in
            let owner = try await Owner.register(on: relay)
            try await relay.client.addSendToken(SendToken().hash, owner: owner.key)
            try await relay.client.addSendToken(SendToken().hash, owner: owner.key)
            let extra = SendToken()
            await expectRefusal(.quotaExceeded) { try await relay.client.addSendToken(extra.hash, owner: owner.key) }
            #expect(try await relay.client.sendTokens(owner: owner.key).count == 3)
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: extra) }
        }
    }

    @Test("A page stops at about 2 MiB however many envelopes were asked for")
    func pageByteCap() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            for _ in 0..<40 {
                _ = try await relay.client.post(sampleEnvelope(size: 60_000), to: owner.mailbox, token: owner.token)
            }
            let page = try await relay.client.fetch(owner: owner.key, limit: 100)
            #expect(page.envelopes.count < 40 && page.envelopes.count >= 30)
            #expect(page.more)
            let rest = try await relay.client.fetch(owner: owner.key, after: page.envelopes.last!.sequence, limit: 100)
            #expect(page.envelopes.count + rest.envelopes.count == 40)
        }
    }

    @Test("Posting: no token, a malformed token, a wrong token and a revoked token are refused; other devices keep working")
    func postingAuthorisation() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let url = "\(relay.url)/v1/mailboxes/\(owner.mailbox)/envelopes"
            let body = sampleEnvelope().encoded
            let missing = try await raw("POST", url, body: body)
            #expect(missing.status == 401)
            #expect(missing.body.contains("\"code\":\"unauthenticated\""))
            #expect(missing.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect(try await raw("POST", url, headers: [("Authorization", "Bearer short")], body: body).status == 401)
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: SendToken()) }

            let secondDevice = SendToken()
            try await relay.client.addSendToken(secondDevice.hash, owner: owner.key)
            #expect(Set(try await relay.client.sendTokens(owner: owner.key)) == [owner.token.hash, secondDevice.hash])
            try await relay.client.removeSendToken(owner.token.hash, owner: owner.key)
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token) }
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: secondDevice)
            // Nothing from the refused posts was stored.
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.count == 1)
        }
    }

    @Test("Oversized, malformed and unknown-version envelopes are refused with 413/400 and nothing is stored")
    func envelopeValidation() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let url = "\(relay.url)/v1/mailboxes/\(owner.mailbox)/envelopes"
            let auth = [("Authorization", "Bearer \(owner.token.bearer)")]
            let tooBig = try await raw("POST", url, headers: auth, body: [1] + [UInt8](repeating: 0, count: 65_536))
            #expect(tooBig.status == 413)
            #expect(tooBig.body.contains("\"code\":\"too_large\""))
            let truncated = try await raw("POST", url, headers: auth, body: [1, 2, 3])
            #expect(truncated.status == 400)
            #expect(truncated.body.contains("invalid_envelope"))
            let future = try await raw("POST", url, headers: auth, body: [2] + [UInt8](repeating: 0, count: 40))
            #expect(future.status == 400)
            #expect(future.body.contains("version 2"))
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.isEmpty)
        }
    }

    @Test("Owner requests: unsigned, tampered, stale, replayed, foreign and other relays' signatures are refused")
    func ownerAuthentication() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let path = "/v1/mailboxes/\(owner.mailbox)/envelopes?after=0&limit=10"
            #expect(try await raw("GET", relay.url + path).status == 401)
            let identity = try await relay.client.auditVerifierKey()
            func signedHeaders(_ method: String, _ pathAndQuery: String, key: Ed25519.SecretKey, now: Date = Date()) -> [(String, String)] {
                ErrandRelayTests.signedHeaders(method, pathAndQuery, for: identity, key: key, now: now)
            }

            let headers = signedHeaders("GET", path, key: owner.key)
            #expect(try await raw("GET", relay.url + path, headers: headers).status == 200)
            let replay = try await raw("GET", relay.url + path, headers: headers)
            #expect(replay.status == 401)
            #expect(replay.body.contains("replayed_request"))

            // Signed for another path: the signature does not cover this request.
            let tampered = try await raw("GET", relay.url + path, headers: signedHeaders("GET", "/v1/mailboxes/\(owner.mailbox)/envelopes?after=5", key: owner.key))
            #expect(tampered.status == 401)

            let stale = try await raw("GET", relay.url + path, headers: signedHeaders("GET", path, key: owner.key, now: Date().addingTimeInterval(-600)))
            #expect(stale.status == 401)
            #expect(stale.body.contains("clock"))

            let stranger = try await raw("GET", relay.url + path, headers: signedHeaders("GET", path, key: Ed25519.SecretKey()))
            #expect(stranger.status == 403)

            // Signed, by the owner, for another relay (where the key may own a mailbox too): a
            // request captured there cannot be replayed here.
            let otherRelay = try NoteSigner(name: "errand-relay/elsewhere", secretKey: Ed25519.SecretKey()).verifier.description
            let elsewhere = try await raw("GET", relay.url + path,
                                          headers: ErrandRelayTests.signedHeaders("GET", path, for: otherRelay, key: owner.key))
            #expect(elsewhere.status == 401)
            #expect(elsewhere.body.contains("name this relay"))
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.isEmpty)

            // A mailbox that does not exist.
            let ghost = Ed25519.SecretKey()
            await expectRefusal(.notFound) { try await relay.client.fetch(owner: ghost) }
        }
    }

    @Test("Registration: closed without a token, refused with a bad one, one mailbox per invite; devices by sponsor")
    func registration() async throws {
        try await TestRelay.with({ $0.openRegistration = false; $0.maximumSponsoredMailboxes = 1 }) { relay in
            let host = Ed25519.SecretKey()
            await expectRefusal(.unauthenticated) { try await relay.client.createMailbox(owner: host) }
            await expectRefusal(.forbidden) { try await relay.client.createMailbox(owner: host, invite: ByteEncoding.base64URL(SecureRandom.bytes(count: 32))) }
            let invite = SecretBytes.random(count: 32)
            try await relay.store.addInvite(TokenHash(of: invite), expiresAt: Int64(Date().timeIntervalSince1970) + 60)
            let (mailbox, created) = try await relay.client.createMailbox(owner: host, invite: ByteEncoding.base64URL(invite))
            #expect(created)
            #expect(mailbox == MailboxID(owner: host.publicKey))
            // The invite is used up.
            await expectRefusal(.forbidden) { try await relay.client.createMailbox(owner: Ed25519.SecretKey(), invite: ByteEncoding.base64URL(invite)) }
            // Registering again is harmless.
            #expect(try await relay.client.createMailbox(owner: host).created == false)

            let phone = Ed25519.SecretKey()
            #expect(try await relay.client.createDeviceMailbox(for: phone.publicKey, sponsor: host).created)
            await expectRefusal(.quotaExceeded) { try await relay.client.createDeviceMailbox(for: Ed25519.SecretKey().publicKey, sponsor: host) }
            // Someone without a mailbox cannot sponsor.
            await expectRefusal(.forbidden) { try await relay.client.createDeviceMailbox(for: Ed25519.SecretKey().publicKey, sponsor: Ed25519.SecretKey()) }
            // The sponsored device owns its mailbox, but cannot sponsor others.
            #expect(try await relay.client.fetch(owner: phone).envelopes.isEmpty)
            let chained = await expectRefusal(.forbidden) { try await relay.client.createDeviceMailbox(for: Ed25519.SecretKey().publicKey, sponsor: phone) }
            #expect(chained?.message.contains("only a host") == true)
        }
    }

    @Test("A host closes the device mailboxes it created, and only those; each frees a place for another device")
    func closingDeviceMailboxes() async throws {
        try await TestRelay.with({ $0.maximumSponsoredMailboxes = 2 }) { relay in
            let host = Ed25519.SecretKey()
            let other = Ed25519.SecretKey()
            try await relay.client.createMailbox(owner: host)
            try await relay.client.createMailbox(owner: other)
            let phone = Ed25519.SecretKey()
            let tablet = Ed25519.SecretKey()
            _ = try await relay.client.createDeviceMailbox(for: phone.publicKey, sponsor: host)
            _ = try await relay.client.createDeviceMailbox(for: tablet.publicKey, sponsor: host)
            await expectRefusal(.quotaExceeded) { try await relay.client.createDeviceMailbox(for: Ed25519.SecretKey().publicKey, sponsor: host) }

            // Another host cannot close them; nor can a device close its host's or another device's.
            let foreign = await expectRefusal(.forbidden) { try await relay.client.closeDeviceMailbox(of: phone.publicKey, sponsor: other) }
            #expect(foreign?.message.contains("neither owns mailbox") == true)
            await expectRefusal(.forbidden) { try await relay.client.closeDeviceMailbox(of: host.publicKey, sponsor: phone) }
            await expectRefusal(.forbidden) { try await relay.client.closeDeviceMailbox(of: tablet.publicKey, sponsor: phone) }
            #expect(try await relay.client.fetch(owner: phone).envelopes.isEmpty)

            // Its host closes the phone's: gone (with what waited in it), and a place is free.
            let token = SendToken()
            try await relay.client.addSendToken(token.hash, owner: phone)
            _ = try await relay.client.post(sampleEnvelope(), to: MailboxID(owner: phone.publicKey), token: token)
            try await relay.client.closeDeviceMailbox(of: phone.publicKey, sponsor: host)
            await expectRefusal(.notFound) { try await relay.client.fetch(owner: phone) }
            // The token went with the mailbox.
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: MailboxID(owner: phone.publicKey), token: token) }
            #expect(try await relay.client.createDeviceMailbox(for: Ed25519.SecretKey().publicKey, sponsor: host).created)
            // Closing it again counts as closed; the raw answer is 404.
            try await relay.client.closeDeviceMailbox(of: phone.publicKey, sponsor: host)
            // The owner still closes its own.
            try await relay.client.closeMailbox(owner: tablet)
            await expectRefusal(.notFound) { try await relay.client.fetch(owner: tablet) }
        }
    }

    @Test("Quota: a full mailbox answers 507 until its owner acknowledges")
    func quota() async throws {
        try await TestRelay.with({ $0.mailboxQuota = MailboxQuota(maximumEnvelopes: 2, maximumBytes: 1 << 20) }) { relay in
            let owner = try await Owner.register(on: relay)
            let first = sampleEnvelope()
            _ = try await relay.client.post(first, to: owner.mailbox, token: owner.token)
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token)
            let error = await expectRefusal(.quotaExceeded) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token) }
            #expect(error?.status == 507)
            try await relay.client.acknowledge([first.id], owner: owner.key)
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token)
        }
    }

    @Test("Rate limits answer 429 with Retry-After, per mailbox and per address")
    func rateLimits() async throws {
        // Slow refills (one token per 20 s), so a loaded machine cannot refill the bucket between posts.
        try await TestRelay.with({ $0.postsPerSecondPerMailbox = 0.05; $0.postBurstPerMailbox = 2 }) { relay in
            let owner = try await Owner.register(on: relay)
            let url = "\(relay.url)/v1/mailboxes/\(owner.mailbox)/envelopes"
            let auth = [("Authorization", "Bearer \(owner.token.bearer)")]
            var statuses: [Int] = []
            var limited: RawResponse?
            for _ in 0..<4 {
                let response = try await raw("POST", url, headers: auth, body: sampleEnvelope().encoded)
                statuses.append(response.status)
                if response.status == 429 { limited = response }
            }
            #expect(statuses.prefix(2) == [201, 201])
            #expect(statuses.contains(429))
            #expect(limited?.headers["retry-after"].flatMap(Int.init) ?? 0 >= 1)
            #expect(limited?.body.contains("rate_limited") == true)
        }
        try await TestRelay.with({ $0.requestsPerSecondPerIP = 0.05; $0.requestBurstPerIP = 3 }) { relay in
            var statuses: [Int] = []
            for _ in 0..<6 {
                statuses.append(try await raw("GET", "\(relay.url)/v1/mailboxes/AAAAAAAAAAAAAAAAAAAAAA/send-tokens").status)
            }
            #expect(statuses.contains(429))
            // Health checks are never rate limited.
            #expect(try await raw("GET", "\(relay.url)/healthz").status == 200)
        }
    }

    @Test("Pairing slot: one companion, one reply, then gone; a second party is told the slot is used")
    func pairingSlot() async throws {
        try await TestRelay.with { relay in
            let host = try await Owner.register(on: relay)
            let slot = PairingSlotID.random()
            let expiresAt = try await relay.client.openPairingSlot(slot, owner: host.key, ttl: 300)
            #expect(expiresAt > Int64(Date().timeIntervalSince1970))
            await expectRefusal(.badRequest) { try await relay.client.openPairingSlot(PairingSlotID.random(), owner: host.key, ttl: 601) }
            #expect(try await relay.client.pairingRequest(slot, owner: host.key) == nil)

            let claim = SecretBytes.random(count: 32)
            let request = sampleEnvelope()
            try await relay.client.putPairingRequest(request, slot: slot, claim: claim)
            let intruder = await expectRefusal(.slotAlreadyUsed) {
                try await relay.client.putPairingRequest(sampleEnvelope(), slot: slot, claim: SecretBytes.random(count: 32))
            }
            #expect(intruder?.message.contains("slot already used") == true)
            #expect(try await relay.client.pairingRequest(slot, owner: host.key) == request.encoded)
            #expect(try await relay.client.takePairingReply(slot: slot, claim: claim) == nil)
            let reply = sampleEnvelope()
            try await relay.client.putPairingReply(reply, slot: slot, owner: host.key)
            await expectRefusal(.forbidden) { try await relay.client.takePairingReply(slot: slot, claim: SecretBytes.random(count: 32)) }
            #expect(try await relay.client.takePairingReply(slot: slot, claim: claim) == reply.encoded)
            await expectRefusal(.notFound) { try await relay.client.takePairingReply(slot: slot, claim: claim) }
            await expectRefusal(.notFound) { try await relay.client.putPairingRequest(sampleEnvelope(), slot: PairingSlotID.random(), claim: claim) }
            // Requests without a claim are refused.
            #expect(try await raw("PUT", "\(relay.url)/v1/pairing-slots/\(PairingSlotID.random())/request", body: sampleEnvelope().encoded).status == 401)
        }
    }

    @Test("A host cannot keep more than max_open_pairing_slots slots open")
    func openSlotCap() async throws {
        try await TestRelay.with({ $0.maximumOpenPairingSlots = 2 }) { relay in
            let host = try await Owner.register(on: relay)
            let first = PairingSlotID.random()
            try await relay.client.openPairingSlot(first, owner: host.key, ttl: 300)
            try await relay.client.openPairingSlot(PairingSlotID.random(), owner: host.key, ttl: 300)
            let refusal = await expectRefusal(.quotaExceeded) {
                try await relay.client.openPairingSlot(PairingSlotID.random(), owner: host.key, ttl: 300)
            }
            #expect(refusal?.message.contains("2 pairing slots open") == true)
            // Cancelling one makes room again.
            try await relay.client.cancelPairingSlot(first, owner: host.key)
            try await relay.client.openPairingSlot(PairingSlotID.random(), owner: host.key, ttl: 300)
        }
    }

    @Test("Health, metrics, unknown routes and closing a mailbox")
    func operations() async throws {
        try await TestRelay.with { relay in
            #expect(await relay.client.isHealthy())
            let owner = try await Owner.register(on: relay)
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token)
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: SendToken()) }
            let metrics = try await raw("GET", "\(relay.url)/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.body.contains("errand_relay_envelopes_stored_total 1"))
            #expect(metrics.body.contains("errand_relay_refusals_total{reason=\"forbidden\"} 1"))
            // SQLite's write-ahead log: the post is in it, and no checkpoint has failed.
            let walPages = metrics.body.split(separator: "\n").first { $0.hasPrefix("errand_relay_wal_pages ") }
            #expect((walPages?.split(separator: " ").last).flatMap { Double($0) } ?? 0 > 0, "\(walPages ?? "no errand_relay_wal_pages")")
            #expect(metrics.body.contains("errand_relay_wal_checkpoint_failures 0"))
            // Metrics never carry ids.
            #expect(!metrics.body.contains(owner.mailbox.description))
            let unknown = try await raw("GET", "\(relay.url)/v2/nothing")
            #expect(unknown.status == 404)
            #expect(unknown.body.contains("not_found"))

            try await relay.client.closeMailbox(owner: owner.key)
            await expectRefusal(.forbidden) { try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token) }
            await expectRefusal(.notFound) { try await relay.client.fetch(owner: owner.key) }
        }
    }
}
