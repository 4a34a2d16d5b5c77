import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
public import ErrandRelayClient
public import Foundation

/// How the companion side of pairing talks to the person holding the device.
public protocol CompanionPairingPresenter: Sendable {
    /// Before anything is sent: which host, at which relay. Returns whether to go on.
    func approve(hostName: String, fingerprint: String, relayURL: String) async -> Bool
    /// The SAS, shown once the computer's signed receipt for this request arrived, to compare
    /// with the computer's screen.
    func showSAS(_ sas: ShortAuthenticationString)
    /// A line of progress.
    func status(_ line: String)
}

/// The companion side of pairing: read the offer, send keys and proof sealed to the host, wait
/// for the host's signed answer, verify it, register this device's token and save the session.
public struct CompanionPairing: Sendable {
    public let store: CompanionStore
    public let client: RelayClient
    /// Where the relay is reached (the offer's address unless `--relay` overrides it).
    public let relayURL: String
    public var pollInterval: Duration = .milliseconds(100)
    /// How long past the offer's expiry to keep waiting for the host's answer.
    public var grace: TimeInterval = 5

    public init(store: CompanionStore, client: RelayClient, relayURL: String) {
        self.store = store
        self.client = client
        self.relayURL = relayURL
    }

    /// Pairs with the host in `offer` as `deviceName`.
    /// - Throws: ``PeerError`` for every failure; nothing is saved then.
    public func run(offer: PairingOffer, deviceName: String, presenter: some CompanionPairingPresenter) async throws(PeerError) -> PairedHost {
        do { try DeviceName.validate(deviceName) } catch { throw PeerError(error.message, hint: error.hint) }
        let hostName = offer.hostName ?? "host"
        guard await presenter.approve(hostName: hostName, fingerprint: Fingerprint.of(offer.hostSigningKey), relayURL: relayURL) else {
            throw PeerError("pairing cancelled on this device; nothing was sent")
        }
        let signing = Ed25519.SecretKey()
        let agreement = X25519.SecretKey()
        let ephemeral = X25519.SecretKey()
        let hostToken = SendToken()
        let claim = SecretBytes.random(count: 32)
        let request = PairingRequest(companionSigningKey: signing.publicKey, companionAgreementKey: agreement.publicKey,
                                     companionEphemeralKey: ephemeral.publicKey, hostSendToken: hostToken, deviceName: deviceName)
        let sealed: Envelope
        do { sealed = try request.sealed(for: offer, signer: signing) } catch { throw PeerError(error.message, hint: error.hint) }
        do {
            try await client.putPairingRequest(sealed, slot: offer.slotID, claim: claim)
        } catch {
            switch error.code {
            case .slotAlreadyUsed:
                throw PeerError("this pairing code was already used by another device",
                                hint: "start pairing again on the computer ('errand host pair') for a fresh code")
            case .notFound:
                throw PeerError("the pairing code is no longer open at the relay: it expired, was cancelled, or was already used",
                                hint: "start pairing again on the computer ('errand host pair') for a fresh code")
            default:
                throw PeerError(relay: error, relayURL: relayURL, doing: "send the pairing request")
            }
        }
        let transcript = request.transcript(offerURI: offer.uri)
        presenter.status("waiting for \(hostName) to receive the request…")
        let receipt = try await waitForSlot(offer: offer, claim: claim, part: .receipt)
        do { try PairingReceipt.verify(receipt, offer: offer, request: request, ephemeralKey: ephemeral) } catch {
            throw PeerError(error.message, hint: error.hint)
        }
        presenter.showSAS(ShortAuthenticationString(transcript: transcript, secret: offer.secret))
        presenter.status("waiting for \(hostName) to confirm…")
        let replyEnvelope = try await waitForSlot(offer: offer, claim: claim, part: .reply)

        let opened: (reply: PairingReply, confirmation: [UInt8]?, confirmedBody: [UInt8])
        do { opened = try PairingReply.open(replyEnvelope, offer: offer, request: request, ephemeralKey: ephemeral) } catch {
            throw PeerError(error.message, hint: error.hint)
        }
        switch opened.reply.outcome {
        case .declined:
            throw PeerError("\(hostName) declined the pairing", hint: "if you did not expect this, check the codes matched and try again")
        case .rejected:
            throw PeerError("\(hostName) rejected this device: it could not verify that this device read its pairing code",
                            hint: "scan the code again; if this repeats, the code may have been altered on the way")
        case .accepted(let ratchetKey, let companionToken, let signedHostName):
            let keys: PairingSessionKeys
            do {
                keys = try PairingSessionKeys.companion(
                    secret: offer.secret, transcriptHash: transcript.hash, companionAgreementKey: agreement, companionEphemeralKey: ephemeral,
                    hostAgreementKey: offer.hostAgreementKey, hostRatchetKey: ratchetKey)
                try PairingReply.verifyConfirmation(opened.confirmation ?? [], confirmedBody: opened.confirmedBody,
                                                    transcriptHash: transcript.hash, keys: keys)
            } catch { throw PeerError(error.message, hint: error.hint) }
            do {
                try await client.addSendToken(hostToken.hash, owner: signing)
            } catch {
                let failure = PeerError(relay: error, relayURL: relayURL, doing: "let \(hostName) write to this device's mailbox")
                throw PeerError(failure.message, hint: "revoke this device on the computer ('errand host revoke') and pair again")
            }
            let ratchet: DoubleRatchet
            do {
                ratchet = try DoubleRatchet.initiator(sharedSecret: keys.rootKey, headerKey: keys.initiatorHeaderKey,
                                                      nextHeaderKey: keys.responderNextHeaderKey, responderRatchetKey: ratchetKey)
            } catch { throw PeerError(error.description) }
            do {
                return try store.addHost(NewHost(
                    name: DeviceName.isAcceptable(signedHostName) ? signedHostName : hostName, relayURL: offer.relayURL,
                    hostSigningKey: offer.hostSigningKey, hostAgreementKey: offer.hostAgreementKey, auditVerifierKey: offer.auditVerifierKey,
                    transcriptHash: transcript.hash, sendToken: companionToken, signing: signing, agreement: agreement,
                    pairedAt: Int64(Date().timeIntervalSince1970)), session: ratchet)
            } catch {
                throw PeerError("cannot save the pairing: \(error)", hint: "revoke this device on the computer and pair again")
            }
        }
    }

