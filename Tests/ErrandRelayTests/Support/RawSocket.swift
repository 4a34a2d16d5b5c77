import Foundation

/// A blocking TCP client for misbehaving on purpose.
final class RawSocket: @unchecked Sendable {  // an immutable descriptor; the kernel serialises send/recv
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) {
        send(bytes: Array(text.utf8))
    }

    func send(bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// What the server sends until `marker` appears, it closes the connection, or 10 s pass.
    func read(until marker: String? = nil) -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer.prefix(count)
            if let marker, String(decoding: received, as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// What the server sends until it closes the connection or `seconds` pass without a byte;
    /// `closed` tells which: a relay that never closes shows as `false`, whatever the clock says.
    func readUntilClosed(waitingAtMost seconds: Int) -> (text: String, closed: Bool) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count > 0 { received += buffer.prefix(count); continue }
            let timedOut = count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
            return (String(decoding: received, as: UTF8.self), !timedOut)
        }
    }

    /// Exactly `count` bytes, or nil if the connection ends (or 10 s pass) first.
    func read(count: Int) -> [UInt8]? {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while received.count < count {
            let got = recv(descriptor, &buffer, min(buffer.count, count - received.count), 0)
            if got <= 0 { return nil }
            received += buffer.prefix(got)
        }
        return received
    }

    deinit { close(descriptor) }
}

/// Runs blocking socket work on a thread of its own, so it never holds one of the few threads
/// the relay under test needs for its own tasks.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// A WebSocket client over ``RawSocket`` that writes frames byte by byte as a test tells it to,
/// including frames a real client would never send, and answers nothing by itself (not even pings).
final class RawWebSocket: @unchecked Sendable {
    struct Frame {
        let opcode: UInt8
        let payload: [UInt8]
        var text: String { String(decoding: payload, as: UTF8.self) }
        /// The status code of a close frame.
        var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
    }

    static let text: UInt8 = 0x1, binary: UInt8 = 0x2, close: UInt8 = 0x8, ping: UInt8 = 0x9, pong: UInt8 = 0xA

    let socket: RawSocket

    /// Connects and upgrades `path`; throws if the relay does not answer 101.
    static func connect(port: Int, path: String) async throws -> RawWebSocket {
        try await offPool { try RawWebSocket(port: port, path: path) }
    }

    private init(port: Int, path: String) throws {
        socket = try RawSocket(port: port)
        socket.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        var head: [UInt8] = []
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]) {
            guard let byte = socket.read(count: 1) else { throw POSIXError(.ECONNRESET) }
            head += byte
        }
        guard String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101") else { throw POSIXError(.EPROTO) }
    }

    /// Sends one frame, masked unless `masked` is false.
    func send(opcode: UInt8, _ payload: [UInt8], masked: Bool = true, fin: Bool = true) {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        switch payload.count {
        case ..<126: frame.append(maskBit | UInt8(payload.count))
        case ..<65_536: frame += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: frame += [maskBit | 127] + (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        if masked {
            let key: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            frame += key
            frame += payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
        } else {
            frame += payload
        }
        socket.send(bytes: frame)
    }

    func send(text: String) { send(opcode: Self.text, Array(text.utf8)) }

    /// The next frame from the relay, or nil if the connection ends (or 10 s pass) first.
    func receive() async -> Frame? {
        (try? await offPool { self.receiveNow() }) ?? nil
    }

    private func receiveNow() -> Frame? {
        guard let head = socket.read(count: 2) else { return nil }
        var length = Int(head[1] & 0x7F)
        if length == 126 {
            guard let bytes = socket.read(count: 2) else { return nil }
            length = Int(bytes[0]) << 8 | Int(bytes[1])
        } else if length == 127 {
            guard let bytes = socket.read(count: 8) else { return nil }
            length = bytes.reduce(0) { $0 << 8 | Int($1) }
        }
        guard let payload = length == 0 ? [] : socket.read(count: length) else { return nil }
        return Frame(opcode: head[0] & 0x0F, payload: payload)
    }

    /// The next frame that is not a ping (pings are left unanswered).
    func receiveSkippingPings() async -> Frame? {
        while let frame = await receive() {
            if frame.opcode != Self.ping { return frame }
        }
        return nil
    }
}
