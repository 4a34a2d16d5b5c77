import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
public import ErrandRelayClient
public import Foundation

/// How the host side of pairing talks to the person at the computer.
public protocol HostPairingPresenter: Sendable {
    /// Shows the offer (QR code, files). Called once the slot is open at the relay.
    func present(_ offer: PairingOffer) async throws(PeerError)
    /// Shows who asks to pair and the SAS; returns whether the person accepts.
    func confirm(deviceName: String, fingerprint: String, sas: ShortAuthenticationString) async -> Bool
    /// A line of progress.
    func status(_ line: String)
}

/// The host side of pairing: open a slot, show the offer, wait for one companion, verify its
/// proof, confirm the SAS, register the device and answer.
public struct HostPairing: Sendable {
    public let host: HostSetup.Host
    public let client: RelayClient
    /// The relay address written into the offer (the stored one unless `--relay` overrides it).
    public let relayURL: String
    /// How often the slot is checked for a request.
    public var pollInterval: Duration = .milliseconds(100)
    /// Executors a newly paired device may use (`policy.default_executors`).
    public var defaultExecutors: [Executor] = [.agent, .action]

    public init(host: HostSetup.Host, client: RelayClient, relayURL: String) {
        self.host = host
        self.client = client
        self.relayURL = relayURL
    }

    /// Runs one pairing; returns the registered device.
    /// - Throws: ``PeerError`` for every way pairing can fail; nothing stays registered then.
    public func run(lifetime: TimeInterval, presenter: some HostPairingPresenter) async throws(PeerError) -> Device {
        // The relay's audit-log key travels in the code, so the device pins it from the start
        // (a relay without a log is still usable: the code then carries none).
        var auditKey = try? host.store.pinnedAuditKey()
        if auditKey == nil, let fetched = try? await client.auditVerifierKey() {
            try? host.store.pinAuditKey(fetched)
            auditKey = fetched
        }
        let offer: PairingOffer
        do {
            offer = try PairingOffer.make(relayURL: relayURL, hostSigningKey: host.identity.signing.publicKey,
                                          hostAgreementKey: host.identity.agreement.publicKey, hostName: host.settings.name,
                                          auditVerifierKey: auditKey, lifetime: lifetime)
        } catch { throw PeerError(error.message, hint: error.hint) }
        do {
            try await client.openPairingSlot(offer.slotID, owner: host.identity.signing, ttl: Int64(lifetime.rounded(.up)))
        } catch {
            throw PeerError(relay: error, relayURL: relayURL, doing: "open a pairing slot")
        }
        // Until an answer is in the slot, any failure closes the slot; after a signed refusal
        // the slot stays so the companion can read why.
        let outcome: Result<Device, PeerError>
        do {
            try await presenter.present(offer)
            let sealed = try await waitForRequest(offer)
            outcome = try await answer(sealed, offer: offer, presenter: presenter)
        } catch {
            await cancel(offer)
            throw error
        }
        return try outcome.get()
    }

    private func waitForRequest(_ offer: PairingOffer) async throws(PeerError) -> Envelope {
        while Date() < offer.expiresAt {
            let bytes: [UInt8]?
            do { bytes = try await client.pairingRequest(offer.slotID, owner: host.identity.signing) } catch {
                // The relay's clock may end the slot a moment before ours ends the offer.
                if error.code == .notFound && Date() >= offer.expiresAt.addingTimeInterval(-2) { break }
                throw PeerError(relay: error, relayURL: relayURL, doing: "read the pairing slot")
            }
            if let bytes {
                guard let envelope = try? Envelope(parsing: bytes) else {
                    throw PeerError("the pairing slot holds something that is not a pairing request",
                                    hint: "someone other than your device answered the code; start pairing again")
                }
                return envelope
            }
            try? await Task.sleep(for: pollInterval)
        }
        throw PeerError("no device answered the pairing code before it expired",
                        hint: "run 'errand host pair' again and scan the code with 'errand pair' within \(Int(PairingOffer.defaultLifetime / 60)) minutes (or pass --timeout)")
    }

