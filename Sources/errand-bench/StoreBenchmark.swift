import ArgumentParser
import ErrandCrypto
import ErrandProtocol
import ErrandRelay
import ErrandTransparency
import Foundation
import Synchronization

/// Measures the embedded store alone (no HTTP): batches of envelopes stored by concurrent
/// writers, a reader acknowledging them as a live receiver would, and the audit log integrated
/// every 250 ms — everything the relay's single SQLite writer does per envelope.
struct StoreBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Envelopes/s through the SQLite store's writer, without HTTP (build with -c release).")

    @Option(help: "Seconds to run.") var seconds = 8
    @Option(help: "Concurrent writers.") var writers = 16
    @Option(help: "Envelopes per store call (1 = one storeEnvelope call each).") var batch = 64
    @Option(help: "Mailboxes (each acknowledged by its own reader).") var mailboxes = 8
    @Option(help: "Envelope ciphertext size in bytes.") var size = 1024
    @Option(help: "SQLite durability: full or normal.") var durability = "full"
    @Option(help: "The audit log: on or off.") var auditLog = "on"

    func run() async throws {
        guard let durability = SQLiteRelayStore.Durability(rawValue: durability) else { throw ValidationError("--durability must be full or normal") }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("errand-bench-store-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try SQLiteRelayStore(directory: folder, durability: durability, auditLog: auditLog != "off")
        let log = AuditLog(store: store, signer: try NoteSigner(name: "errand-bench/store", secretKey: Ed25519.SecretKey()))
        let quota = MailboxQuota(maximumEnvelopes: 10_000_000, maximumBytes: 1 << 40)
        var owners: [(MailboxID, TokenHash)] = []
        for _ in 0..<mailboxes {
            let key = Ed25519.SecretKey()
            let mailbox = MailboxID(owner: key.publicKey)
            let token = SendToken()
            _ = try await store.createMailbox(mailbox, ownerKey: key.publicKey.bytes, sponsor: nil, maximumSponsored: 0, now: 0)
            _ = try await store.addSendToken(token.hash, to: mailbox, maximum: 1, now: 0)
            owners.append((mailbox, token.hash))
        }
        let targets = owners
        print("errand-bench store: SQLite, durability \(durability.rawValue), audit log \(auditLog), \(size)-byte envelopes, \(writers) writers × \(batch) per call, \(mailboxes) mailboxes acknowledged as they arrive")
        let stored = Counter()
        let acknowledged = Counter()
        let start = ContinuousClock.now
        let deadline = start + .seconds(seconds)
        let size = self.size
        let batch = self.batch
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var index = writer
                    while ContinuousClock.now < deadline {
                        let now = Int64(Date().timeIntervalSince1970)
                        let posts = (0..<batch).map { offset in
                            let (mailbox, token) = targets[(index + offset) % targets.count]
                            let envelope = try! Envelope(ciphertext: SecureRandom.bytes(count: size))
                            return EnvelopePost(IncomingEnvelope(mailbox: mailbox, id: envelope.id, encoded: envelope.encoded, storedAt: now, expiresAt: now + 3600),
                                                sendToken: token)
                        }
                        index += batch
                        if batch == 1, let post = posts.first {
                            if case .stored? = try? await store.storeEnvelope(post.envelope, sendToken: post.sendToken, quota: quota) { stored.add(1) }
                        } else if let outcomes = try? await store.storeEnvelopes(posts, quota: quota) {
                            stored.add(outcomes.count { if case .stored? = $0 { true } else { false } })
                        }
                    }
                }
            }
            for (mailbox, _) in targets {
                group.addTask {
                    var cursor: Int64 = 0
                    while ContinuousClock.now < deadline {
                        let page = (try? await store.envelopes(in: mailbox, after: cursor, limit: 64)) ?? []
                        guard let last = page.last else {
                            try? await Task.sleep(for: .milliseconds(1))
                            continue
                        }
                        cursor = last.sequence
                        let ids = page.compactMap { try? Envelope(parsing: $0.encoded).id }
                        acknowledged.add((try? await store.acknowledge(ids, in: mailbox)) ?? 0)
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < deadline {
                    _ = try? await log.integrate()
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
        }
        let elapsed = (ContinuousClock.now - start).seconds
        print(String(format: "stored %.0f envelopes/s, acknowledged %.0f/s (%d and %d in %.1f s)",
                     Double(stored.value) / elapsed, Double(acknowledged.value) / elapsed, stored.value, acknowledged.value, elapsed))
        try await store.close()
    }
}
