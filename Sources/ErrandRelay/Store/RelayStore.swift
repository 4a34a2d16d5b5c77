public import ErrandProtocol

/// Everything the relay keeps, behind one contract so that the embedded SQLite store and a
/// PostgreSQL store behave the same and pass the same tests (`Tests/ErrandRelayTests/StoreContract`).
///
/// Times are Unix seconds. Every mutating call is durable when it returns (committed, and with
/// the default settings synced to disk): the relay acknowledges nothing before that.
public protocol RelayStore: DoorbellStore {
    // MARK: Registration

    /// Remembers a registration token (by hash) until `expiresAt`.
    func addInvite(_ hash: TokenHash, expiresAt: Int64) async throws
    /// Uses up a registration token; `false` when unknown, used or expired.
    func consumeInvite(_ hash: TokenHash, now: Int64) async throws -> Bool

    // MARK: Mailboxes

    /// Creates a mailbox owned by `ownerKey` (its id is derived from the key). Creating an
    /// existing mailbox again succeeds as `.existed`. With a `sponsor` (a host creating a
    /// device's mailbox) the sponsor must exist, must not itself be sponsored, and must have
    /// created fewer than `maximumSponsored` mailboxes — checked in the same transaction.
    func createMailbox(_ id: MailboxID, ownerKey: [UInt8], sponsor: MailboxID?, maximumSponsored: Int, now: Int64) async throws -> MailboxCreation
    /// Whether the mailbox exists.
    func mailboxExists(_ id: MailboxID) async throws -> Bool
    /// A cheap round trip to the database, for health checks.
    func ping() async throws
    /// Deletes a mailbox with its envelopes, send tokens and pairing slots; `false` if it did not exist.
    func deleteMailbox(_ id: MailboxID) async throws -> Bool
    /// Deletes a device's mailbox (as ``deleteMailbox(_:)``) for the host that created it:
    /// `true` when deleted, `false` when `sponsor` did not create it, `nil` when it does not exist.
    func deleteSponsoredMailbox(_ id: MailboxID, sponsor: MailboxID) async throws -> Bool?

    // MARK: Replay protection

    /// Records a request nonce of `signer`; `false` if it was recorded before (a replay).
    func recordNonce(signer: [UInt8], nonce: String, expiresAt: Int64) async throws -> Bool

    // MARK: Send tokens

    /// Authorises the holder of the token with this hash to post into `mailbox`, unless the
    /// mailbox already holds `maximum` other tokens.
    /// - Returns: whether the token is registered now (`true` also when it already was).
    func addSendToken(_ hash: TokenHash, to mailbox: MailboxID, maximum: Int, now: Int64) async throws -> Bool
    /// Revokes a send token; `false` if it was not registered.
    func removeSendToken(_ hash: TokenHash, from mailbox: MailboxID) async throws -> Bool
    /// The hashes of the mailbox's send tokens.
    func sendTokens(of mailbox: MailboxID) async throws -> [TokenHash]

    // MARK: Envelopes

    /// Stores an envelope if `sendToken` is registered for its mailbox, the mailbox has room,
    /// and no envelope with the same id is stored there yet (then it reports the existing one).
    func storeEnvelope(_ envelope: IncomingEnvelope, sendToken: TokenHash, quota: MailboxQuota) async throws -> StoreOutcome
    /// Stores several envelopes in one commit, in order, each as ``storeEnvelope(_:sendToken:quota:)``
    /// would. Once an envelope for a mailbox is refused (forbidden, quota), the later ones for that
    /// mailbox are not attempted (`nil`), so a mailbox's envelopes keep their order.
    func storeEnvelopes(_ posts: [EnvelopePost], quota: MailboxQuota) async throws -> [StoreOutcome?]
    /// Up to `limit` envelopes of `mailbox` with a sequence number above `sequence`, oldest first.
    func envelopes(in mailbox: MailboxID, after sequence: Int64, limit: Int) async throws -> [StoredEnvelope]
    /// Deletes acknowledged envelopes; returns how many were deleted.
    func acknowledge(_ ids: [EnvelopeID], in mailbox: MailboxID) async throws -> Int
    /// Deletes envelopes, pairing slots, nonces and invites past their time.
    func expire(now: Int64) async throws -> ExpiryReport

    // MARK: Audit log