    /// Throws when the slot should be closed; returns a failure when a signed refusal is in it.
    private func answer(_ sealed: Envelope, offer: PairingOffer, presenter: some HostPairingPresenter) async throws(PeerError) -> Result<Device, PeerError> {
        let unverified: UnverifiedPairingRequest
        do { unverified = try PairingRequest.unseal(sealed, hostAgreementKey: host.identity.agreement) } catch {
            throw PeerError(error.message, hint: error.hint)
        }
        // A signed receipt first: the companion shows its SAS only once it knows this host
        // holds its request, not one the relay swapped in.
        do {
            let receipt = try PairingReceipt.sealed(for: unverified.claimed, hostSigningKey: host.identity.signing)
            try await client.putPairingReceipt(receipt, slot: offer.slotID, owner: host.identity.signing)
        } catch let error as PairingError {
            throw PeerError(error.message, hint: error.hint)
        } catch let error as RelayClientError {
            throw PeerError(relay: error, relayURL: relayURL, doing: "acknowledge the device's pairing request")
        } catch {
            throw PeerError("\(error)")
        }
        let request: PairingRequest
        do { request = try unverified.verify(offer: offer) } catch {
            guard await reply(.rejected, to: unverified.claimed, offer: offer) else { throw PeerError(error.message, hint: error.hint) }
            return .failure(PeerError(error.message, hint: error.hint))
        }
        let transcript = request.transcript(offerURI: offer.uri)
        let sas = ShortAuthenticationString(transcript: transcript, secret: offer.secret)
        let fingerprint = Fingerprint.of(request.companionSigningKey)
        guard await presenter.confirm(deviceName: request.deviceName, fingerprint: fingerprint, sas: sas) else {
            let declined = PeerError("pairing with \(request.deviceName) was declined; nothing was registered")
            guard await reply(.declined, to: request, offer: offer) else { throw declined }
            return .failure(declined)
        }
        return .success(try await register(request, offer: offer, transcript: transcript))
    }

    private func register(_ request: PairingRequest, offer: PairingOffer, transcript: PairingTranscript) async throws(PeerError) -> Device {
        let ratchetKey = X25519.SecretKey()
        let companionToken = SendToken()
        let keys: PairingSessionKeys
        do {
            keys = try PairingSessionKeys.host(secret: offer.secret, transcriptHash: transcript.hash, hostAgreementKey: host.identity.agreement,
                                               hostRatchetKey: ratchetKey, request: request)
        } catch { throw PeerError(error.message, hint: error.hint) }
        let sealedReply: Envelope
        do {
            sealedReply = try PairingReply(.accepted(hostRatchetKey: ratchetKey.publicKey, companionSendToken: companionToken, hostName: host.settings.name))
                .sealed(request: request, offerURI: offer.uri, hostSigningKey: host.identity.signing, sessionKeys: keys)
        } catch { throw PeerError(error.message, hint: error.hint) }
        do {
            try await client.createDeviceMailbox(for: request.companionSigningKey, sponsor: host.identity.signing)
            try await client.addSendToken(companionToken.hash, owner: host.identity.signing)
        } catch {
            await undoRegistration(companionToken, request)
            throw PeerError(relay: error, relayURL: relayURL, doing: "set up the device's mailbox and token")
        }
        let ratchet = DoubleRatchet.responder(sharedSecret: keys.rootKey, headerKey: keys.initiatorHeaderKey,
                                              nextHeaderKey: keys.responderNextHeaderKey, ratchetKeyPair: ratchetKey)
        let device: Device
        do {
            device = try host.store.addDevice(NewDevice(
                name: request.deviceName, signingKey: request.companionSigningKey, agreementKey: request.companionAgreementKey,
                transcriptHash: transcript.hash, inboundTokenHash: companionToken.hash, outboundToken: request.hostSendToken,
                pairedAt: Int64(Date().timeIntervalSince1970)), session: ratchet, executors: defaultExecutors)
        } catch {
            await undoRegistration(companionToken, request)
            throw PeerError("cannot save the new device: \(error)")
        }
        do {
            try await client.putPairingReply(sealedReply, slot: offer.slotID, owner: host.identity.signing)
        } catch {
            await undoRegistration(companionToken, request)
            try? host.store.forgetDevice(device.id)
            throw PeerError(relay: error, relayURL: relayURL, doing: "deliver the pairing reply (nothing was registered)")
        }
        return device
    }

    /// A pairing that failed after the relay was set up: the token and the device's mailbox go,
    /// so a failed pairing does not count against the host's device mailboxes.
    private func undoRegistration(_ companionToken: SendToken, _ request: PairingRequest) async {
        try? await client.removeSendToken(companionToken.hash, owner: host.identity.signing)
        try? await client.closeDeviceMailbox(of: request.companionSigningKey, sponsor: host.identity.signing)
    }

    /// A signed refusal so the companion can say why; whether it reached the slot.
    private func reply(_ outcome: PairingReply.Outcome, to request: PairingRequest, offer: PairingOffer) async -> Bool {
        guard let envelope = try? PairingReply(outcome).sealed(request: request, offerURI: offer.uri, hostSigningKey: host.identity.signing, sessionKeys: nil)
        else { return false }
        do { try await client.putPairingReply(envelope, slot: offer.slotID, owner: host.identity.signing) } catch { return false }
        return true
    }

    private func cancel(_ offer: PairingOffer) async {
        try? await client.cancelPairingSlot(offer.slotID, owner: host.identity.signing)
    }
}
