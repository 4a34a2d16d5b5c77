public import ErrandPeer
public import ErrandProtocol
import Foundation

/// The executables in `H/actions/`. Each describes itself with a line near the top:
/// `# description: what it does` (the first ten lines are read).
public struct ActionCatalog: Sendable {
    public let folder: String

    public init(directory: StateDirectory) {
        folder = directory.file("actions")
    }

    /// Action names: letters, digits, `.`, `_`, `-`; not starting with `.`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
    }

    /// Every executable regular file with a valid name, sorted.
    public func list() -> [ActionInfo] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        return names.sorted().compactMap { name in
            guard Self.isValidName(name), let path = try? executable(named: name) else { return nil }
            return ActionInfo(name: name, description: Self.description(of: path))
        }
    }

    /// The path of the action called `name`.
    /// - Throws: ``PeerError`` when there is no such executable.
    public func executable(named name: String) throws(PeerError) -> String {
        guard Self.isValidName(name) else { throw PeerError("\"\(name)\" is not an action name") }
        let path = (folder as NSString).appendingPathComponent(name)
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG, access(path, X_OK) == 0 else {
            throw PeerError("there is no action called \(name)", hint: "list them with 'errand actions'")
        }
        return path
    }

    static func description(of path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let head = String(decoding: (try? handle.read(upToCount: 4096)) ?? Data(), as: UTF8.self)
        for line in head.split(separator: "\n").prefix(10) {
            let trimmed = line.drop { $0 == "#" || $0 == " " || $0 == "/" }
            if trimmed.lowercased().hasPrefix("description:") {
                return trimmed.dropFirst("description:".count).trimmingCharacters(in: .whitespaces)
            }
        }
        return ""
    }
}