    /// Up to `limit` leaves appended but not yet integrated, in the order they will take after
    /// the first `size` leaves (`size` is the latest checkpoint's).
    func pendingAuditLeaves(after size: Int64, limit: Int) async throws -> [PendingAuditLeaf]
    /// The integrated leaves with indices `start ..< start + count` (fewer at the end).
    func auditLeaves(from start: Int64, count: Int) async throws -> [[UInt8]]
    /// Hashes of complete subtrees: `level` 0 holds leaf hashes; node `index` at `level` covers
    /// leaves `index × 2^level ..< (index + 1) × 2^level`. Missing nodes are left out.
    func auditNodes(_ coordinates: [AuditNodeID]) async throws -> [AuditNodeID: [UInt8]]
    /// Integrates `leaves` (as returned by ``pendingAuditLeaves(after:limit:)``, taking indices
    /// `previousSize ..< previousSize + leaves.count`) with the node hashes and the signed
    /// checkpoint that cover them, all in one transaction — and only if the latest checkpoint
    /// still covers `previousSize` leaves; otherwise it throws ``AuditLogError`` and changes nothing.
    func saveAuditIntegration(previousSize: Int64, leaves: [PendingAuditLeaf], nodes: [AuditNodeID: [UInt8]], checkpoint: AuditCheckpoint) async throws
    /// Whether this relay node may integrate the log now. A store that several nodes share grants
    /// it to one node at a time, and to another once that one is gone; a one-node store always does.
    func claimAuditSequencer() async throws -> Bool
    /// The latest signed checkpoint.
    func latestAuditCheckpoint() async throws -> AuditCheckpoint?
    /// The index of the leaf with this leaf hash, if it is integrated.
    func auditLeafIndex(leafHash: [UInt8]) async throws -> Int64?

    // MARK: Several nodes

    /// Calls `arrived` with the mailbox of every envelope stored by any relay node on this store,
    /// until cancelled, so that each node can wake its own live connections; `nil` means anything
    /// may have arrived (the watch was interrupted and resumed). A store that only
    /// one node uses returns at once (the node wakes its connections itself).
    func watchArrivals(_ arrived: @escaping @Sendable (MailboxID?) -> Void) async throws
    /// Hands every envelope this store stores to `listener` once it is durable, in commit order,
    /// grouped by mailbox, so live connections that are caught up can be given them without
    /// reading them back. Returns false if the store cannot keep that order, or already has a
    /// listener (then connections are only rung, and read from the store).
    func publishArrivals(to listener: @escaping @Sendable (ArrivalEvent) -> Void) -> Bool
    /// Whether rate limits are kept here, shared by every node, instead of in each node's memory.
    var sharesRateLimits: Bool { get }
    /// Takes `cost` tokens from the bucket `key` (`rate` per second, up to `burst`), allowed while
    /// at least one token is left (the bucket may go into debt); `nil` when allowed, otherwise the
    /// seconds to wait (≥ 1). Only called when ``sharesRateLimits``.
    func takeRateToken(_ key: [UInt8], rate: Double, burst: Double, cost: Double) async throws -> Int?

    // MARK: Pairing slots

