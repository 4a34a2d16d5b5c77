public import ErrandPeer
import ErrandProtocol
public import ErrandRelayClient

/// Doorbells on this device's mailbox for one host: the relay tells them, without content, that
/// the host posted something urgent (a task's end) while this device was offline.
extension CompanionConversation {
    /// Registers an ntfy topic or webhook URL (`kind` `ntfy` or `webhook`) or a Web Push
    /// subscription (`webpush`).
    public func saveDoorbell(kind: String, url: String) async throws(PeerError) {
        let channel = try self.channel()
        do { try await client.saveDoorbell(kind: kind, url: url, owner: channel.signing) } catch {
            var problem = PeerError(relay: error, relayURL: client.baseURL, doing: "register the doorbell for \(host.name)")
            if error.code == .forbidden {
                problem = PeerError(problem.message, hint: "ask the relay's operator to allow that host in push.allowed_hosts, or use another service")
            } else if error.code == .notFound && error.message.contains("push.enabled") {
                problem = PeerError(problem.message, hint: "this relay's operator has turned doorbells off")
            }
            throw problem
        }
    }

    /// The doorbells registered for this host.
    public func doorbells() async throws(PeerError) -> [RelayClient.DoorbellInfo] {
        let channel = try self.channel()
        do { return try await client.doorbells(owner: channel.signing) } catch {
            throw PeerError(relay: error, relayURL: client.baseURL, doing: "list the doorbells for \(host.name)")
        }
    }

    /// Removes every doorbell registered for this host.
    /// - Returns: how many were removed.
    @discardableResult
    public func removeDoorbells() async throws(PeerError) -> Int {
        let channel = try self.channel()
        let registered = try await doorbells()
        for doorbell in registered {
            do { try await client.removeDoorbell(doorbell.id, owner: channel.signing) } catch where error.code == .notFound {
                continue
            } catch {
                throw PeerError(relay: error, relayURL: client.baseURL, doing: "remove a doorbell for \(host.name)")
            }
        }
        return registered.count
    }

    private func channel() throws(PeerError) -> HostChannel {
        do { return try store.channel(named: host.name) } catch { throw Self.describe(error, doing: "read the pairing") }
    }
}
