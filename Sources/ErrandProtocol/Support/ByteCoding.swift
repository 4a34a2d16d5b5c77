import ErrandCrypto

/// Appends big-endian integers, fixed fields and length-prefixed fields to a byte array.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Zeroes the buffer in place (for writers that held secrets).
    mutating func wipe() {
        bytes.withUnsafeMutableBytes { buffer in
            for index in buffer.indices { buffer[index] = 0 }
        }
    }

    mutating func append(_ value: UInt8) { bytes.append(value) }

    mutating func append(_ value: UInt16) {
        bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
    }

    mutating func append(_ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    mutating func append(_ value: UInt64) {
        append(UInt32(value >> 32))
        append(UInt32(value & 0xFFFF_FFFF))
    }

    mutating func append(_ field: [UInt8]) { bytes += field }

    mutating func append(_ secret: SecretBytes) {
        secret.withUnsafeBytes { bytes += $0 }
    }

    /// `u16 length ‖ bytes`.
    mutating func appendShortField(_ field: [UInt8]) {
        precondition(field.count <= UInt16.max)
        append(UInt16(field.count))
        bytes += field
    }
}

/// Reads what ``ByteWriter`` writes; every read fails cleanly (returns nil) past the end.
struct ByteReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset == bytes.count }

    mutating func read(_ count: Int) -> [UInt8]? {
        guard count >= 0, remaining >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func readSecret(_ count: Int) -> SecretBytes? {
        guard count >= 0, remaining >= count else { return nil }
        defer { offset += count }
        return bytes.withUnsafeBufferPointer { buffer in
            SecretBytes(copying: UnsafeBufferPointer(rebasing: buffer[offset..<offset + count]))
        }
    }

    mutating func readUInt8() -> UInt8? { read(1)?.first }

    mutating func readUInt16() -> UInt16? {
        guard let raw = read(2) else { return nil }
        return UInt16(raw[0]) << 8 | UInt16(raw[1])
    }

    mutating func readUInt32() -> UInt32? {
        guard let raw = read(4) else { return nil }
        return raw.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    mutating func readUInt64() -> UInt64? {
        guard let high = readUInt32(), let low = readUInt32() else { return nil }
        return UInt64(high) << 32 | UInt64(low)
    }

    mutating func readShortField() -> [UInt8]? {
        guard let length = readUInt16() else { return nil }
        return read(Int(length))
    }
}
