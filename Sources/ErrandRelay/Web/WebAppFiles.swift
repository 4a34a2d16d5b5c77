import ErrandCrypto
import Foundation
import NIOCore

/// The web companion's static files (`web/` in the source tree), read into memory once at start
/// and served at `/app/`. Only files with a known type are kept; hidden files, symbolic links
/// and the in-browser test pages (`test/`) are left out, so nothing else under the folder can
/// ever be served, and a request path is only ever looked up, never joined to a file path.
struct WebAppFiles: Sendable {
    /// One file, ready to send.
    struct File: Sendable {
        let body: ByteBuffer
        let contentType: String
        /// A strong validator: the first 16 bytes of the file's SHA-256, in hex, quoted.
        let entityTag: String
    }

    /// The folder the files were read from.
    let root: String
    /// By path relative to the root, e.g. `index.html`, `js/app.js`.
    let files: [String: File]

    /// Types by file extension: what the companion is made of.
    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
        "wasm": "application/wasm",
        "webmanifest": "application/manifest+json",
        "svg": "image/svg+xml",
        "png": "image/png",
        "ico": "image/x-icon",
        "txt": "text/plain; charset=utf-8",
    ]
    /// Folders under the root that are never served.
    static let excludedFolders: Set<String> = ["test"]
    /// Refuse to load a folder larger than this: it is not the companion.
    static let maximumTotalBytes = 32 * 1024 * 1024

    /// Reads every servable file under `root`.
    /// - Throws: ``RelayStartupError`` when the folder cannot be read, has no `index.html`, or is too large.
    static func load(root: String) throws -> WebAppFiles {
        let rootURL = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
        guard FileManager.default.fileExists(atPath: rootURL.appendingPathComponent("index.html").path) else {
            throw RelayStartupError("the web companion folder \(root) has no index.html",
                                    hint: "set web.root to the web/ folder of an Errand release, or web.enabled = false")
        }
        guard let enumerator = FileManager.default.enumerator(
            at: rootURL, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey],
            options: [.skipsHiddenFiles]) else {
            throw RelayStartupError("cannot read the web companion folder \(root)")
        }
        var files: [String: File] = [:]
        var total = 0
        let prefix = rootURL.path.hasSuffix("/") ? rootURL.path : rootURL.path + "/"
        while let url = enumerator.nextObject() as? URL {
            let path = url.standardizedFileURL.path
            guard path.hasPrefix(prefix) else { continue }
            let relative = String(path.dropFirst(prefix.count))
            let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
            if values?.isSymbolicLink == true { continue }
            if excludedFolders.contains(where: { relative == $0 || relative.hasPrefix($0 + "/") }) {
                enumerator.skipDescendants()
                continue
            }
            guard values?.isRegularFile == true, let type = contentTypes[url.pathExtension.lowercased()] else { continue }
            let data: Data
            do { data = try Data(contentsOf: url) } catch {
                throw RelayStartupError("cannot read \(path) of the web companion: \(error.localizedDescription)")
            }
            total += data.count
            guard total <= maximumTotalBytes else {
                throw RelayStartupError("the web companion folder \(root) holds more than \(maximumTotalBytes / 1024 / 1024) MiB",
                                        hint: "point web.root at the web/ folder itself")
            }
            let digest = SHA256.hash([UInt8](data))
            files[relative] = File(body: ByteBuffer(bytes: data), contentType: type,
                                   entityTag: "\"" + ByteEncoding.hex(Array(digest.prefix(16))) + "\"")
        }
        return WebAppFiles(root: rootURL.path, files: files)
    }

    /// Where the companion's files are when `web.root` is not set: beside an installed relay
    /// (`<prefix>/share/errand/web` for `<prefix>/bin/errand-relay`), else the `web/` folder of
    /// the source tree the relay was built in (found walking up from the executable).
    static func locate(executable: String) -> String? {
        let executableURL = URL(fileURLWithPath: executable).resolvingSymlinksInPath()
        var folder = executableURL.deletingLastPathComponent()
        let installed = folder.deletingLastPathComponent().appendingPathComponent("share/errand/web")
        if isCompanion(installed) { return installed.path }
        for _ in 0..<8 {
            let candidate = folder.appendingPathComponent("web")
            if isCompanion(candidate) { return candidate.path }
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        return nil
    }

    /// A folder is the companion when it has its page and its main module.
    private static func isCompanion(_ folder: URL) -> Bool {
        FileManager.default.fileExists(atPath: folder.appendingPathComponent("index.html").path)
            && FileManager.default.fileExists(atPath: folder.appendingPathComponent("js/companion.js").path)
    }
}
