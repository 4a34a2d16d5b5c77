public import ErrandCrypto

/// Where a ratchet gets fresh key pairs and header nonces. Production uses libsodium's
/// generator; test vectors use a fixed sequence.
public protocol RatchetRandomness: Sendable {
    /// A new X25519 key pair for a DH ratchet step.
    func newKeyPair() -> X25519.SecretKey
    /// 24 random bytes for encrypting a header.
    func headerNonce() -> [UInt8]
}

/// Randomness from libsodium's CSPRNG.
public struct SystemRatchetRandomness: RatchetRandomness {
    public init() {}
    public func newKeyPair() -> X25519.SecretKey { X25519.SecretKey() }
    public func headerNonce() -> [UInt8] { SecureRandom.bytes(count: XChaCha20Poly1305.nonceLength) }
}

/// The Double Ratchet with header encryption (Signal's specification, revision 4, section 4),
/// built on X25519, HKDF-SHA256 / HMAC-SHA256 and XChaCha20-Poly1305.
///
/// A value type: ``encrypt(_:associatedData:randomness:)`` and
/// ``decrypt(_:associatedData:randomness:)`` change the state only when they succeed, so a
/// tampered, duplicate or undecryptable message leaves the session exactly as it was.
/// Persist ``serialized`` after every successful call, in the same transaction as whatever the
/// message caused.
///
/// Message layout: `encrypted header (80 bytes) ‖ body ciphertext (plaintext + 16)`, where the
/// encrypted header is `nonce (24) ‖ XChaCha20-Poly1305(HK, header (40), AD)` and the header is
/// `ratchet public key (32) ‖ PN (u32 BE) ‖ N (u32 BE)`. The body is sealed with the message
/// key's derived key and nonce over `AD ‖ encrypted header`.
public struct DoubleRatchet: Sendable {
    /// Length of a plaintext header: 40 bytes.
    public static let headerLength = X25519.keyLength + 8
    /// Length of an encrypted header: 80 bytes.
    public static let encryptedHeaderLength = XChaCha20Poly1305.nonceLength + headerLength + XChaCha20Poly1305.tagLength
    /// Most message keys skipped in one chain (a message may claim at most this many were lost).
    public static let maximumSkip: UInt32 = 1000
    /// Most skipped message keys kept in total; the oldest go first.
    public static let maximumStoredSkippedKeys = 2000

    static let rootInfo = Array("errand/v1/ratchet-root".utf8)
    static let messageInfo = Array("errand/v1/ratchet-message".utf8)
    static let messageKeyConstant: [UInt8] = [0x01]
    static let chainKeyConstant: [UInt8] = [0x02]

    struct SkippedKey: Sendable {
        let headerKey: SecretBytes
        let number: UInt32
        let messageKey: SecretBytes
    }

    var sendingKeyPair: X25519.SecretKey
    var remoteKey: X25519.PublicKey?
    var rootKey: SecretBytes
    var sendingChain: SecretBytes?
    var receivingChain: SecretBytes?
    var sendingHeaderKey: SecretBytes?
    var receivingHeaderKey: SecretBytes?
    var nextSendingHeaderKey: SecretBytes
    var nextReceivingHeaderKey: SecretBytes
    var sentCount: UInt32 = 0
    var receivedCount: UInt32 = 0
    var previousChainCount: UInt32 = 0
    var skipped: [SkippedKey] = []

    /// The initiator's side ("Alice"): it knows the responder's ratchet public key and sends first.
    /// - Parameters:
    ///   - sharedSecret: the 32-byte root key agreed during pairing.
    ///   - headerKey: the shared header key for the initiator's first chain (`HKa`).
    ///   - nextHeaderKey: the shared next header key of the responder (`NHKb`).
    public static func initiator(
        sharedSecret: SecretBytes, headerKey: SecretBytes, nextHeaderKey: SecretBytes,
        responderRatchetKey: X25519.PublicKey, randomness: some RatchetRandomness = SystemRatchetRandomness()
    ) throws(SessionError) -> DoubleRatchet {
        let keyPair = randomness.newKeyPair()
        let (root, chain, nextSending) = try rootStep(sharedSecret, keyPair, responderRatchetKey)
        return DoubleRatchet(
            sendingKeyPair: keyPair, remoteKey: responderRatchetKey, rootKey: root,
            sendingChain: chain, receivingChain: nil, sendingHeaderKey: headerKey, receivingHeaderKey: nil,
            nextSendingHeaderKey: nextSending, nextReceivingHeaderKey: nextHeaderKey)
    }

