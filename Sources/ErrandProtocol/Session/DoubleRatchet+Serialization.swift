public import ErrandCrypto

extension DoubleRatchet {
    private static let magic = Array("ERDR".utf8)
    private static let formatVersion: UInt8 = 1

    /// The whole state as bytes, for storing beside the message it was advanced by.
    ///
    /// Layout: `"ERDR" ‖ 0x01 ‖ DHs secret (32) ‖ opt(DHr) ‖ RK (32) ‖ opt(CKs) ‖ opt(CKr) ‖
    /// opt(HKs) ‖ opt(HKr) ‖ NHKs (32) ‖ NHKr (32) ‖ Ns ‖ Nr ‖ PN (u32 BE each) ‖
    /// skipped count (u32) ‖ count × (HK (32) ‖ N (u32) ‖ MK (32))`, where `opt(x)` is `0x00`
    /// or `0x01 ‖ x`. It holds secrets: keep it only in owner-only storage.
    public var serialized: SecretBytes {
        var writer = ByteWriter(capacity: 400 + skipped.count * 68)
        defer { writer.wipe() }
        writer.append(Self.magic)
        writer.append(Self.formatVersion)
        writer.append(sendingKeyPair.secret)
        writeOptional(&writer, remoteKey.map { SecretBytes(copying: $0.bytes) })
        writer.append(rootKey)
        for key in [sendingChain, receivingChain, sendingHeaderKey, receivingHeaderKey] {
            writeOptional(&writer, key)
        }
        writer.append(nextSendingHeaderKey)
        writer.append(nextReceivingHeaderKey)
        writer.append(sentCount)
        writer.append(receivedCount)
        writer.append(previousChainCount)
        writer.append(UInt32(skipped.count))
        for entry in skipped {
            writer.append(entry.headerKey)
            writer.append(entry.number)
            writer.append(entry.messageKey)
        }
        return SecretBytes(copying: writer.bytes)
    }

    /// Restores a state written by ``serialized``.
    /// - Throws: ``SessionError`` `.malformed` when the bytes are not a complete state.
    public init(serialized: SecretBytes) throws(SessionError) {
        var plain = serialized.unsafeCopyToArray()
        defer { for index in plain.indices { plain[index] = 0 } }
        var reader = ByteReader(plain)
        let malformed = SessionError(.malformed, "the stored session state is damaged or from an unknown version")
        guard reader.read(4) == Self.magic, reader.readUInt8() == Self.formatVersion,
              let dhSecret = reader.readSecret(32), let dh = try? X25519.SecretKey(secret: dhSecret) else { throw malformed }
        func optional(_ reader: inout ByteReader) throws(SessionError) -> SecretBytes? {
            switch reader.readUInt8() {
            case 0: return nil
            case 1: guard let key = reader.readSecret(32) else { throw malformed }; return key
            default: throw malformed
            }
        }
        let remote = try optional(&reader)
        guard let root = reader.readSecret(32) else { throw malformed }
        let sendingChain = try optional(&reader), receivingChain = try optional(&reader)
        let sendingHeaderKey = try optional(&reader), receivingHeaderKey = try optional(&reader)
        guard let nextSending = reader.readSecret(32), let nextReceiving = reader.readSecret(32),
              let sent = reader.readUInt32(), let received = reader.readUInt32(), let previous = reader.readUInt32(),
              let skippedCount = reader.readUInt32(), Int(skippedCount) <= Self.maximumStoredSkippedKeys else { throw malformed }
        var skipped: [SkippedKey] = []
        for _ in 0..<skippedCount {
            guard let headerKey = reader.readSecret(32), let number = reader.readUInt32(), let messageKey = reader.readSecret(32) else { throw malformed }
            skipped.append(SkippedKey(headerKey: headerKey, number: number, messageKey: messageKey))
        }
        guard reader.isAtEnd else { throw malformed }
        var remoteKey: X25519.PublicKey?
        if let remote {
            guard let key = try? X25519.PublicKey(bytes: remote.unsafeCopyToArray()) else { throw malformed }
            remoteKey = key
        }
        self.init(
            sendingKeyPair: dh, remoteKey: remoteKey, rootKey: root, sendingChain: sendingChain,
            receivingChain: receivingChain, sendingHeaderKey: sendingHeaderKey, receivingHeaderKey: receivingHeaderKey,
            nextSendingHeaderKey: nextSending, nextReceivingHeaderKey: nextReceiving,
            sentCount: sent, receivedCount: received, previousChainCount: previous, skipped: skipped)
    }

    private func writeOptional(_ writer: inout ByteWriter, _ key: SecretBytes?) {
        if let key {
            writer.append(UInt8(1))
            writer.append(key)
        } else {
            writer.append(UInt8(0))
        }
    }
}
