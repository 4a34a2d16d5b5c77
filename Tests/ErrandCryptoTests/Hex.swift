import ErrandCrypto

/// Test shorthand: bytes from hex (fails the test loudly on a typo).
func hex(_ text: String) -> [UInt8] {
    try! ByteEncoding.bytes(hex: text)
}

func secret(_ text: String) -> SecretBytes {
    SecretBytes(copying: hex(text))
}

/// Flips one bit of `bytes` at `bitIndex`.
func flippingBit(_ bytes: [UInt8], _ bitIndex: Int) -> [UInt8] {
    var copy = bytes
    copy[bitIndex / 8] ^= 1 << UInt8(bitIndex % 8)
    return copy
}
