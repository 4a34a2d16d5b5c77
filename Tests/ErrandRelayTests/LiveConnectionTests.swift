import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandRelayClient
import Foundation
import Testing

/// The live connection's own rules, checked with a raw WebSocket client that sends what the
/// client library never would.
@Suite("Live connections: authentication, frames, keepalive", .serialized)
struct LiveConnectionTests {
    func port(_ url: String) -> Int { Int(url.split(separator: ":").last ?? "") ?? 0 }

    /// Upgrades to the owner's live URL and returns the socket and the relay's challenge.
    func connect(_ relay: TestRelay, _ mailbox: MailboxID) async throws -> (RawWebSocket, String) {
        let socket = try await RawWebSocket.connect(port: port(relay.url), path: "/v1/mailboxes/\(mailbox)/live")
        let first = try #require(await socket.receive())
        #expect(first.opcode == RawWebSocket.text)
        let challenge = try JSONDecoder().decode(LiveAuthentication.Challenge.self, from: Data(first.payload)).challenge
        return (socket, challenge)
    }

    /// A live connection of a new owner whose mailbox holds one envelope; returns after that
    /// envelope and the caught-up marker have arrived.
    func liveWithOneEnvelope(_ relay: TestRelay) async throws -> (Owner, Envelope, RawWebSocket) {
        let owner = try await Owner.register(on: relay)
        let envelope = sampleEnvelope()
        _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
        let (socket, challenge) = try await connect(relay, owner.mailbox)
        try await answer(socket, challenge: challenge, owner: owner, on: relay)
        let pushed = try #require(await socket.receive())
        guard case .envelope(_, let bytes) = try LiveFrame(parsing: pushed.payload) else { throw LiveTestError("expected an envelope") }
        #expect(try Envelope(parsing: bytes) == envelope)
        guard case .caughtUp = try LiveFrame(parsing: try #require(await socket.receive()).payload) else { throw LiveTestError("expected caught-up") }
        return (owner, envelope, socket)
    }

    struct LiveTestError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The live connection count `/healthz` reports.
    func liveConnections(_ relay: TestRelay) async throws -> Int {
        struct Health: Decodable { let liveConnections: Int }
        return try JSONDecoder().decode(Health.self, from: Data(try await raw("GET", "\(relay.url)/healthz").bytes)).liveConnections
    }

    /// Answers the challenge as the owner, for `relay`'s verifier key (or the key given).
    func answer(_ socket: RawWebSocket, challenge: String, owner: Owner, on relay: TestRelay, after: Int64? = nil,
                signingFor relayKey: String? = nil) async throws {
        var key = relayKey
        if key == nil { key = try await relay.client.auditVerifierKey() }
        let answer = LiveAuthentication.answer(challenge: challenge, relay: key ?? "", mailbox: owner.mailbox, key: owner.key, after: after)
        socket.send(text: String(decoding: try JSONEncoder().encode(answer), as: UTF8.self))
    }

    /// Reads the refusal text frame and the close frame that follows it.
    func expectRefusal(_ socket: RawWebSocket, _ code: RelayErrorCode, containing text: String,
                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let frame = try #require(await socket.receiveSkippingPings(), sourceLocation: sourceLocation)
        #expect(frame.opcode == RawWebSocket.text, sourceLocation: sourceLocation)
        let body = try JSONDecoder().decode(RelayErrorBody.self, from: Data(frame.payload))
        #expect(body.error.code == code.rawValue, sourceLocation: sourceLocation)
        #expect(body.error.message.contains(text), "\(body.error.message)", sourceLocation: sourceLocation)
        let close = try #require(await socket.receiveSkippingPings(), sourceLocation: sourceLocation)
        #expect(close.closeCode == 1008, sourceLocation: sourceLocation)
    }

    @Test("A wrong challenge signature is refused with a reason and close code 1008; nothing is pushed")
    func wrongSignature() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            _ = try await relay.client.post(sampleEnvelope(), to: owner.mailbox, token: owner.token)
            let (socket, challenge) = try await connect(relay, owner.mailbox)
            try await answer(socket, challenge: challenge + "x", owner: owner, on: relay)
            try await expectRefusal(socket, .unauthenticated, containing: "does not verify")
            // The client completes the close handshake; the relay closes at once, the stored envelope never sent.
            socket.send(opcode: RawWebSocket.close, [0x03, 0xE8])
            let started = ContinuousClock.now
            #expect(await socket.receive() == nil)
            // Closed, not the read giving up after 10 s (a stall bound with room for a busy machine).
            #expect(ContinuousClock.now - started < .seconds(9))
        }
    }

    @Test("An answer signed for another relay, or in the version without the relay, is refused; nothing is pushed")
    func answerBoundToTheRelay() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let envelope = sampleEnvelope()
            _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)

            // A relay that forwarded this relay's challenge would get an answer for its own key.
            let elsewhere = "relay.elsewhere.example+0a1b2c3d+" + ByteEncoding.base64URL(Ed25519.SecretKey().publicKey.bytes)
            let (forwarded, challenge) = try await connect(relay, owner.mailbox)
            try await answer(forwarded, challenge: challenge, owner: owner, on: relay, signingFor: elsewhere)
            try await expectRefusal(forwarded, .unauthenticated, containing: "does not verify")

            // Version 1 signed only the mailbox and the challenge.
            let (old, oldChallenge) = try await connect(relay, owner.mailbox)
            let v1 = Array("errand-relay-live-v1\n\(owner.mailbox)\n\(oldChallenge)".utf8)
            let v1Answer = LiveAuthentication.Answer(key: ByteEncoding.base64URL(owner.key.publicKey.bytes),
                                                     signature: ByteEncoding.base64URL(owner.key.signature(for: v1)), after: nil)
            old.send(text: String(decoding: try JSONEncoder().encode(v1Answer), as: UTF8.self))
            try await expectRefusal(old, .unauthenticated, containing: "does not verify")

            // Nothing was delivered or acknowledged: the envelope is still there, and the right answer gets it.
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.map(\.envelope) == [envelope])
            let (socket, fresh) = try await connect(relay, owner.mailbox)
            try await answer(socket, challenge: fresh, owner: owner, on: relay)
            let pushed = try #require(await socket.receive())
            guard case .envelope(_, let bytes) = try LiveFrame(parsing: pushed.payload) else { throw LiveTestError("expected an envelope") }
            #expect(try Envelope(parsing: bytes) == envelope)
        }
    }

    @Test("A first message that is not an answer, or a URL that names no mailbox, is refused")
    func malformedAnswerAndURL() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let (socket, _) = try await connect(relay, owner.mailbox)
            socket.send(opcode: RawWebSocket.binary, [0x03])
            try await expectRefusal(socket, .unauthenticated, containing: "must answer the challenge")

            let nowhere = try await RawWebSocket.connect(port: port(relay.url), path: "/v1/mailboxes/not-a-mailbox/live")
            try await expectRefusal(nowhere, .badRequest, containing: "does not name a mailbox")
        }
    }

    @Test("A connection that never answers the challenge is closed after the authentication time")
    func authenticationTimeout() async throws {
        try await TestRelay.with({ $0.liveAuthenticationSeconds = 1 }) { relay in
            let owner = try await Owner.register(on: relay)
            let started = ContinuousClock.now
            let (socket, _) = try await connect(relay, owner.mailbox)
            try await expectRefusal(socket, .unauthenticated, containing: "no answer to the challenge within 1 seconds")
            // A stall bound with room for a busy machine, not a speed check.
            #expect(ContinuousClock.now - started < .seconds(9))
        }
    }

    @Test("After going live, a frame that is not an acknowledgement is refused and acknowledges nothing")
    func notAnAcknowledgement() async throws {
        try await TestRelay.with { relay in
            let (owner, envelope, socket) = try await liveWithOneEnvelope(relay)
            // A text frame naming the id, not the binary acknowledgement.
            socket.send(text: "ack \(envelope.id)")
            try await expectRefusal(socket, .badRequest, containing: "acknowledgement frame")
            #expect(try await relay.client.fetch(owner: owner.key).envelopes.map(\.envelope) == [envelope])
        }
    }

    @Test("Unmasked client frames close with 1002; a message over 64 KiB closes with 1009")
    func protocolViolations() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let (unmasked, _) = try await connect(relay, owner.mailbox)
            unmasked.send(opcode: RawWebSocket.text, Array("{}".utf8), masked: false)
            #expect(try #require(await unmasked.receive()).closeCode == 1002)

            let (oversized, challenge) = try await connect(relay, owner.mailbox)
            try await answer(oversized, challenge: challenge, owner: owner, on: relay)
            guard case .caughtUp = try LiveFrame(parsing: try #require(await oversized.receive()).payload) else { Issue.record("expected caught-up"); return }
            oversized.send(opcode: RawWebSocket.binary, [0x03] + [UInt8](repeating: 0, count: 65 * 1024))
            #expect(try #require(await oversized.receive()).closeCode == 1009)

            // Two fragments that add up to more than 64 KiB are refused the same way.
            let (fragmented, again) = try await connect(relay, owner.mailbox)
            try await answer(fragmented, challenge: again, owner: owner, on: relay)
            _ = await fragmented.receive()
            fragmented.send(opcode: RawWebSocket.binary, [UInt8](repeating: 0, count: 40 * 1024), fin: false)
            fragmented.send(opcode: 0x0, [UInt8](repeating: 0, count: 40 * 1024))
            #expect(try #require(await fragmented.receive()).closeCode == 1009)
        }
    }

    @Test("The relay answers pings, pings idle peers, and drops a peer that stops answering")
    func keepalive() async throws {
        try await TestRelay.with({ $0.webSocketPingSeconds = 1 }) { relay in
            let owner = try await Owner.register(on: relay)
            let (socket, challenge) = try await connect(relay, owner.mailbox)
            try await answer(socket, challenge: challenge, owner: owner, on: relay)
            _ = try #require(await socket.receive())  // caught up

            socket.send(opcode: RawWebSocket.ping, [1, 2, 3])
            let pong = try #require(await socket.receive())
            #expect(pong.opcode == RawWebSocket.pong && pong.payload == [1, 2, 3])

            // Answer three pings: still connected, and live pushes still arrive.
            for _ in 0..<3 {
                let ping = try #require(await socket.receive())
                #expect(ping.opcode == RawWebSocket.ping)
                socket.send(opcode: RawWebSocket.pong, ping.payload)
            }
            let envelope = sampleEnvelope()
            _ = try await relay.client.post(envelope, to: owner.mailbox, token: owner.token)
            let pushed = try #require(await socket.receiveSkippingPings())
            guard case .envelope = try LiveFrame(parsing: pushed.payload) else { Issue.record("expected an envelope"); return }

            // Stop answering: the next ping period ends the connection with a close frame.
            let close = try #require(await socket.receiveSkippingPings())
            #expect(close.closeCode == 1001)
            #expect(close.text.contains("no pong"))
        }
    }

    @Test("A close frame from the client is echoed and the connection released")
    func clientClose() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            let (socket, challenge) = try await connect(relay, owner.mailbox)
            try await answer(socket, challenge: challenge, owner: owner, on: relay)
            _ = try #require(await socket.receive())  // caught up
            #expect(try await liveConnections(relay) == 1)
            socket.send(opcode: RawWebSocket.close, [0x03, 0xE8])
            #expect(try #require(await socket.receive()).closeCode == 1000)
            #expect(await socket.receive() == nil)
            var remaining = 1
            for _ in 0..<50 where remaining > 0 {
                remaining = try await liveConnections(relay)
                if remaining > 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(remaining == 0)
        }
    }

    @Test("A fragmented acknowledgement is joined and applied; an unmasked fragment closes with 1002")
    func fragmentedAcknowledgement() async throws {
        try await TestRelay.with { relay in
            let (owner, envelope, socket) = try await liveWithOneEnvelope(relay)
            let frame = LiveFrame.acknowledge([envelope.id]).encoded
            socket.send(opcode: RawWebSocket.binary, Array(frame.prefix(5)), fin: false)
            socket.send(opcode: 0x0, Array(frame.dropFirst(5)))
            var remaining = 1
            for _ in 0..<50 where remaining > 0 {
                remaining = try await relay.client.fetch(owner: owner.key).envelopes.count
                if remaining > 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(remaining == 0)

            socket.send(opcode: RawWebSocket.binary, Array(frame.prefix(5)), fin: false)
            socket.send(opcode: 0x0, Array(frame.dropFirst(5)), masked: false)
            #expect(try #require(await socket.receive()).closeCode == 1002)
        }
    }

    @Test("Close codes a peer may send are echoed; others are answered with 1002")
    func closeCodes() async throws {
        try await TestRelay.with { relay in
            let owner = try await Owner.register(on: relay)
            for (sent, expected) in [([0x0F, 0xA0], 4000), ([0x03, 0xED], 1002), ([0x03], 1002), ([0x03, 0xE9], 1001)] as [([UInt8], UInt16)] {
                let (socket, _) = try await connect(relay, owner.mailbox)
                socket.send(opcode: RawWebSocket.close, sent)
                #expect(try #require(await socket.receive()).closeCode == expected, "sent \(sent)")
            }
        }
    }
}
