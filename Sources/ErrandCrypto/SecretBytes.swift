internal import CSodium

/// Bytes that must stay secret: zeroed with `sodium_memzero` when released, never printed.
///
/// `description`, `debugDescription` and the reflection mirror show only the length, so a
/// `SecretBytes` in a log line, an error or `dump()` output reveals nothing. Read the bytes with
/// ``withUnsafeBytes(_:)`` and do not copy them into ordinary arrays that outlive the call.
public final class SecretBytes: @unchecked Sendable {
    // Immutable after initialisation, so sharing across tasks is safe.
    private let storage: UnsafeMutableRawBufferPointer

    /// Number of secret bytes.
    public let count: Int

    /// Allocates `count` bytes and lets `initialize` fill them.
    /// - Throws: whatever `initialize` throws (the memory is wiped and freed first).
    public init(count: Int, initializingWith initialize: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        precondition(count >= 0, "SecretBytes count must not be negative")
        let allocated = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(count, 1), alignment: 16)
        allocated.initializeMemory(as: UInt8.self, repeating: 0)
        do {
            try initialize(UnsafeMutableRawBufferPointer(rebasing: allocated[0..<count]))
        } catch {
            sodium_memzero(allocated.baseAddress, allocated.count)
            allocated.deallocate()
            throw error
        }
        self.storage = allocated
        self.count = count
    }

    /// Copies `bytes` into secret storage (no intermediate copy). The caller remains responsible
    /// for wiping the source.
    public convenience init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count) { buffer in
            buffer.copyBytes(from: bytes)
        }
    }

    /// `count` bytes from libsodium's CSPRNG.
    public static func random(count: Int) -> SecretBytes {
        _ = Sodium.ready
        return SecretBytes(count: count) { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
    }

    deinit {
        sodium_memzero(storage.baseAddress, storage.count)
        storage.deallocate()
    }

    /// Gives `body` read access to the secret bytes for the duration of the call.
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// Constant-time comparison (the lengths themselves are not treated as secret).
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        guard count == other.count else { return false }
        return withUnsafeBytes { mine in
            other.withUnsafeBytes { theirs in ConstantTime.equals(mine, theirs) }
        }
    }

    /// Whether every byte is zero, checked in constant time.
    public var isAllZero: Bool {
        withUnsafeBytes { buffer in
            buffer.count == 0 || sodium_is_zero(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), buffer.count) == 1
        }
    }

    /// Copies the secret into an ordinary array. Only for handing the bytes to an API that needs
    /// an array; prefer ``withUnsafeBytes(_:)``.
    public func unsafeCopyToArray() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}

extension SecretBytes: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "SecretBytes(\(count) bytes, redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["count": count]) }
}
