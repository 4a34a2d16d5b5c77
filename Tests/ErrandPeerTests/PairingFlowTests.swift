import ErrandCompanion
import ErrandCrypto
@testable import ErrandHost
import ErrandPeer
import ErrandProtocol
import ErrandRelayClient
import ErrandTestSupport
import Foundation
import Testing

@Suite("Pairing between host and companion over a real relay")
struct PairingFlowTests {
    @Test("Pairing registers the device on both sides with the same SAS; messages flow and are stored once")
    func pairAndTalk() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let hostPresenter = HostPresenter()
        let hostSide = world.pairing(host, presenter: hostPresenter)
        let offer = try await hostPresenter.offer()
        let companionPresenter = CompanionPresenter()
        let store = try world.companion("phone")
        let paired = try await world.companionPairing(store, offer: offer, presenter: companionPresenter).get()
        let device = try await hostSide.value.get()

        #expect(hostPresenter.sas != nil)
        #expect(hostPresenter.sas == companionPresenter.sas)
        #expect(paired.name == "studio")
        #expect(paired.hostSigningKey == host.identity.signing.publicKey)
        #expect(device.name == "phone")
        #expect(try host.store.devices().map(\.name) == ["phone"])
        #expect(try store.hosts().map(\.name) == ["studio"])

