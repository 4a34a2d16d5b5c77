import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol
public import ErrandRelayClient
import Foundation

/// The companion's side of the conversation: send tasks and requests through the outbox, take
/// the host's messages from this device's mailbox, and wait for what a command needs.
public struct CompanionConversation: Sendable {
    public let store: CompanionStore
    public let host: PairedHost
    public let client: RelayClient

    /// - Parameter relayURL: reach the relay here instead of the address stored at pairing.
    public init(store: CompanionStore, hostName: String?, relayURL: String? = nil) throws(PeerError) {
        self.store = store
        do { host = try store.host(named: hostName) } catch let error as PeerError { throw error } catch {
            throw PeerError("cannot read this device's pairings: \(error)")
        }
        // Signed requests name the relay's key pinned at pairing (for the paired relay's address).
        let relay = relayURL ?? host.relayURL
        let pinned = RelayClient.sameRelay(relay, host.relayURL) ? (try? store.auditVerifierKey(for: host.id)) ?? nil : nil
        client = RelayClient(baseURL: relay, pinnedRelayKey: pinned)
    }

    /// Queues a task and tries to deliver the outbox.
    /// - Returns: whether the relay has it now (false: it waits in the outbox, sent by the next command).
    public func send(_ request: TaskRequest) async throws(PeerError) -> Bool {
        do { _ = try store.sendTask(request, to: host) } catch { throw Self.describe(error, doing: "queue the task") }
        return try await flush()
    }

    /// Queues a message (cancel, list actions, sync) and tries to deliver the outbox.
    public func send(_ message: ConversationMessage) async throws(PeerError) -> Bool {
        do { _ = try store.sendMessage(message, to: host) } catch { throw Self.describe(error, doing: "queue the message") }
        return try await flush()
    }

    /// Asks the host for the conversation after what this device has (a `sync`) and waits for the
    /// whole answer, receiving everything that comes before it. It also opens the way for the
    /// host's own messages: a session takes them once this device has sent one.
    /// - Returns: whether the host answered within `timeout`.
    public func sync(timeout: Duration) async -> Bool {
        (try? await syncTelling(timeout: timeout)) ?? false
    }

    /// ``sync(timeout:)``, but a failure other than silence (the relay refused, this device was
    /// revoked, the cache cannot be read) is thrown with its reason.
    public func syncTelling(timeout: Duration) async throws(PeerError) -> Bool {
        let request = UUID().uuidString.lowercased()
        let after: Int64
        do { after = try store.lastPosition(for: host.id) } catch { throw Self.describe(error, doing: "read the cache") }
        guard try await send(.sync(request: request, after: after)) else { return false }
        return try await wait(timeout: timeout, until: { try store.reply(to: request) != nil })
    }

    /// Posts the outbox in order; false when the relay cannot be reached (it stays queued).
    public func flush() async throws(PeerError) -> Bool {
        let channel: HostChannel
        do { channel = try store.channel(named: host.name) } catch { throw Self.describe(error, doing: "read the pairing") }
        return try await CompanionMessenger(store: store, client: client).flush(channel)
    }

    /// Takes everything waiting in this device's mailbox, applies it, and acknowledges it.
    /// - Returns: the messages applied, in order.
    @discardableResult
    public func receive() async throws(PeerError) -> [ConversationMessage] {
        let channel: HostChannel
        do { channel = try store.channel(named: host.name) } catch { throw Self.describe(error, doing: "read the pairing") }
        var applied: [ConversationMessage] = []
        var cursor: Int64 = 0
        while true {
            let page: RelayClient.Page
            do { page = try await client.fetch(owner: channel.signing, after: cursor) } catch {
                throw mailboxFailure(error, doing: "fetch messages from \(host.name)")
            }
            var handled: [EnvelopeID] = []
            for item in page.envelopes {
                do {
                    if let message = try store.receive(item.envelope, from: host) { applied.append(message) }
                    handled.append(item.envelope.id)
                } catch is SessionError {
                    handled.append(item.envelope.id)  // cannot be opened: drop it
                } catch {
                    // A local failure (the database): keep it at the relay for the next time.
                }
            }
            if !handled.isEmpty {
                do { _ = try await client.acknowledge(handled, owner: channel.signing) } catch {
                    throw PeerError(relay: error, relayURL: client.baseURL, doing: "acknowledge messages from \(host.name)")
                }
                recordDelivered(page.envelopes.map(\.envelope).filter { handled.contains($0.id) }, channel: channel)
            }
            guard page.more, let last = page.envelopes.last else { break }
            cursor = last.sequence
        }
        return applied
    }