    /// The responder's side ("Bob"): it owns the ratchet key pair the initiator started from and
    /// can send only after the first message arrives.
    public static func responder(
        sharedSecret: SecretBytes, headerKey: SecretBytes, nextHeaderKey: SecretBytes, ratchetKeyPair: X25519.SecretKey
    ) -> DoubleRatchet {
        DoubleRatchet(
            sendingKeyPair: ratchetKeyPair, remoteKey: nil, rootKey: sharedSecret,
            sendingChain: nil, receivingChain: nil, sendingHeaderKey: nil, receivingHeaderKey: nil,
            nextSendingHeaderKey: nextHeaderKey, nextReceivingHeaderKey: headerKey)
    }

    /// Whether this side can send (the responder cannot before its first message arrives).
    public var canSend: Bool { sendingChain != nil && sendingHeaderKey != nil }

    /// Number of skipped message keys held for late messages.
    public var skippedKeyCount: Int { skipped.count }

    // MARK: Encrypt

    /// Encrypts one message and advances the sending chain.
    /// - Throws: ``SessionError`` `.cannotSendYet` on a responder before its first message.
    public mutating func encrypt(
        _ plaintext: [UInt8], associatedData: [UInt8], randomness: some RatchetRandomness = SystemRatchetRandomness()
    ) throws(SessionError) -> [UInt8] {
        guard let chain = sendingChain, let headerKey = sendingHeaderKey else {
            throw SessionError(.cannotSendYet, "this side of the session cannot send before the other side's first message arrives")
        }
        let (nextChain, messageKey) = Self.chainStep(chain)
        var header = ByteWriter()
        header.append(sendingKeyPair.publicKey.bytes)
        header.append(previousChainCount)
        header.append(sentCount)
        let nonce = randomness.headerNonce()
        let encryptedHeader = try nonce + Self.seal(header.bytes, key: headerKey, nonce: nonce, associatedData: associatedData)
        let body = try Self.sealBody(plaintext, messageKey: messageKey, associatedData: associatedData + encryptedHeader)
        sendingChain = nextChain
        sentCount += 1
        return encryptedHeader + body
    }

    // MARK: Decrypt

    /// Decrypts one message; the state changes only if it succeeds.
    /// - Throws: ``SessionError``: `.malformed`, `.duplicate` (already received), `.undecryptable`
    ///   (not for this session, from a chain that is gone, or altered), `.tooManySkipped`.
    public mutating func decrypt(
        _ message: [UInt8], associatedData: [UInt8], randomness: some RatchetRandomness = SystemRatchetRandomness()
    ) throws(SessionError) -> [UInt8] {
        var next = self
        let plaintext = try next.decryptInPlace(message, associatedData: associatedData, randomness: randomness)
        self = next
        return plaintext
    }