        // Messages go through the relay sealed, arrive in order, and are stored with the session.
        let messenger = CompanionMessenger(store: store, client: world.client)
        for text in ["one", "two", "three"] {
            let (_, delivered) = try await messenger.send(Array(text.utf8), hostName: nil)
            #expect(delivered)
        }
        #expect(try store.pending(for: paired.id).isEmpty)
        let inbox = HostInbox(store: host.store)
        let outcomes = try await inbox.drain(client: world.client, identity: host.identity)
        #expect(outcomes.compactMap { outcome -> String? in
            if case .received(let from, let payload) = outcome, from.id == device.id { return String(decoding: payload, as: UTF8.self) }
            return nil
        } == ["one", "two", "three"])
        #expect(try host.store.devices().first?.lastSeenAt != nil)

        // A redelivered envelope (relay at-least-once, or a crash before the ack) is not processed twice,
        // also after the host restarts from its files.
        let (id, _) = try await messenger.send(Array("four".utf8), hostName: "studio")
        let page = try await world.client.fetch(owner: host.identity.signing)
        let envelope = try #require(page.envelopes.first { $0.envelope.id == id }?.envelope)
        guard case .received(_, let payload) = try inbox.process(envelope) else {
            Issue.record("the first delivery was not received"); return
        }
        #expect(payload == Array("four".utf8))
        #expect(try inbox.process(envelope) == .duplicate)
        let reopened = HostInbox(store: try HostStore(directory: host.directory))
        #expect(try reopened.process(envelope) == .duplicate)
        #expect(try host.store.inbox().count == 4)

        // The reply direction works once the companion has spoken.
        var hostSession = try #require(try host.store.activeSessions().first).session
        var channel = try store.channel(named: "studio")
        #expect(try channel.session.open(hostSession.seal(Array("done".utf8))) == Array("done".utf8))
    }

    @Test("State files are private: folder 0700, keys and databases 0600")
    func privateFiles() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (store, _, _) = try await world.pair(host, companionName: "phone")
        _ = store
        for folder in [host.directory.path, world.folder.path("companion-phone")] {
            #expect(try FileManager.default.attributesOfItem(atPath: folder)[.posixPermissions] as? Int == 0o700)
            for file in try FileManager.default.contentsOfDirectory(atPath: folder) {
                let attributes = try FileManager.default.attributesOfItem(atPath: folder + "/" + file)
                let mode = attributes[.posixPermissions] as? Int
                let expected = attributes[.type] as? FileAttributeType == .typeDirectory ? 0o700 : 0o600
                #expect(mode == expected, "\(file) has mode \(String(mode ?? 0, radix: 8))")
            }
        }
        // A state folder others can read is refused, not used.
        chmod(host.directory.path, 0o755)
        #expect(throws: PeerError.self) { try HostSetup.load(directory: host.directory) }
    }

    @Test("Revoking one device cuts it off at the relay and on the host; the others keep working")
    func revoke() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (phone, _, phoneDevice) = try await world.pair(host, companionName: "phone")
        let (laptop, _, _) = try await world.pair(host, companionName: "laptop")
        let phoneMessenger = CompanionMessenger(store: phone, client: world.client)
        let laptopMessenger = CompanionMessenger(store: laptop, client: world.client)
        // Sent before the revocation, still waiting at the relay.
        _ = try await phoneMessenger.send(Array("rm -rf later".utf8), hostName: nil)

        try await DeviceRevocation.revoke(phoneDevice, host: host, client: world.client, relayURL: world.relay.baseURL)
        let tokens = try await world.client.sendTokens(owner: host.identity.signing)
        #expect(!tokens.contains(phoneDevice.inboundTokenHash))
        #expect(tokens.count == 1)

        let refusal = await #expect(throws: PeerError.self) { try await phoneMessenger.send(Array("after".utf8), hostName: nil) }
        #expect(refusal?.message.contains("revoked") == true)
        _ = try await laptopMessenger.send(Array("still here".utf8), hostName: nil)

        let outcomes = try await HostInbox(store: host.store).drain(client: world.client, identity: host.identity)
        #expect(outcomes.count == 2)
        guard case .refused = outcomes[0] else { Issue.record("the revoked device's queued message was not refused: \(outcomes[0])"); return }
        guard case .received(let from, let payload) = outcomes[1] else { Issue.record("the laptop's message was not received"); return }
        #expect(from.name == "laptop")
        #expect(payload == Array("still here".utf8))
        #expect(try host.store.inbox().count == 1)
        let listed = try host.store.devices(includeRevoked: true)
        #expect(listed.first { $0.name == "phone" }?.isRevoked == true)
        #expect(listed.first { $0.name == "phone" }?.relayTokenRemoved == true)
        #expect(try host.store.devices().map(\.name) == ["laptop"])
    }

    @Test("One companion pairs with two hosts and reaches each by name, with separate keys")
    func severalHosts() async throws {
        let world = try await PeerWorld.start()
        let studio = try await world.makeHost("studio")
        let laptop = try await world.makeHost("laptop")
        let store = try world.companion("phone")
        for host in [studio, laptop] {
            let presenter = HostPresenter()
            let hostSide = world.pairing(host, presenter: presenter)
            _ = try await world.companionPairing(store, offer: try await presenter.offer()).get()
            _ = try await hostSide.value.get()
        }
        #expect(try store.hosts().map(\.name) == ["laptop", "studio"])
        // The device uses different keys with each host: the relay cannot link the two pairings.
        let keys = try [studio, laptop].map { try $0.store.devices()[0].signingKey }
        #expect(keys[0] != keys[1])
        let messenger = CompanionMessenger(store: store, client: world.client)
        #expect(throws: PeerError.self) { try store.channel(named: nil) }
        _ = try await messenger.send(Array("to studio".utf8), hostName: "studio")
        _ = try await messenger.send(Array("to laptop".utf8), hostName: "laptop")
        for (host, text) in [(studio, "to studio"), (laptop, "to laptop")] {
            let outcomes = try await HostInbox(store: host.store).drain(client: world.client, identity: host.identity)
            guard outcomes.count == 1, case .received(_, let payload) = outcomes[0] else { Issue.record("\(text): \(outcomes)"); continue }
            #expect(payload == Array(text.utf8))
        }
    }

    @Test("Wrong secret: the host rejects with a signed answer, the companion says so, nothing is registered")
    func wrongSecret() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter()
        let hostSide = world.pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        let forged = try altered(offer, "t", to: ByteEncoding.base64URL(SecureRandom.bytes(count: 16)))
        let store = try world.companion("phone")
        let companionError = await world.companionPairing(store, offer: forged).failure
        let hostError = await hostSide.value.failure
        #expect(companionError?.message.contains("rejected this device") == true, "\(String(describing: companionError))")
        #expect(hostError?.message.contains("did not prove") == true, "\(String(describing: hostError))")
        #expect(presenter.timesAsked == 0)
        #expect(try host.store.devices(includeRevoked: true).isEmpty)
        #expect(try store.hosts().isEmpty)
        #expect(try await world.client.sendTokens(owner: host.identity.signing).isEmpty)
    }

    @Test("The host declines: both sides say so, nothing is registered")
    func declined() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter(.decline)
        let hostSide = world.pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        let store = try world.companion("phone")
        let companionError = await world.companionPairing(store, offer: offer).failure
        let hostError = await hostSide.value.failure
        #expect(companionError?.message.contains("declined") == true)
        #expect(hostError?.message.contains("declined") == true)
        #expect(try host.store.devices(includeRevoked: true).isEmpty)
        #expect(try store.hosts().isEmpty)
    }

    @Test("A code with another host key (tampered): the host cannot read the request and closes the slot")
    func tamperedOffer() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter()
        let hostSide = world.pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        let swapped = try altered(offer, "x", to: ByteEncoding.base64URL(X25519.SecretKey().publicKey.bytes))
        let store = try world.companion("phone")
        let companionError = await world.companionPairing(store, offer: swapped).failure
        let hostError = await hostSide.value.failure
        #expect(hostError?.message.contains("not sealed to this computer") == true, "\(String(describing: hostError))")
        #expect(companionError?.message.contains("closed the pairing code") == true, "\(String(describing: companionError))")
        #expect(try host.store.devices(includeRevoked: true).isEmpty)
        #expect(try store.hosts().isEmpty)
    }

    @Test("A third party on the slot: the real device is told the code was used; the host refuses the intruder")
    func thirdParty() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter()
        let hostSide = world.pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        // Someone who learned the slot id (the relay, say) but not the secret answers first.
        let intruder = Ed25519.SecretKey()
        let guess = try altered(offer, "t", to: ByteEncoding.base64URL(SecureRandom.bytes(count: 16)))
        let request = PairingRequest(companionSigningKey: intruder.publicKey, companionAgreementKey: X25519.SecretKey().publicKey,
                                     companionEphemeralKey: X25519.SecretKey().publicKey, hostSendToken: SendToken(), deviceName: "evil")
        try await world.client.putPairingRequest(try request.sealed(for: guess, signer: intruder), slot: offer.slotID, claim: .random(count: 32))

        let store = try world.companion("phone")
        let companionError = await world.companionPairing(store, offer: offer).failure
        #expect(companionError?.message.contains("already used by another device") == true, "\(String(describing: companionError))")
        let hostError = await hostSide.value.failure
        #expect(hostError?.message.contains("did not prove") == true)
        #expect(presenter.timesAsked == 0)
        #expect(try host.store.devices(includeRevoked: true).isEmpty)
        #expect(try store.hosts().isEmpty)
    }

    @Test("The SAS waits for the host's signed receipt of this device's own request; a receipt for another request shows no SAS and saves nothing")
    func receiptBeforeSAS() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        // The host's side played by hand: a relay that swapped the request shows the host another
        // device's, and the host signs a receipt for that one.
        let offer = try PairingOffer.make(relayURL: world.relay.baseURL, hostSigningKey: host.identity.signing.publicKey,
                                          hostAgreementKey: host.identity.agreement.publicKey, hostName: "studio",
                                          auditVerifierKey: nil, lifetime: 30)
        try await world.client.openPairingSlot(offer.slotID, owner: host.identity.signing, ttl: 30)
        let store = try world.companion("phone")
        let presenter = CompanionPresenter()
        let phone = Task { await world.companionPairing(store, offer: offer, presenter: presenter, grace: 0) }
        var request: [UInt8]?
        for _ in 0..<400 where request == nil {
            request = try await world.client.pairingRequest(offer.slotID, owner: host.identity.signing)
            if request == nil { try await Task.sleep(for: .milliseconds(25)) }
        }
        #expect(request != nil)
        try await Task.sleep(for: .milliseconds(400))
        #expect(presenter.sas == nil, "no SAS before the host's receipt")
        let swapped = PairingRequest(companionSigningKey: Ed25519.SecretKey().publicKey, companionAgreementKey: X25519.SecretKey().publicKey,
                                     companionEphemeralKey: X25519.SecretKey().publicKey, hostSendToken: SendToken(), deviceName: "phone")
        try await world.client.putPairingReceipt(PairingReceipt.sealed(for: swapped, hostSigningKey: host.identity.signing),
                                                 slot: offer.slotID, owner: host.identity.signing)
        let failure = try #require(await phone.value.failure)
        #expect(failure.message.contains("received another request than this device's"), "\(failure.message)")
        #expect(presenter.sas == nil)
        #expect(try store.hosts().isEmpty)

        // With the real host, the receipt is for the phone's own request and the same SAS shows on both sides.
        let (_, paired, device) = try await world.pair(host, companionName: "tablet")
        #expect(paired.name == "studio" && device.name == "tablet")
    }

    @Test("A used code cannot pair a second device")
    func reusedOffer() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter()
        let hostSide = world.pairing(host, presenter: presenter)
        let offer = try await presenter.offer()
        _ = try await world.companionPairing(try world.companion("phone"), offer: offer).get()
        _ = try await hostSide.value.get()
        let second = try world.companion("other")
        let error = await world.companionPairing(second, offer: offer, name: "other").failure
        #expect(error?.message.contains("no longer open") == true, "\(String(describing: error))")
        #expect(try host.store.devices().map(\.name) == ["phone"])
        #expect(try second.hosts().isEmpty)
    }

    @Test("Timeouts: nobody answers the host; the host never answers the companion")
    func timeouts() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let hostError = await world.pairing(host, lifetime: 1, presenter: HostPresenter()).value.failure
        #expect(hostError?.message.contains("no device answered") == true)

        let hanging = HostPresenter(.hang)
        // Room for a loaded machine: the host's receipt must reach the companion well before
        // expiry, so that what times out is the wait for the answer.
        let hostSide = world.pairing(host, lifetime: 8, presenter: hanging)
        let offer = try await hanging.offer()
        let store = try world.companion("phone")
        let companionError = await world.companionPairing(store, offer: offer, grace: 0.5).failure
        #expect(companionError?.message.contains("did not answer before the pairing code expired") == true, "\(String(describing: companionError))")
        hostSide.cancel()
        #expect(try store.hosts().isEmpty)
    }

    @Test("The relay unreachable: a clear error, nothing saved")
    func unreachable() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let presenter = HostPresenter()
        let hostSide = world.pairing(host, lifetime: 3, presenter: presenter)
        let offer = try await presenter.offer()
        let store = try world.companion("phone")
        let error = await world.companionPairing(store, offer: offer, relayURL: "http://127.0.0.1:9").failure
        #expect(error?.message.contains("cannot reach the relay") == true, "\(String(describing: error))")
        #expect(try store.hosts().isEmpty)
        _ = await hostSide.value
        let initError = await #expect(throws: PeerError.self) {
            try await HostSetup.initialize(directory: StateDirectory(path: world.folder.path("nowhere")), relayURL: "http://127.0.0.1:9",
                                           name: "x", invite: nil, client: RelayClient(baseURL: "http://127.0.0.1:9"))
        }
        #expect(initError?.message.contains("cannot reach the relay") == true)
        #expect(!FileManager.default.fileExists(atPath: world.folder.path("nowhere/identity.key")))
    }
}

