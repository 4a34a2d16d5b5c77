import CProcessControl
public import ErrandPeer
public import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The running host's local door for approval requests: a Unix socket in the state folder
/// (`approvals.sock`, mode 0600 in the 0700 folder; a peer of another user is refused). The
/// permission tool Claude Code calls (`errand host approval-tool`) sends one JSON line and reads
/// one back:
///
///     → {"task": ID, "tool": NAME, "input": {…}}
///     ← {"behavior": "allow", "updatedInput": {…}}  or  {"behavior": "deny", "message": TEXT}
final class ApprovalSocket: Sendable {
    static let fileName = "approvals.sock"
    /// Bytes of one request at most.
    static let requestLimit = 256 * 1024

    /// Connections open at once at most (more are closed at once).
    static let connectionLimit = 32

    let path: String
    private let descriptor: Int32
    private let closed = Mutex(false)
    private let open = Atomic<Int>(0)

    /// Listens at `path` (a stale socket file there is replaced: the host lock is already held).
    init(path: String) throws {
        self.path = path
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { throw HostSystemError("the state folder's path is too long for a local socket (\(path.utf8.count) bytes, at most \(capacity - 1))") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        unlink(path)
        #if canImport(Glibc)
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw HostSystemError("cannot make a local socket: \(String(cString: strerror(errno)))") }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        // Private from the start: `errand` runs with umask 077, in a 0700 folder; chmod makes sure.
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(descriptor, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc_close(descriptor)
            throw HostSystemError("cannot listen at \(path): \(reason)")
        }
        chmod(path, 0o600)
    }

    /// Answers connections until ``close()``: each request line goes to `handle`, its answer back.
    func serve(_ handle: @escaping @Sendable ([UInt8]) async -> [UInt8]) {
        Thread.detachNewThread { [self] in
            while !closed.withLock({ $0 }) {
                let connection = accept(descriptor, nil, nil)
                if connection < 0 {
                    // Out of descriptors, an aborted connection: wait a moment and go on.
                    if errno != EINTR && !closed.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.05) }
                    continue
                }
                _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                guard open.add(1, ordering: .relaxed).newValue <= Self.connectionLimit, Self.peerIsThisUser(connection) else {
                    finish(connection)
                    continue
                }
                // Each connection on a thread of its own: a slow client holds up only itself.
                Thread.detachNewThread { [self] in
                    guard let request = Self.readLine(connection) else { return finish(connection) }
                    Task {
                        let answer = await handle(request) + [10]
                        Thread.detachNewThread { [self] in
                            var timeout = timeval(tv_sec: 10, tv_usec: 0)
                            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                            _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                            finish(connection)
                        }
                    }
                }
            }
        }
    }

    private func finish(_ connection: Int32) {
        Glibc_close(connection)
        open.subtract(1, ordering: .relaxed)
    }

    /// Stops listening and removes the socket file.
    func close() {
        guard !closed.withLock({ closed in defer { closed = true }; return closed }) else { return }
        shutdown(descriptor, Int32(SHUT_RDWR))
        Glibc_close(descriptor)
        unlink(path)
    }

    private static func peerIsThisUser(_ connection: Int32) -> Bool {
        var uid: UInt32 = 0
        return errand_peer_uid(connection, &uid) == 0 && uid == getuid()
    }

    /// One line (without its newline), read within 10 s in all and at most ``requestLimit`` bytes.
    private static func readLine(_ connection: Int32) -> [UInt8]? {
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = ContinuousClock.now + .seconds(10)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count <= requestLimit && ContinuousClock.now < deadline {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
            guard count > 0 else { return received.isEmpty ? nil : received }
            received += buffer.prefix(count)
            if let newline = received.firstIndex(of: 10) { return Array(received[..<newline]) }
        }
        return nil
    }

    /// The answer that lets the tool run with `input` (Claude Code's permission prompt format).
    static func allowance(_ input: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: ["behavior": "allow", "updatedInput": input],
                                           options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }

    /// The answer that keeps the tool from running, telling the agent why.
    static func denial(_ message: String) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: ["behavior": "deny", "message": message], options: [.sortedKeys])) ?? Data())
    }

    /// Sends `request` to the host listening at `path` and waits for its answer line.
    /// - Throws: ``HostSystemError`` when no host listens there.
    static func ask(path: String, request: [UInt8]) throws -> [UInt8] {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { throw HostSystemError("the state folder's path is too long for a local socket") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: Array(path.utf8) + [0]) }
        #if canImport(Glibc)
        let connection = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let connection = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard connection >= 0 else { throw HostSystemError("cannot make a local socket") }
        defer { Glibc_close(connection) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(connection, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw HostSystemError("no Errand host is running on this state folder ('errand host run')") }
        let line = request + [10]
        _ = line.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            received += buffer.prefix(count)
            if let newline = received.firstIndex(of: 10) { return Array(received[..<newline]) }
        }
        guard !received.isEmpty else { throw HostSystemError("the Errand host closed the connection without an answer") }
        return received
    }
}

/// `close(2)`, which the class's own `close()` hides.
private func Glibc_close(_ descriptor: Int32) {
    #if canImport(Glibc)
    _ = Glibc.close(descriptor)
    #else
    _ = Darwin.close(descriptor)
    #endif
}

/// The permission tool's side: asks the running host of a state folder.
public enum HostApprovalClient {
    /// Asks the host running on `directory` whether the agent of `task` may use `tool` with
    /// `input` (JSON), waiting for the answer. Returns Claude Code's answer as JSON text:
    /// `{"behavior":"allow","updatedInput":…}` or `{"behavior":"deny","message":…}` — a deny,
    /// saying why, when no host answers.
    public static func ask(directory: StateDirectory, task: String, tool: String, input: Data) async -> String {
        let inputObject = (try? JSONSerialization.jsonObject(with: input)) ?? [String: Any]()
        let request: [String: Any] = ["task": task, "tool": tool, "input": inputObject]
        guard let line = try? JSONSerialization.data(withJSONObject: request, options: [.sortedKeys]) else {
            return String(decoding: ApprovalSocket.denial("the tool's input is not JSON"), as: UTF8.self)
        }
        guard line.count <= ApprovalSocket.requestLimit else {
            return String(decoding: ApprovalSocket.denial("the tool's input is over \(ApprovalSocket.requestLimit / 1024) KiB: too large to ask about from a device"), as: UTF8.self)
        }
        let path = directory.file(ApprovalSocket.fileName)
        let answer: [UInt8] = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                do {
                    continuation.resume(returning: try ApprovalSocket.ask(path: path, request: Array(line)))
                } catch {
                    continuation.resume(returning: ApprovalSocket.denial("Errand could not ask the paired devices: \((error as? HostSystemError)?.message ?? "\(error)")"))
                }
            }
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