    private mutating func decryptInPlace(
        _ message: [UInt8], associatedData: [UInt8], randomness: some RatchetRandomness
    ) throws(SessionError) -> [UInt8] {
        guard message.count >= Self.encryptedHeaderLength + XChaCha20Poly1305.tagLength else {
            throw SessionError(.malformed, "a session message must be at least \(Self.encryptedHeaderLength + XChaCha20Poly1305.tagLength) bytes, got \(message.count)")
        }
        let encryptedHeader = Array(message[..<Self.encryptedHeaderLength])
        let body = Array(message[Self.encryptedHeaderLength...])
        let bodyData = associatedData + encryptedHeader

        // A key kept for a message that arrived late? Each distinct header key is tried once
        // (a few at most), then the message number is looked up.
        var headerKeys: [SecretBytes] = []
        for entry in skipped where !headerKeys.contains(where: { $0 === entry.headerKey || $0.constantTimeEquals(entry.headerKey) }) {
            headerKeys.append(entry.headerKey)
        }
        for headerKey in headerKeys {
            guard let header = Self.openHeader(encryptedHeader, key: headerKey, associatedData: associatedData),
                  let index = skipped.firstIndex(where: { $0.number == header.number && $0.headerKey.constantTimeEquals(headerKey) })
            else { continue }
            let plaintext = try Self.openBody(body, messageKey: skipped[index].messageKey, associatedData: bodyData)
            skipped.remove(at: index)
            return plaintext
        }

        let header: Header
        if let current = receivingHeaderKey, let opened = Self.openHeader(encryptedHeader, key: current, associatedData: associatedData) {
            header = opened
            if header.number < receivedCount {
                throw SessionError(.duplicate, "this message was already received (a duplicate or a replay); it was ignored")
            }
        } else if let opened = Self.openHeader(encryptedHeader, key: nextReceivingHeaderKey, associatedData: associatedData) {
            header = opened
            try skipMessageKeys(until: header.previousChainCount)
            try ratchetStep(remote: header.ratchetKey, randomness: randomness)
        } else {
            throw SessionError(.undecryptable, "the message could not be opened: it is not for this session, was already received, or was altered")
        }
        try skipMessageKeys(until: header.number)
        guard let chain = receivingChain else {
            throw SessionError(.undecryptable, "the message could not be opened: no receiving chain")
        }
        let (nextChain, messageKey) = Self.chainStep(chain)
        let plaintext = try Self.openBody(body, messageKey: messageKey, associatedData: bodyData)
        receivingChain = nextChain
        receivedCount += 1
        return plaintext
    }

    private mutating func skipMessageKeys(until target: UInt32) throws(SessionError) {
        guard UInt64(target) <= UInt64(receivedCount) + UInt64(Self.maximumSkip) else {
            throw SessionError(.tooManySkipped, "the message claims \(target - receivedCount) earlier messages were lost, more than the \(Self.maximumSkip) a session tolerates")
        }
        guard var chain = receivingChain, let headerKey = receivingHeaderKey else { return }
        while receivedCount < target {
            let (nextChain, messageKey) = Self.chainStep(chain)
            skipped.append(SkippedKey(headerKey: headerKey, number: receivedCount, messageKey: messageKey))
            chain = nextChain
            receivedCount += 1
        }
        receivingChain = chain
        if skipped.count > Self.maximumStoredSkippedKeys {
            skipped.removeFirst(skipped.count - Self.maximumStoredSkippedKeys)
        }
    }

    private mutating func ratchetStep(remote: X25519.PublicKey, randomness: some RatchetRandomness) throws(SessionError) {
        previousChainCount = sentCount
        sentCount = 0
        receivedCount = 0
        sendingHeaderKey = nextSendingHeaderKey
        receivingHeaderKey = nextReceivingHeaderKey
        remoteKey = remote
        let (root, receiving, nextReceiving) = try Self.rootStep(rootKey, sendingKeyPair, remote)
        receivingChain = receiving
        nextReceivingHeaderKey = nextReceiving
        sendingKeyPair = randomness.newKeyPair()
        let (root2, sending, nextSending) = try Self.rootStep(root, sendingKeyPair, remote)
        rootKey = root2
        sendingChain = sending
        nextSendingHeaderKey = nextSending
    }

    // MARK: KDFs and primitives

    struct Header {
        let ratchetKey: X25519.PublicKey
        let previousChainCount: UInt32
        let number: UInt32
    }

    /// `KDF_RK`: HKDF-SHA256(salt = root key, IKM = DH output, info = "errand/v1/ratchet-root", 96)
    /// → new root key ‖ chain key ‖ next header key.
    static func rootStep(
        _ rootKey: SecretBytes, _ keyPair: X25519.SecretKey, _ remote: X25519.PublicKey
    ) throws(SessionError) -> (SecretBytes, SecretBytes, SecretBytes) {
        let shared: SecretBytes
        do { shared = try keyPair.sharedSecret(with: remote) } catch {
            throw SessionError(.undecryptable, "the peer's ratchet key is not usable (\(error))")
        }
        var salt = rootKey.unsafeCopyToArray()
        defer { wipe(&salt) }
        let output = try! HKDF.deriveKey(inputKeyMaterial: shared, salt: salt, info: rootInfo, length: 96)
        return output.withUnsafeBytes { raw in
            (SecretBytes(copying: raw[0..<32]), SecretBytes(copying: raw[32..<64]), SecretBytes(copying: raw[64..<96]))
        }
    }