@Suite("Receiving is crash-safe and exactly-once")
struct ReceivingTests {
    @Test("A crash before the commit replays cleanly; after the commit a redelivery is a duplicate; tampering changes nothing")
    func crashSafety() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (store, _, _) = try await world.pair(host, companionName: "phone")
        let messenger = CompanionMessenger(store: store, client: world.client)
        _ = try await messenger.send(Array("first".utf8), hostName: nil)
        _ = try await messenger.send(Array("second".utf8), hostName: nil)
        let envelopes = try await world.client.fetch(owner: host.identity.signing).envelopes.map(\.envelope)
        #expect(envelopes.count == 2)

        // The host decrypts the first message in memory and "crashes" before storing anything.
        var inMemory = try #require(try host.store.activeSessions().first).session
        #expect(try inMemory.open(envelopes[0]) == Array("first".utf8))

        // A tampered copy is refused and leaves the stored session as it was.
        var bytes = envelopes[0].ciphertext
        bytes[bytes.count - 5] ^= 0x40
        let inbox = HostInbox(store: try HostStore(directory: host.directory))
        guard case .refused = try inbox.process(try Envelope(id: EnvelopeID.random(), ciphertext: bytes)) else {
            Issue.record("a tampered envelope was not refused"); return
        }

        // After the restart both messages are processed from the stored state, in order.
        for (envelope, text) in zip(envelopes, ["first", "second"]) {
            guard case .received(_, let payload) = try inbox.process(envelope) else { Issue.record("\(text) not received"); return }
            #expect(payload == Array(text.utf8))
        }
        // Stored but not acknowledged, then delivered again: processed once only.
        let restarted = HostInbox(store: try HostStore(directory: host.directory))
        let redelivered = try await restarted.drain(client: world.client, identity: host.identity)
        #expect(redelivered == [.duplicate, .duplicate])
        #expect(try host.store.inbox().map { String(decoding: $0.payload, as: UTF8.self) } == ["first", "second"])
        #expect(try await world.client.fetch(owner: host.identity.signing).envelopes.isEmpty)