    /// Opens a pairing slot for `owner`, unless a slot with that id exists or `owner` already has
    /// `maximumOpen` slots open at `now` (checked in the same transaction).
    func createSlot(_ slot: PairingSlotID, owner: MailboxID, expiresAt: Int64, maximumOpen: Int, now: Int64) async throws -> SlotCreation
    /// Puts the companion's sealed request into an open slot, binding the slot to `claim`.
    func putSlotRequest(_ slot: PairingSlotID, request: [UInt8], claim: TokenHash, now: Int64) async throws -> SlotWrite
    /// The request in `owner`'s slot, if one arrived.
    func slotRequest(_ slot: PairingSlotID, owner: MailboxID, now: Int64) async throws -> SlotRead
    /// Puts the host's sealed receipt or reply into its slot: once each, after a request arrived.
    func putSlotPart(_ part: SlotHostPart, _ slot: PairingSlotID, owner: MailboxID, bytes: [UInt8], now: Int64) async throws -> SlotWrite
    /// The receipt, for the companion that made the request; the slot stays.
    func slotReceipt(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead
    /// Hands the reply to the companion that made the request and deletes the slot.
    func takeSlotReply(_ slot: PairingSlotID, claim: TokenHash, now: Int64) async throws -> SlotRead
    /// Closes a slot early (the host cancelled or declined); `false` if not found.
    func deleteSlot(_ slot: PairingSlotID, owner: MailboxID) async throws -> Bool

    // MARK: Operations

    /// Totals for metrics and the operator.
    func statistics() async throws -> StoreStatistics
    /// The write-ahead log's checkpoints, where the store keeps one itself (SQLite); else nil.
    var writeAheadLog: WriteAheadLogStatus? { get }
    /// Finishes pending writes and closes the store.
    func close() async throws
}

/// Envelopes the PostgreSQL store deletes per transaction when expiring, so that a large backlog
/// never holds writers (or mailbox locks) for long. (SQLite's one writer takes smaller chunks.)
let expiryChunkSize = 2_000

/// What the operator's audit (`errand-relay audit`) reads from a store.
protocol AuditableStore: RelayStore {
    /// The log, the latest checkpoint and every stored envelope, from one consistent snapshot.
    func auditSnapshot() async throws -> AuditSnapshot
}

/// Result of ``RelayStore/createMailbox(_:ownerKey:sponsor:maximumSponsored:now:)``.
public enum MailboxCreation: Sendable, Equatable {
    case created
    case existed
    /// The sponsor owns no mailbox here.
    case sponsorUnknown
    /// The sponsor's own mailbox was created by a sponsor: devices cannot create mailboxes.
    case sponsorIsDevice
    /// The sponsor has created as many mailboxes as it may.
    case sponsorLimitReached
}

/// A complete subtree of the audit log's tree.
public struct AuditNodeID: Hashable, Sendable {
    public let level: Int
    public let index: Int64
    public init(level: Int, index: Int64) {
        self.level = level
        self.index = index
    }
}

/// A signed checkpoint of the audit log, as a C2SP signed note.
public struct AuditCheckpoint: Sendable, Equatable {
    public let size: Int64
    public let note: String
    public init(size: Int64, note: String) {
        self.size = size
        self.note = note
    }
}

/// A leaf appended to the audit log and not yet integrated; `key` identifies it in the store.
public struct PendingAuditLeaf: Sendable, Equatable {
    public let key: Int64
    public let bytes: [UInt8]
    public init(key: Int64, bytes: [UInt8]) {
        self.key = key
        self.bytes = bytes
    }
}

/// One envelope of a batch with the hash of the send token it came with.
public struct EnvelopePost: Sendable {
    public let envelope: IncomingEnvelope
    public let sendToken: TokenHash

    public init(_ envelope: IncomingEnvelope, sendToken: TokenHash) {
        self.envelope = envelope
        self.sendToken = sendToken
    }
}

/// An envelope accepted from a sender, about to be stored.
public struct IncomingEnvelope: Sendable {
    public let mailbox: MailboxID
    public let id: EnvelopeID
    /// The whole encoded envelope (version, id, ciphertext).
    public let encoded: [UInt8]
    public let storedAt: Int64
    public let expiresAt: Int64

    public init(mailbox: MailboxID, id: EnvelopeID, encoded: [UInt8], storedAt: Int64, expiresAt: Int64) {
        self.mailbox = mailbox
        self.id = id
        self.encoded = encoded
        self.storedAt = storedAt
        self.expiresAt = expiresAt
    }
}

/// Per-mailbox limits on what waits for its owner.
public struct MailboxQuota: Sendable, Equatable {
    public var maximumEnvelopes: Int
    public var maximumBytes: Int

    public init(maximumEnvelopes: Int, maximumBytes: Int) {
        self.maximumEnvelopes = maximumEnvelopes
        self.maximumBytes = maximumBytes
    }
}

/// Result of ``RelayStore/storeEnvelope(_:sendToken:quota:)``.
public enum StoreOutcome: Sendable, Equatable {
    /// Stored now, with this sequence number.
    case stored(sequence: Int64)
    /// An envelope with this id was already stored (a retried post); nothing changed.
    case duplicate(sequence: Int64)
    /// The send token is not registered for this mailbox (never, or revoked), or no such mailbox.
    case forbidden
    /// The mailbox holds too many envelopes or bytes.
    case quotaExceeded(QuotaKind)
}

/// Which part of a quota is full.
public enum QuotaKind: String, Sendable, Equatable {
    case envelopes
    case bytes
}

/// What a store that publishes its arrivals (``RelayStore/publishArrivals(to:)``) reports.
public enum ArrivalEvent: Sendable {
    /// Envelopes stored for a mailbox, in order, durable.
    case stored(MailboxID, [StoredEnvelope])
    /// Envelopes may have been committed without being reported (their sync failed): anything
    /// may be new.
    case unknown
}

/// A stored envelope as handed to its mailbox's owner.
public struct StoredEnvelope: Sendable, Equatable {
    public let sequence: Int64
    public let encoded: [UInt8]

