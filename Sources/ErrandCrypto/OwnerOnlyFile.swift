#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes files that only their owner may read (mode 0600): key files, pairing codes, QR images
/// that carry a one-time secret.
///
/// The write is atomic: a temporary file in the same folder is filled, `fsync`ed and renamed
/// over the target, so a crash leaves either the old file or the new one, never half of one.
public enum OwnerOnlyFile {
    /// Writes `contents` to `path` with mode 0600.
    /// - Throws: ``CryptoError/fileUnwritable`` naming the path and the system error.
    public static func write(_ contents: [UInt8], to path: String) throws(CryptoError) {
        var failure: CryptoError?
        contents.withUnsafeBytes { bytes in
            do throws(CryptoError) { try write([bytes], to: path) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes the concatenation of `parts` to `path` with mode 0600.
    public static func write(_ parts: [UnsafeRawBufferPointer], to path: String) throws(CryptoError) {
        // A random temporary name beside the target: no collisions between writers, no name
        // another user could guess and occupy.
        var temporary = ""
        var descriptor: Int32 = -1
        for _ in 0..<8 {
            temporary = path + ".tmp-" + ByteEncoding.hex(SecureRandom.bytes(count: 8))
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if descriptor >= 0 || errno != EEXIST { break }
        }
        guard descriptor >= 0 else { throw unwritable(path, errno) }
        // The umask can only remove bits, but be explicit about the final mode.
        var ok = fchmod(descriptor, 0o600) == 0
        for part in parts where ok {
            ok = writeAll(descriptor, part)
        }
        ok = ok && fsync(descriptor) == 0
        let error = errno
        close(descriptor)
        guard ok else {
            unlink(temporary)
            throw unwritable(path, error)
        }
        guard rename(temporary, path) == 0 else {
            let error = errno
            unlink(temporary)
            throw unwritable(path, error)
        }
    }

    private static func unwritable(_ path: String, _ error: Int32) -> CryptoError {
        CryptoError.fileUnwritable.detail("cannot write \(path): \(String(cString: strerror(error)))")
    }

    private static func writeAll(_ descriptor: Int32, _ buffer: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < buffer.count {
            let written = systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}

// `write` is shadowed by the static methods above inside the enum.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