        // The session is still in step: the next message opens.
        _ = try await messenger.send(Array("third".utf8), hostName: nil)
        let next = try await restarted.drain(client: world.client, identity: host.identity)
        guard case .received(_, let payload) = next.first else { Issue.record("third not received"); return }
        #expect(payload == Array("third".utf8))
    }

    @Test("A message the relay could not take stays in the outbox with its session state and goes later")
    func outbox() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (store, paired, _) = try await world.pair(host, companionName: "phone")
        // The relay is down: the message is sealed and kept, not lost.
        let down = CompanionMessenger(store: store, client: RelayClient(baseURL: "http://127.0.0.1:9"))
        let (_, delivered) = try await down.send(Array("while offline".utf8), hostName: nil)
        #expect(!delivered)
        #expect(try store.pending(for: paired.id).count == 1)
        // Back online: the next send flushes the queue in order.
        let up = CompanionMessenger(store: store, client: world.client)
        _ = try await up.send(Array("back".utf8), hostName: nil)
        #expect(try store.pending(for: paired.id).isEmpty)
        let outcomes = try await HostInbox(store: host.store).drain(client: world.client, identity: host.identity)
        #expect(outcomes.compactMap { outcome -> String? in
            if case .received(_, let payload) = outcome { return String(decoding: payload, as: UTF8.self) }
            return nil
        } == ["while offline", "back"])
    }
}

