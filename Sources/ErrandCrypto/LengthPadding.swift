internal import CSodium

/// Hides message lengths before encryption: Padmé buckets with a 256-byte floor.
///
/// Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication
/// with PURBs", PETS 2019) rounds a length *L* up so that only the top ⌊log₂ E⌋+1 bits of its
/// binary form can be non-zero, where E = ⌊log₂ L⌋. The overhead is at most 12 % and a padded
/// length leaks O(log log L) bits. Padmé alone would still tell short commands apart ("ls" vs
/// "organise my notes"), so every message shorter than 256 bytes is padded to exactly 256:
/// all typical commands look the same on the wire.
///
/// The padding itself is ISO/IEC 7816-4 (a 0x80 byte then zeros), applied and removed with
/// libsodium's constant-time `sodium_pad` / `sodium_unpad`. At least one byte is always added,
/// so the bucket is chosen for `L + 1`.
public enum LengthPadding {
    /// Every padded message is at least this long.
    public static let minimumPaddedLength = 256

    /// Padmé rounding of `length` (without the floor).
    public static func padme(_ length: Int) -> Int {
        precondition(length >= 0, "length must not be negative")
        guard length > 2 else { return length }
        let exponent = Int.bitWidth - 1 - length.leadingZeroBitCount           // ⌊log₂ L⌋
        let exponentBits = Int.bitWidth - exponent.leadingZeroBitCount         // ⌊log₂ E⌋ + 1
        let lastBits = exponent - exponentBits
        let mask = (1 << lastBits) - 1
        return (length + mask) & ~mask
    }

    /// Length of the padded form of a message of `contentLength` bytes.
    public static func paddedLength(forContentLength contentLength: Int) -> Int {
        Swift.max(minimumPaddedLength, padme(contentLength + 1))
    }

    /// Pads `message` to its bucket.
    public static func pad(_ message: [UInt8]) -> [UInt8] {
        _ = Sodium.ready
        let target = paddedLength(forContentLength: message.count)
        var buffer = message
        buffer.append(contentsOf: repeatElement(0, count: target - message.count))
        var paddedLength = 0
        // blocksize = target > message.count, so sodium_pad fills exactly up to `target`.
        let status = sodium_pad(&paddedLength, &buffer, message.count, target, target)
        precondition(status == 0 && paddedLength == target, "sodium_pad failed for a correctly sized buffer")
        return buffer
    }

    /// Removes padding added by ``pad(_:)``.
    /// - Throws: ``CryptoError/invalidPadding`` when the marker is missing or the length is not
    ///   the bucket its content would have been padded to.
    public static func unpad(_ padded: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard padded.count >= minimumPaddedLength else {
            throw CryptoError.invalidPadding.detail("padded message is shorter than \(minimumPaddedLength) bytes")
        }
        _ = Sodium.ready
        var contentLength = 0
        let status = sodium_unpad(&contentLength, padded, padded.count, padded.count)
        guard status == 0 else {
            throw CryptoError.invalidPadding.detail("padding marker is missing")
        }
        guard paddedLength(forContentLength: contentLength) == padded.count else {
            throw CryptoError.invalidPadding.detail("padded length \(padded.count) is not the bucket for \(contentLength) bytes")
        }
        return Array(padded[..<contentLength])
    }
}