    /// `KDF_CK`: message key = HMAC-SHA256(chain key, 0x01), next chain key = HMAC-SHA256(chain key, 0x02).
    static func chainStep(_ chainKey: SecretBytes) -> (next: SecretBytes, messageKey: SecretBytes) {
        var messageKey = HMACSHA256.authenticationCode(for: messageKeyConstant, key: chainKey)
        var next = HMACSHA256.authenticationCode(for: chainKeyConstant, key: chainKey)
        defer { wipe(&messageKey); wipe(&next) }
        return (SecretBytes(copying: next), SecretBytes(copying: messageKey))
    }

    /// Body encryption: HKDF-SHA256(IKM = message key, salt = 32 zero bytes,
    /// info = "errand/v1/ratchet-message", 56) → XChaCha20-Poly1305 key (32) ‖ nonce (24).
    static func bodyKeyAndNonce(_ messageKey: SecretBytes) -> (XChaCha20Poly1305.Key, [UInt8]) {
        let output = try! HKDF.deriveKey(
            inputKeyMaterial: messageKey, salt: [UInt8](repeating: 0, count: 32), info: messageInfo, length: 56)
        return output.withUnsafeBytes { raw in
            (try! XChaCha20Poly1305.Key(SecretBytes(copying: raw[0..<32])), Array(raw[32..<56]))
        }
    }

    static func sealBody(_ plaintext: [UInt8], messageKey: SecretBytes, associatedData: [UInt8]) throws(SessionError) -> [UInt8] {
        let (key, nonce) = bodyKeyAndNonce(messageKey)
        return try! XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, associatedData: associatedData)
    }

    static func openBody(_ body: [UInt8], messageKey: SecretBytes, associatedData: [UInt8]) throws(SessionError) -> [UInt8] {
        let (key, nonce) = bodyKeyAndNonce(messageKey)
        do { return try XChaCha20Poly1305.open(body, key: key, nonce: nonce, associatedData: associatedData) } catch {
            throw SessionError(.undecryptable, "the message was altered in transit (its body does not authenticate); it was ignored")
        }
    }

    static func seal(_ header: [UInt8], key: SecretBytes, nonce: [UInt8], associatedData: [UInt8]) throws(SessionError) -> [UInt8] {
        do {
            return try XChaCha20Poly1305.seal(header, key: XChaCha20Poly1305.Key(key), nonce: nonce, associatedData: associatedData)
        } catch {
            throw SessionError(.malformed, "could not encrypt a header: \(error)")
        }
    }

    static func openHeader(_ encrypted: [UInt8], key: SecretBytes, associatedData: [UInt8]) -> Header? {
        let nonce = Array(encrypted[..<XChaCha20Poly1305.nonceLength])
        let sealed = Array(encrypted[XChaCha20Poly1305.nonceLength...])
        guard let headerKey = try? XChaCha20Poly1305.Key(key),
              let plain = try? XChaCha20Poly1305.open(sealed, key: headerKey, nonce: nonce, associatedData: associatedData),
              plain.count == headerLength else { return nil }
        var reader = ByteReader(plain)
        guard let keyBytes = reader.read(X25519.keyLength), let ratchetKey = try? X25519.PublicKey(bytes: keyBytes),
              let previous = reader.readUInt32(), let number = reader.readUInt32() else { return nil }
        return Header(ratchetKey: ratchetKey, previousChainCount: previous, number: number)
    }

    private static func wipe(_ bytes: inout [UInt8]) {
        for index in bytes.indices { bytes[index] = 0 }
    }
}

/// Why a session message could not be produced or accepted.
public struct SessionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: Hashable, Sendable {
        /// Not a well-formed message or state.
        case malformed
        /// Already received: a duplicate or a replay.
        case duplicate
        /// Cannot be opened with this session's keys (foreign, too old, or tampered).
        case undecryptable
        /// Claims more lost messages than a session tolerates.
        case tooManySkipped
        /// A responder tried to send before receiving.
        case cannotSendYet
        /// The payload does not fit in one envelope.
        case tooLarge
    }

    public let code: Code
    /// What happened, for a person.
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    public static func == (lhs: SessionError, rhs: SessionError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