@Suite("The host agent runs each task exactly once")
struct ExactlyOnceTests {
    @Test("A redelivered or replayed envelope never runs its task twice")
    func duplicateEnvelope() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (store, paired, _) = try await world.pair(host, companionName: "phone")
        let counter = world.folder.path("runs")
        let action = host.directory.file("actions/count")
        try "#!/bin/sh\n# description: Counts its runs\necho run >> \"$1\"\n".write(toFile: action, atomically: true, encoding: .utf8)
        chmod(action, 0o700)
        let agent = HostAgent(host: host, configuration: HostConfiguration(), client: world.client) { _ in }

        let task = UUID().uuidString.lowercased()
        _ = try store.sendTask(TaskRequest(task: task, executor: .action, action: "count", arguments: [counter]), to: paired)
        #expect(try await CompanionMessenger(store: store, client: world.client).flush(store.channel(named: nil)))
        let envelope = try #require(try await world.client.fetch(owner: host.identity.signing).envelopes.first?.envelope)
        await agent.receive(envelope)
        await agent.receive(envelope)
        // The relay (or anyone) replays the same ciphertext under a fresh envelope id: it does not open.
        await agent.receive(try Envelope(id: .random(), ciphertext: envelope.ciphertext))
        for _ in 0..<200 where try host.store.task(task)?.status.isFinal != true { try await Task.sleep(for: .milliseconds(25)) }
        #expect(try host.store.task(task)?.status == .succeeded)
        // A restarted agent sees it as processed too.
        let restarted = HostAgent(host: try HostSetup.load(directory: host.directory), configuration: HostConfiguration(), client: world.client) { _ in }
        await restarted.receive(envelope)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try String(contentsOfFile: counter, encoding: .utf8) == "run\n")
        #expect(try host.store.conversation().count == 1)
        #expect(try host.store.executionLog().count == 1)
    }
}

