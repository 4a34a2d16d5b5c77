internal import CSodium

/// Comparisons whose running time does not depend on where the inputs differ.
public enum ConstantTime {
    /// Whether `a` and `b` hold the same bytes. Different lengths compare unequal at once
    /// (lengths are public); equal lengths are compared with `sodium_memcmp`.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { left in
            b.withUnsafeBytes { right in equals(left, right) }
        }
    }

    /// Raw-buffer form of ``equals(_:_:)-(([UInt8],[UInt8]))``.
    public static func equals(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
        guard left.count == right.count else { return false }
        guard left.count > 0 else { return true }
        _ = Sodium.ready
        return sodium_memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0
    }
}
