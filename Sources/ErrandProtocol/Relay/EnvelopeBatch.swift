public import ErrandCrypto

/// The body of `POST /v1/envelopes`: several envelopes in one request, each for its own mailbox
/// and authorised by its own send token, stored in one commit.
///
/// Binary, `Content-Type: application/vnd.errand.envelope-batch`, a concatenation of items:
///
/// ```
/// item = mailbox id (16 bytes) ‖ send token (32 bytes) ‖ u32 big-endian length ‖ envelope v1 (length bytes)
/// ```
///
/// One to ``maximumItems`` items, at most ``maximumBodyBytes`` in all. The relay answers with
/// one ``Result`` per item, in order (``Response``).
public struct EnvelopeBatch: Sendable {
    /// One envelope and where it goes.
    public struct Item: Sendable {
        public let mailbox: MailboxID
        public let token: SendToken
        /// The encoded envelope (checked by the relay, not here).
        public let envelope: [UInt8]
        /// Ring the mailbox's doorbells if it is offline (sent as `Errand-Urgent-Items`, not in the body).
        public let urgent: Bool

        public init(mailbox: MailboxID, token: SendToken, envelope: [UInt8], urgent: Bool = false) {
            self.mailbox = mailbox
            self.token = token
            self.envelope = envelope
            self.urgent = urgent
        }
    }

    /// The header naming a batch's urgent items (zero-based, ascending, comma-separated).
    public static let urgentItemsHeader = "Errand-Urgent-Items"
    /// The header marking a single post urgent (`1`).
    public static let urgentHeader = "Errand-Urgent"

    /// The `Errand-Urgent-Items` value for these items, or nil when none is urgent.
    public static func urgentItems(_ items: some Collection<Item>) -> String? {
        let indices = items.enumerated().filter { $0.element.urgent }.map { String($0.offset) }
        return indices.isEmpty ? nil : indices.joined(separator: ",")
    }

    /// Most items in one batch.
    public static let maximumItems = 256
    /// Most bytes in one batch body (items with their headers).
    public static let maximumBodyBytes = 1024 * 1024
    /// Bytes in front of each envelope: mailbox id, send token, length.
    public static let itemHeaderLength = MailboxID.length + SendToken.length + 4
    /// The media type of the body.
    public static let contentType = "application/vnd.errand.envelope-batch"

    public let items: [Item]

    public init(items: [Item]) { self.items = items }

    /// The request body.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(items.reduce(0) { $0 + Self.itemHeaderLength + $1.envelope.count })
        for item in items {
            bytes += item.mailbox.bytes
            item.token.secret.withUnsafeBytes { bytes += $0 }
            let length = UInt32(item.envelope.count)
            bytes += (0..<4).map { UInt8(truncatingIfNeeded: length >> (24 - 8 * $0)) }
            bytes += item.envelope
        }
        return bytes
    }

    /// Parses a request body.
    /// - Throws: ``RelayProtocolError`` for an empty body, a truncated item, an item longer than
    ///   an envelope can be, or more than ``maximumItems`` items.
    public init(parsing bytes: [UInt8]) throws(RelayProtocolError) {
        guard !bytes.isEmpty else { throw RelayProtocolError("the batch is empty; send 1 to \(Self.maximumItems) envelopes") }
        var items: [Item] = []
        var offset = 0
        while offset < bytes.count {
            guard items.count < Self.maximumItems else {
                throw RelayProtocolError("the batch holds more than \(Self.maximumItems) envelopes; split it")
            }
            guard bytes.count - offset >= Self.itemHeaderLength else {
                throw RelayProtocolError("item \(items.count + 1) of the batch is cut short in its header (mailbox, token, length: \(Self.itemHeaderLength) bytes)")
            }
            let mailbox = try MailboxID(bytes: Array(bytes[offset..<(offset + MailboxID.length)]))
            offset += MailboxID.length
            let token = try SendToken(secret: SecretBytes(copying: bytes[offset..<(offset + SendToken.length)]))
            offset += SendToken.length
            let length = bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
            offset += 4
            guard length <= Envelope.maximumLength else {
                throw RelayProtocolError("item \(items.count + 1) of the batch claims \(length) bytes; an envelope is at most \(Envelope.maximumLength)")
            }
            guard bytes.count - offset >= length else {
                throw RelayProtocolError("item \(items.count + 1) of the batch claims \(length) bytes but only \(bytes.count - offset) follow")
            }
            items.append(Item(mailbox: mailbox, token: token, envelope: Array(bytes[offset..<(offset + length)])))
            offset += length
        }
        self.items = items
    }

    /// What happened to one item: `status` 201 (stored) or 200 (already stored: a retry), both
    /// with `seq`; otherwise the refusal's status, `code`, `message` and maybe `retryAfterSeconds`.
    public struct Result: Codable, Sendable, Equatable {
        public let status: Int
        public let seq: Int64?
        public let code: String?
        public let message: String?
        public let retryAfterSeconds: Int?

        /// Stored now (201) or found stored from an earlier post (200).
        public static func stored(sequence: Int64, duplicate: Bool) -> Result {
            Result(status: duplicate ? 200 : 201, seq: sequence, code: nil, message: nil, retryAfterSeconds: nil)
        }

        /// Refused, for the reason `code`.
        public static func refused(_ code: RelayErrorCode, _ message: String, retryAfterSeconds: Int? = nil) -> Result {
            Result(status: code.status, seq: nil, code: code.rawValue, message: message, retryAfterSeconds: retryAfterSeconds)
        }

        /// The item is stored (now or before).
        public var isStored: Bool { status == 200 || status == 201 }
    }

    /// The relay's answer: one result per item, in the order of the items.
    public struct Response: Codable, Sendable, Equatable {
        public let results: [Result]
        public init(results: [Result]) { self.results = results }
    }
}