@Suite("Output pieces end on character boundaries")
struct OutputPieceTests {
    @Test("A piece never ends inside a UTF-8 character unless it is the last")
    func boundaries() {
        let text = Array("aé€😀".utf8)  // 1, 2, 3 and 4 bytes
        #expect(HostAgent.characterBoundary(in: text, atMost: 100, final: true) == 10)
        #expect(HostAgent.characterBoundary(in: text, atMost: 100, final: false) == 10)
        #expect(HostAgent.characterBoundary(in: text, atMost: 2, final: false) == 1)
        #expect(HostAgent.characterBoundary(in: text, atMost: 5, final: false) == 3)
        #expect(HostAgent.characterBoundary(in: text, atMost: 6, final: false) == 6)
        #expect(HostAgent.characterBoundary(in: text, atMost: 9, final: false) == 6)
        #expect(HostAgent.characterBoundary(in: Array(text.prefix(8)), atMost: 100, final: false) == 6)
        #expect(HostAgent.characterBoundary(in: Array(text.prefix(8)), atMost: 100, final: true) == 8)
    }
}

@Suite("Acknowledgements hold until the relay confirms them")
struct AcknowledgementTests {
    @Test("The relay killed between the host's commit and its acknowledgement: the acknowledgement is sent again, and only a confirmed one counts as delivered")
    func lostAcknowledgement() async throws {
        let world = try await PeerWorld.start()
        let host = try await world.makeHost()
        let (store, paired, _) = try await world.pair(host, companionName: "phone")
        let agent = HostAgent(host: host, configuration: HostConfiguration(), client: world.client) { _ in }
        _ = try store.sendTask(TaskRequest(task: UUID().uuidString.lowercased(), executor: .action, action: "none", arguments: []), to: paired)
        #expect(try await CompanionMessenger(store: store, client: world.client).flush(store.channel(named: nil)))
        let envelope = try #require(try await world.client.fetch(owner: host.identity.signing).envelopes.first?.envelope)
        let delivered = {
            try HostAuditState(store: host.store).allRecords().filter { $0.record.envelopeID == envelope.id && $0.record.event == .delivered }.count
        }

        let port = try #require(URL(string: world.relay.baseURL)?.port)
        await world.relay.stop(signal: SIGKILL)
        #expect(await agent.receive(envelope))
        await agent.acknowledgeReceived()
        #expect(try host.store.pendingAcknowledgements() == [envelope.id], "the acknowledgement is still owed")
        #expect(try delivered() == 0, "nothing counts as delivered before the relay confirms it")

        let relay = try await RelayProcess.start(data: world.folder.path("relay"), arguments: ["--open-registration"], port: port)
        #expect(try await world.client.fetch(owner: host.identity.signing).envelopes.map(\.envelope.id) == [envelope.id])
        await agent.acknowledgeReceived()
        #expect(try host.store.pendingAcknowledgements().isEmpty)
        #expect(try delivered() == 1)
        #expect(try await world.client.fetch(owner: host.identity.signing).envelopes.isEmpty, "the relay deleted it")
        // The relay's log holds the delivered event exactly as the host recorded it.
        let record = try #require(try HostAuditState(store: host.store).allRecords().first { $0.record.event == .delivered }?.record)
        #expect(record.envelopeID == envelope.id)
        var found = false
        for _ in 0..<100 where !found {
            for hash in record.candidateLeafHashes where try await world.client.auditLeafIndex(leafHash: hash) != nil { found = true }
            if !found { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(found, "the relay's log has the delivered event the host recorded")
        await relay.stop()
    }
}
