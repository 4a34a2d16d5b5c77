#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Saves and loads secret keys as small binary files readable by their owner only (mode 0600).
///
/// Layout: `"ERSK"` ‖ version `0x01` ‖ kind (1 byte) ‖ length (2 bytes, big-endian) ‖ key bytes.
/// Files are written atomically by ``OwnerOnlyFile`` and read straight into
/// ``SecretBytes``. Loading refuses files that other users could read or write, or that belong
/// to another user — like OpenSSH does for private keys.
public enum SecretKeyFile {
    /// What a key file holds, so one kind of key is never loaded as another.
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        /// A 32-byte Ed25519 seed.
        case ed25519Seed = 1
        /// A 32-byte X25519 secret scalar.
        case x25519Secret = 2
        /// A 32-byte symmetric key.
        case symmetricKey = 3

        public var description: String {
            switch self {
            case .ed25519Seed: "Ed25519 signing key"
            case .x25519Secret: "X25519 key-agreement key"
            case .symmetricKey: "symmetric key"
            }
        }
    }

    private static let magic: [UInt8] = Array("ERSK".utf8)
    private static let version: UInt8 = 1
    private static let headerLength = 8
    private static let maximumKeyLength = 4096

    /// Writes `secret` to `path` with mode 0600, replacing any existing file atomically.
    /// - Throws: ``CryptoError/fileUnwritable`` naming the path and the system error.
    public static func write(_ secret: SecretBytes, kind: Kind, to path: String) throws(CryptoError) {
        precondition(secret.count <= maximumKeyLength, "key too long for a key file")
        let count = UInt16(secret.count)
        let header = magic + [version, kind.rawValue, UInt8(count >> 8), UInt8(count & 0xFF)]
        var failure: CryptoError?
        header.withUnsafeBytes { headerBytes in
            secret.withUnsafeBytes { secretBytes in
                do throws(CryptoError) { try OwnerOnlyFile.write([headerBytes, secretBytes], to: path) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Reads a key of the expected `kind` from `path`.
    /// - Throws: ``CryptoError/keyFileUnreadable`` (missing, truncated, wrong kind or format),
    ///   ``CryptoError/keyFileInsecure`` (group/other permissions, or another owner).
    public static func read(_ kind: Kind, from path: String) throws(CryptoError) -> SecretBytes {
        // O_NONBLOCK: a FIFO planted at the path must not hang the reader.
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            let error = errno
            throw CryptoError.keyFileUnreadable.detail("cannot open key file \(path): \(String(cString: strerror(error)))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw CryptoError.keyFileUnreadable.detail("cannot inspect key file \(path)")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw CryptoError.keyFileUnreadable.detail("\(path) is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw CryptoError.keyFileInsecure.detail(
                "key file \(path) has mode \(mode); other users could read it (run: chmod 600 \(path))")
        }
        guard info.st_uid == geteuid() else {
            throw CryptoError.keyFileInsecure.detail("key file \(path) belongs to another user")
        }
        var header = [UInt8](repeating: 0, count: headerLength)
        guard readAll(descriptor, &header), Array(header[0..<4]) == magic else {
            throw CryptoError.keyFileUnreadable.detail("\(path) is not an Errand key file")
        }
        guard header[4] == version else {
            throw CryptoError.keyFileUnreadable.detail("\(path) uses key file version \(header[4]); this Errand reads version \(version)")
        }
        guard header[5] == kind.rawValue else {
            let found = Kind(rawValue: header[5]).map(\.description) ?? "unknown kind \(header[5])"
            throw CryptoError.keyFileUnreadable.detail("\(path) holds a \(found), expected a \(kind)")
        }
        let length = Int(header[6]) << 8 | Int(header[7])
        guard Int(info.st_size) == headerLength + length else {
            throw CryptoError.keyFileUnreadable.detail("key file \(path) is truncated or has trailing data")
        }
        var complete = false
        let secret = SecretBytes(count: length) { buffer in
            complete = readAll(descriptor, buffer)
        }
        guard complete else {
            throw CryptoError.keyFileUnreadable.detail("key file \(path) is truncated")
        }
        return secret
    }

    private static func readAll(_ descriptor: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Bool {
        var offset = 0
        while offset < buffer.count {
            let got = systemRead(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            if got < 0 {
                if errno == EINTR { continue }
                return false
            }
            if got == 0 { return false }
            offset += got
        }
        return true
    }

    private static func readAll(_ descriptor: Int32, _ bytes: inout [UInt8]) -> Bool {
        bytes.withUnsafeMutableBytes { readAll(descriptor, $0) }
    }
}

// `read` is shadowed by the static method above inside the enum.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}
