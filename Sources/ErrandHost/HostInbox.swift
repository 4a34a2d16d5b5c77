public import ErrandPeer
public import ErrandProtocol
public import ErrandRelayClient
public import Foundation
import GRDB

/// Takes envelopes from the host's mailbox: finds the device whose session opens each one
/// (the relay does not say who sent it), and stores the payload with the advanced session in
/// one transaction. Envelopes from revoked or unknown devices are refused and never stored.
public struct HostInbox: Sendable {
    /// What became of one envelope.
    public enum Outcome: Sendable, Equatable {
        /// Opened and stored, from this device.
        case received(device: Device, payload: [UInt8])
        /// Processed before (a redelivery or replay): ignored.
        case duplicate
        /// No current device's session opens it: a revoked device, a replay from an old
        /// chain, or tampering. Nothing stored.
        case refused(reason: String)
    }

    public let store: HostStore

    public init(store: HostStore) { self.store = store }

    /// Processes one envelope: finding the session that opens it, storing the payload and saving
    /// the advanced session happen in one write transaction, so two processes never act on the
    /// same session state and a crash leaves either everything or nothing.
    public func process(_ envelope: Envelope, now: Date = Date()) throws -> Outcome {
        try process(envelope, now: now, handle: nil)
    }

    /// As ``process(_:now:)``; `handle` runs inside the same transaction with the opened payload,
    /// so what it records (a task) exists exactly when the envelope counts as received.
    func process(_ envelope: Envelope, now: Date, handle: ((Database, Device, [UInt8]) throws -> Void)?) throws -> Outcome {
        try store.write { db in
            // Whatever becomes of it, the relay is told to delete it (and told again until it
            // confirms): a refused or repeated envelope would otherwise come back.
            try HostStore.queueAcknowledgement(db, envelope, at: Int64(now.timeIntervalSince1970))
            if try HostStore.hasReceived(db, envelope.id) { return .duplicate }
            var reasons: [String] = []
            for candidate in try HostStore.activeSessions(db) {
                var session = candidate.session
                let payload: [UInt8]
                do { payload = try session.open(envelope) } catch let error as SessionError {
                    if error.code != .undecryptable { reasons.append("\(candidate.device.name): \(error.description)") }
                    continue
                }
                try HostStore.storeReceived(db, envelope.id, from: candidate.device.id, payload: payload, session: session.ratchet,
                                            at: Int64(now.timeIntervalSince1970))
                try handle?(db, candidate.device, payload)
                return .received(device: candidate.device, payload: payload)
            }
            return .refused(reason: reasons.first ?? "no paired device's session opens it (a revoked device, a replay, or tampering)")
        }
    }

    /// Fetches everything waiting at the relay, processes it and acknowledges it (refused and
    /// duplicate envelopes too, so they are not delivered again).
    public func drain(client: RelayClient, identity: HostIdentity) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        var cursor: Int64 = 0
        while true {
            let page = try await client.fetch(owner: identity.signing, after: cursor)
            for item in page.envelopes { outcomes.append(try process(item.envelope)) }
            try await acknowledgePending(client: client, identity: identity)
            guard page.more, let last = page.envelopes.last else { break }
            cursor = last.sequence
        }
        return outcomes
    }

    /// Sends every acknowledgement the relay has not confirmed (`POST …/acks`, answered after the
    /// relay's commit) and records each confirmed one as `delivered`.
    /// - Returns: how many were confirmed.
    /// - Throws: ``RelayClientError`` when the relay cannot be reached or refuses; what was not
    ///   confirmed stays queued for the next call.
    @discardableResult
    public func acknowledgePending(client: RelayClient, identity: HostIdentity) async throws -> Int {
        var confirmed = 0
        while true {
            let ids = try store.pendingAcknowledgements()
            guard !ids.isEmpty else { return confirmed }
            _ = try await client.acknowledge(ids, owner: identity.signing)
            try store.confirmAcknowledged(ids, mailbox: identity.mailbox, at: Int64(Date().timeIntervalSince1970))
            confirmed += ids.count
        }
    }
}

/// `errand host revoke`: cuts a device off at the relay and on the host.
public enum DeviceRevocation {
    /// Deletes the device's session at once (the host then refuses anything from it), then
    /// removes its send token at the relay and closes the mailbox the host created for it there
    /// (so it no longer counts against the host's device mailboxes). A relay failure is reported
    /// and can be retried by revoking again; the local part is never undone.
    public static func revoke(_ device: Device, host: HostSetup.Host, client: RelayClient, relayURL: String) async throws(PeerError) {
        do { try host.store.revoke(device.id, at: Int64(Date().timeIntervalSince1970)) } catch {
            throw PeerError("cannot revoke \(device.name) in the host's store: \(error)")
        }
        guard !device.relayTokenRemoved else { return }
        do {
            do {
                try await client.removeSendToken(device.inboundTokenHash, owner: host.identity.signing)
            } catch where error.code == .notFound {
                // Already gone at the relay.
            }
            try await client.closeDeviceMailbox(of: device.signingKey, sponsor: host.identity.signing)
        } catch {
            let failure = PeerError(relay: error, relayURL: relayURL, doing: "remove \(device.name)'s send token and mailbox")
            throw PeerError("\(device.name) is revoked on this computer, but " + failure.message,
                            hint: "run 'errand host revoke' again when the relay is reachable, to cut it off there too")
        }
        do { try host.store.markRelayTokenRemoved(device.id) } catch {
            throw PeerError("cannot record the revocation: \(error)")
        }
    }
}