    /// Waits, receiving live, until `done` holds or `timeout` passes; `onMessage` sees each message.
    /// - Returns: whether `done` held.
    public func wait(timeout: Duration, until done: @Sendable () throws -> Bool,
                     onMessage: @Sendable (ConversationMessage) -> Void = { _ in }) async throws(PeerError) -> Bool {
        for message in try await receive() { onMessage(message) }
        if (try? done()) == true { return true }
        let channel: HostChannel
        do { channel = try store.channel(named: host.name) } catch { throw Self.describe(error, doing: "read the pairing") }
        let subscription = client.subscribe(owner: channel.signing)
        defer { subscription.cancel() }
        let deadline = ContinuousClock.now + timeout
        let watchdog = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            subscription.cancel()
        }
        defer { watchdog.cancel() }
        do {
            for try await event in subscription.events {
                switch event {
                case .envelope(_, let envelope):
                    do {
                        // Acknowledged over HTTP, whose answer comes after the relay's commit:
                        // only a confirmed deletion counts as delivered. One not confirmed stays
                        // at the relay and is fetched (a duplicate) and acknowledged next time.
                        if let message = try store.receive(envelope, from: host) { onMessage(message) }
                        if (try? await client.acknowledge([envelope.id], owner: channel.signing)) != nil {
                            recordDelivered([envelope], channel: channel)
                        }
                    } catch is SessionError {
                        _ = try? await client.acknowledge([envelope.id], owner: channel.signing)
                    } catch {}
                    if (try? done()) == true { return true }
                case .caughtUp:
                    _ = try? await flush()
                    if (try? done()) == true { return true }
                case .reconnecting:
                    _ = try? await flush()
                }
                if ContinuousClock.now >= deadline { break }
            }
        } catch let error as RelayClientError {
            throw mailboxFailure(error, doing: "listen for messages from \(host.name)")
        } catch {}
        return (try? done()) == true
    }

    /// What a failure to read this device's mailbox means. A mailbox the relay does not know is
    /// one its host closed when it revoked this device (or a relay that lost its data): either
    /// way only pairing again helps.
    private func mailboxFailure(_ error: RelayClientError, doing what: String) -> PeerError {
        guard error.code == .notFound else { return PeerError(relay: error, relayURL: client.baseURL, doing: what) }
        return PeerError("\(host.name) no longer accepts messages from this device (it was revoked: its mailbox at the relay is closed)",
                         hint: "pair again with 'errand pair' if this device should have access")
    }

    /// Remembers acknowledged envelopes as delivered events to find in the relay's log.
    private func recordDelivered(_ envelopes: [Envelope], channel: HostChannel) {
        let mailbox = MailboxID(owner: channel.signing.publicKey)
        let now = Int64(Date().timeIntervalSince1970)
        for envelope in envelopes { try? store.recordAudit(envelope, mailbox: mailbox, event: .delivered, host: host.id, at: now) }
    }

    static func describe(_ error: any Error, doing action: String) -> PeerError {
        if let error = error as? PeerError { return error }
        if let error = error as? SessionError { return PeerError("could not \(action): \(error.description)") }
        return PeerError("could not \(action): \(error)")
    }
}