    public init(sequence: Int64, encoded: [UInt8]) {
        self.sequence = sequence
        self.encoded = encoded
    }
}

/// What ``RelayStore/expire(now:)`` deleted.
public struct ExpiryReport: Sendable, Equatable {
    public var envelopes = 0
    public var slots = 0
    public var nonces = 0
    public var invites = 0

    public init(envelopes: Int = 0, slots: Int = 0, nonces: Int = 0, invites: Int = 0) {
        self.envelopes = envelopes
        self.slots = slots
        self.nonces = nonces
        self.invites = invites
    }
}

/// Result of ``RelayStore/createSlot(_:owner:expiresAt:maximumOpen:now:)``.
public enum SlotCreation: Sendable, Equatable {
    case created
    /// A slot with this id exists.
    case exists
    /// The owner has as many slots open as it may.
    case tooMany
}

/// What the host writes into a pairing slot once the request is there: its receipt ("I have this
/// request", before it asks the person), then its reply. The raw value names the store's column.
public enum SlotHostPart: String, Sendable, CaseIterable {
    case receipt, reply
}

/// Result of writing into a pairing slot.
public enum SlotWrite: Sendable, Equatable {
    case accepted
    /// Someone already wrote there (a second companion, a second receipt or reply).
    case alreadyUsed
    /// No such slot (never opened, expired, or belongs to someone else), or no request yet for a reply.
    case notFound
}

/// Result of reading a pairing slot.
public enum SlotRead: Sendable, Equatable {
    case value([UInt8])
    /// The slot exists but nothing is there yet.
    case empty
    /// The slot was claimed by another companion.
    case forbidden
    case notFound
}

/// Totals kept by the store.
/// How a store's write-ahead log is kept short (SQLite's), for `/metrics`.
public struct WriteAheadLogStatus: Sendable, Equatable {
    /// Passive checkpoints run.
    public var checkpoints: Int
    /// Times the log was made to start over.
    public var restarts: Int
    /// Checkpoints that failed (not those that only waited too long for readers). While they
    /// fail, the log grows.
    public var failures: Int
    /// The last failure's message.
    public var lastError: String?
    /// The log's length in pages after the last commit.
    public var logPages: Int
}

public struct StoreStatistics: Sendable, Equatable {
    public var mailboxes: Int
    public var envelopes: Int
    public var envelopeBytes: Int
    public var slots: Int

    public init(mailboxes: Int, envelopes: Int, envelopeBytes: Int, slots: Int) {
        self.mailboxes = mailboxes
        self.envelopes = envelopes
        self.envelopeBytes = envelopeBytes
        self.slots = slots
    }
}

extension RelayStore {
    public var writeAheadLog: WriteAheadLogStatus? { nil }
}

/// The doorbells mailbox owners register (see ``Doorbell``).
public protocol DoorbellStore: Sendable {
    /// Saves a doorbell, replacing the mailbox's doorbell with the same id (same URL); a new one
    /// only while the mailbox has fewer than `maximum`.
    func saveDoorbell(_ doorbell: Doorbell, maximum: Int) async throws -> DoorbellSave
    /// A mailbox's doorbells, oldest first.
    func doorbells(of mailbox: MailboxID) async throws -> [Doorbell]
    /// Removes one; false when the mailbox has no doorbell with that id.
    func removeDoorbell(_ id: [UInt8], from mailbox: MailboxID) async throws -> Bool
}

/// What ``DoorbellStore/saveDoorbell(_:maximum:)`` did.
public enum DoorbellSave: Sendable, Equatable {
    case created
    /// The mailbox had a doorbell for that URL: its kind and keys were replaced.
    case replaced
    /// The mailbox already has `maximum` doorbells; nothing was saved.
    case full
}
