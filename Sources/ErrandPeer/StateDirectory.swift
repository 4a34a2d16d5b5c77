import ErrandCrypto
import ErrandProtocol
public import Foundation

/// A peer's state folder (`--home`, else `$ERRAND_HOME`, else `~/.errand`): mode 0700, owned
/// by the current user; everything secret inside is 0600.
public struct StateDirectory: Sendable {
    /// The folder's path.
    public let path: String

    /// The folder chosen by `--home`, `$ERRAND_HOME`, or `~/.errand`, in that order.
    public static func resolve(_ home: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> StateDirectory {
        if let home, !home.isEmpty { return StateDirectory(path: home) }
        if let value = environment["ERRAND_HOME"], !value.isEmpty { return StateDirectory(path: value) }
        return StateDirectory(path: NSHomeDirectory() + "/.errand")
    }

    public init(path: String) {
        self.path = (path as NSString).expandingTildeInPath
    }

    /// A path inside the folder.
    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Creates the folder with mode 0700 if it is missing, and checks an existing one: it must be
    /// a directory owned by this user that others cannot read or write.
    /// - Throws: ``PeerError`` saying what is wrong and how to fix it.
    public func prepare() throws(PeerError) {
        var status = stat()
        if lstat(path, &status) != 0 {
            guard errno == ENOENT else {
                throw PeerError("cannot inspect the state folder \(path): \(String(cString: strerror(errno)))")
            }
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw PeerError("cannot create the state folder \(path): \(error.localizedDescription)",
                                hint: "choose a writable place with --home")
            }
            return
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw PeerError("\(path) is not a folder", hint: "choose another place with --home")
        }
        guard status.st_uid == getuid() else {
            throw PeerError("the state folder \(path) belongs to another user", hint: "use a folder you own with --home")
        }
        if status.st_mode & 0o077 != 0 {
            throw PeerError("the state folder \(path) can be read or written by other users (mode \(String(status.st_mode & 0o777, radix: 8)))",
                            hint: "run: chmod 700 \(path)")
        }
    }

    /// Whether `name` exists in the folder.
    public func contains(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    /// Creates an empty file with mode 0600 unless it exists (so SQLite never creates it with the umask).
    public func createPrivateFile(_ name: String) throws(PeerError) {
        let descriptor = open(file(name), O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw PeerError("cannot create \(file(name)): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
    }
}

/// The name this machine goes by (its host name up to the first dot, cut to a valid device
/// name), or `fallback` when it has none usable.
public func thisMachineName(fallback: String) -> String {
    var name = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? fallback
    while name.utf8.count > DeviceName.maximumLength { name.removeLast() }
    return DeviceName.isAcceptable(name) ? name : fallback
}

/// A failure of a peer command the person can act on: what happened and what to do.
public struct PeerError: Error, Sendable, CustomStringConvertible {
    /// What happened.
    public let message: String
    /// What to do about it.
    public let hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}