    /// What the companion waits for in the slot: the host's receipt, then its reply.
    private enum SlotPart { case receipt, reply }

    private func waitForSlot(offer: PairingOffer, claim: SecretBytes, part: SlotPart) async throws(PeerError) -> Envelope {
        let deadline = offer.expiresAt.addingTimeInterval(grace)
        while Date() < deadline {
            do {
                let found = switch part {
                case .receipt: try await client.pairingReceipt(slot: offer.slotID, claim: claim)
                case .reply: try await client.takePairingReply(slot: offer.slotID, claim: claim)
                }
                if let bytes = found {
                    guard let envelope = try? Envelope(parsing: bytes) else {
                        throw PeerError("the pairing \(part) is not an envelope", hint: "someone interfered with pairing; pair again")
                    }
                    return envelope
                }
            } catch let error as RelayClientError {
                switch error.code {
                case .notFound where Date() >= offer.expiresAt.addingTimeInterval(-2):
                    throw PeerError("the computer did not answer before the pairing code expired",
                                    hint: "confirm on the computer sooner, or start pairing again")
                case .notFound:
                    throw PeerError("the computer closed the pairing code without answering (it could not read this device's request, or the code expired)",
                                    hint: "start pairing again on the computer ('errand host pair')")
                case .forbidden:
                    throw PeerError("another device claimed this pairing code", hint: "start pairing again on the computer for a fresh code")
                default:
                    if error.isTransient { break }
                    throw PeerError(relay: error, relayURL: relayURL, doing: "collect the computer's answer")
                }
            } catch let error as PeerError {
                throw error
            } catch {
                throw PeerError("\(error)")
            }
            try? await Task.sleep(for: pollInterval)
        }
        if part == .receipt {
            // The slot holds a request, but the host never acknowledged this one: it may hold
            // another device's (the relay can withhold ours).
            throw PeerError("the computer did not confirm receiving this device's request before the pairing code expired",
                            hint: "if the computer asked you to confirm a code meanwhile, decline it; then start pairing again")
        }
        throw PeerError("the computer did not answer before the pairing code expired",
                        hint: "confirm on the computer sooner, or start pairing again")
    }
}

/// Seals messages to a host and sends them through the outbox: the envelope and the advanced
/// session are saved together first, so a message is never lost or sealed twice if the relay
/// or this process fails.
public struct CompanionMessenger: Sendable {
    public let store: CompanionStore
    public let client: RelayClient

    public init(store: CompanionStore, client: RelayClient) {
        self.store = store
        self.client = client
    }

    /// Seals `payload` for the host, queues it, and tries to deliver the host's whole outbox.
    /// - Returns: the envelope id and whether the outbox is now empty.
    public func send(_ payload: [UInt8], hostName: String?) async throws(PeerError) -> (EnvelopeID, delivered: Bool) {
        let envelope: Envelope
        let channel: HostChannel
        do {
            let host = try store.host(named: hostName)
            envelope = try store.sealAndEnqueue(payload, to: host)
            channel = try store.channel(named: host.name)
        } catch let error as PeerError {
            throw error
        } catch let error as SessionError {
            throw PeerError(error.description)
        } catch {
            throw PeerError("cannot save the message: \(error)")
        }
        let delivered = try await flush(channel)
        return (envelope.id, delivered)
    }

    /// Posts queued envelopes in order; stops at the first transient failure (they stay queued).
    /// - Throws: ``PeerError`` when the relay refuses for good (for example, this device was revoked).
    public func flush(_ channel: HostChannel) async throws(PeerError) -> Bool {
        let pending: [Envelope]
        do { pending = try store.pending(for: channel.host.id) } catch { throw PeerError("cannot read the outbox: \(error)") }
        for envelope in pending {
            do {
                _ = try await client.post(envelope, to: channel.host.mailbox, token: channel.sendToken)
                try? store.recordAudit(envelope, mailbox: channel.host.mailbox, event: .stored, host: channel.host.id, at: Int64(Date().timeIntervalSince1970))
            } catch {
                if error.isTransient { return false }
                if error.code == .forbidden || error.code == .unauthenticated {
                    throw PeerError("\(channel.host.name) no longer accepts messages from this device (it was revoked)",
                                    hint: "pair again with 'errand pair' if this device should have access")
                }
                throw PeerError(relay: error, relayURL: client.baseURL, doing: "deliver a message to \(channel.host.name)")
            }
            do { try store.sent(envelope.id) } catch { throw PeerError("cannot update the outbox: \(error)") }
        }
        return true
    }
}
