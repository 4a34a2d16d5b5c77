import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1`, `127.0.0.1`).
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    let bytes: [UInt8]
    let prefixLength: Int

    /// Parses `ADDRESS` or `ADDRESS/PREFIX`; nil if it is neither.
    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = Self.address(String(parts[0])) else { return nil }
        let bits = address.count * 8
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...bits).contains(prefix) else { return nil }
            prefixLength = prefix
        } else {
            prefixLength = bits
        }
        bytes = address
    }

    public var description: String { "\(Self.text(bytes))/\(prefixLength)" }

    /// Whether `address` (4 or 16 bytes) is in this network.
    func contains(_ address: [UInt8]) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = prefixLength
        for (mine, theirs) in zip(bytes, address) where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            guard mine & mask == theirs & mask else { return false }
            remaining -= 8
        }
        return true
    }

    /// The bytes of an IPv4 or IPv6 address (an IPv4-mapped IPv6 address as IPv4), or nil.
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes.prefix(10).allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes.suffix(4)) }
        return bytes
    }

    /// The usual text form of 4 or 16 address bytes.
    static func text(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return written == nil ? "?" : String(cString: buffer)
    }
}

/// Who a request comes from, for per-IP limits: the TCP peer, unless the peer is a trusted
/// reverse proxy; then the nearest address in `X-Forwarded-For` that is not a trusted proxy.
///
/// `X-Forwarded-For` from anyone else is ignored, so a client cannot pick its own address.
///
/// Limits key on ``limitKey(_:)``: an IPv4 address, or the IPv6 network of `ipv6PrefixLength`
/// bits around an IPv6 address (one subscriber usually holds a whole /64, so keying on the full
/// address would give it unlimited fresh buckets).
struct ClientAddressResolver: Sendable {
    let trustedProxies: [IPNetwork]
    var ipv6PrefixLength = 64

    /// What per-IP limits count `ip` (a ``clientIP(peer:forwardedFor:)`` answer) as.
    func limitKey(_ ip: String) -> String {
        guard let bytes = IPNetwork.address(ip), bytes.count == 16, ipv6PrefixLength < 128 else { return ip }
        var masked = bytes
        for index in masked.indices {
            let kept = max(0, min(8, ipv6PrefixLength - index * 8))
            masked[index] &= kept == 8 ? 0xFF : ~(0xFF >> UInt8(kept))
        }
        return "\(IPNetwork.text(masked))/\(ipv6PrefixLength)"
    }

    /// Whether the text address `peer` is one of the trusted proxies.
    func isTrustedProxy(_ peer: String) -> Bool {
        IPNetwork.address(peer).map(isTrusted) ?? false
    }

    /// - Parameters:
    ///   - peer: the TCP peer's address (nil for an in-process request).
    ///   - forwardedFor: every `X-Forwarded-For` value, in order.
    func clientIP(peer: String?, forwardedFor: [String]) -> String {
        guard let peer else { return "local" }
        guard !trustedProxies.isEmpty, let peerBytes = IPNetwork.address(peer), isTrusted(peerBytes) else { return peer }
        // Each proxy appends the address it received from: read from the right, skipping our own proxies.
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        var client = peerBytes
        for hop in hops.reversed() {
            // An entry that is not an address ends the chain: what the proxies vouch for stops here.
            guard let bytes = IPNetwork.address(Self.withoutPort(hop)) else { break }
            client = bytes
            if !isTrusted(bytes) { break }
        }
        return IPNetwork.text(client)
    }

    /// `203.0.113.7:4711` → `203.0.113.7`, `[2001:db8::1]:443` or `[2001:db8::1]` → `2001:db8::1`
    /// (some proxies add the client's port).
    static func withoutPort(_ hop: String) -> String {
        if hop.hasPrefix("["), let close = hop.firstIndex(of: "]") {
            return String(hop[hop.index(after: hop.startIndex)..<close])
        }
        let colons = hop.filter { $0 == ":" }.count
        if colons == 1, let colon = hop.firstIndex(of: ":") { return String(hop[..<colon]) }
        return hop
    }

    private func isTrusted(_ address: [UInt8]) -> Bool {
        trustedProxies.contains { $0.contains(address) }
    }
}
