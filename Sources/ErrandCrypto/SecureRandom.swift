internal import CSodium

/// Random bytes from libsodium's CSPRNG (`randombytes_buf`).
public enum SecureRandom {
    /// `count` random bytes for public values (ids, nonces). Use ``SecretBytes/random(count:)``
    /// for anything secret.
    public static func bytes(count: Int) -> [UInt8] {
        precondition(count >= 0, "random byte count must not be negative")
        _ = Sodium.ready
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress, count > 0 { randombytes_buf(base, count) }
            initialized = count
        }
    }
}
