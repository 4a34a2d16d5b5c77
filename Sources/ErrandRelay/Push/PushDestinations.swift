import Foundation

/// Which push services a relay may call: only hosts its operator allows (`push.allowed_hosts`),
/// never a loopback, private or link-local address unless that exact address or name is listed,
/// and only over https unless `push.allow_http` is set. Checked when a doorbell is registered
/// and again, with the name resolved, before every call.
struct PushDestinations: Sendable, Equatable {
    /// The browsers' push services and ntfy.sh.
    static let defaultAllowedHosts = [
        "fcm.googleapis.com", "*.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com", "ntfy.sh",
    ]

    /// Lower-case names, `*.name` wildcards and IP addresses.
    let allowedHosts: [String]
    let allowHTTP: Bool

    init(allowedHosts: [String], allowHTTP: Bool) {
        self.allowedHosts = allowedHosts.map { Self.normalised($0) }
        self.allowHTTP = allowHTTP
    }

    /// Why `text` may not be called, or nil when it may (as far as can be told without resolving it).
    func refusal(of text: String) -> String? {
        guard text.utf8.count <= 2048 else { return "the URL is longer than 2048 bytes" }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              let rawHost = components.host, !rawHost.isEmpty else {
            return "'\(text.prefix(80))' is not an absolute http(s) URL"
        }
        guard components.user == nil, components.password == nil else { return "the URL must not carry a user name or password" }
        // Compared as written: a percent-escape (a NUL, say) would make the allow-list and the
        // resolver see different names.
        guard let rawEncoded = components.percentEncodedHost, !rawEncoded.contains("%"),
              Self.isPlainHost(rawEncoded) || IPAddressClass(rawEncoded) != nil else {
            return "the URL's host must be a plain name or IP address (letters, digits, '-', '.'; IPv6 in brackets)"
        }
        guard components.fragment == nil else { return "the URL must not have a fragment (#…)" }
        switch scheme {
        case "https": break
        case "http" where allowHTTP: break
        case "http": return "the URL must use https (this relay does not call plain http: push.allow_http is off)"
        default: return "the URL must use https, not \(scheme)"
        }
        let host = Self.normalised(rawHost)
        guard let entry = allowedHosts.first(where: { Self.matches(host, $0) }) else {
            return "\(host) is not one of the push services this relay may call (push.allowed_hosts: \(allowedHosts.joined(separator: ", ")))"
        }
        if let address = IPAddressClass(host), !address.isPublic, entry != host {
            return "\(host) is a \(address.kind) address; the relay calls one only when push.allowed_hosts lists it exactly"
        }
        return nil
    }

    /// Why `host`, resolved to `addresses`, may not be called now, or nil. A name listed exactly
    /// may resolve to anything; one allowed through a wildcard must resolve to public addresses only.
    func refusal(host rawHost: String, resolvedTo addresses: [String]) -> String? {
        let host = Self.normalised(rawHost)
        guard !addresses.isEmpty else { return "\(host) did not resolve to any address" }
        if allowedHosts.contains(host) { return nil }
        for address in addresses {
            guard let kind = IPAddressClass(address) else { return "\(host) resolves to \(address), which is not a plain address" }
            if !kind.isPublic {
                return "\(host) resolves to \(address), a \(kind.kind) address; the relay calls one only when push.allowed_hosts lists the name exactly"
            }
        }
        return nil
    }

    /// A name of letters, digits, '-' and '.', or an IPv6 address in brackets.
    static func isPlainHost(_ host: String) -> Bool {
        if host.hasPrefix("["), host.hasSuffix("]") {
            return host.dropFirst().dropLast().allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        }
        return !host.isEmpty && host.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "." }
    }

    /// The origin of `url` as push services compare it (see ``WebOrigin``).
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
              let host = components.percentEncodedHost, !host.isEmpty else { return nil }
        return WebOrigin.text(scheme: scheme, host: host, port: components.port)
    }

    static func normalised(_ host: String) -> String {
        var host = host.lowercased().trimmingCharacters(in: .whitespaces)
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        while host.hasSuffix(".") { host.removeLast() }
        return host
    }

    static func matches(_ host: String, _ entry: String) -> Bool {
        if entry.hasPrefix("*.") {
            let suffix = entry.dropFirst(1)  // ".example.com"
            return host.hasSuffix(suffix) && host.count > suffix.count
        }
        return host == entry
    }
}

/// What kind of address an IP literal is: public, or one of the ranges a relay must not be made to call.
struct IPAddressClass: Sendable, Equatable {
    /// "loopback", "private", "link-local", … or "public".
    let kind: String
    var isPublic: Bool { kind == "public" }

    /// Nil when `text` is not an IPv4 or IPv6 address.
    init?(_ text: String) {
        let text = PushDestinations.normalised(text)
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            kind = Self.classify(v4: withUnsafeBytes(of: v4) { Array($0) })
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms are the IPv4 address.
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                kind = Self.classify(v4: Array(bytes[12...]))
            } else {
                kind = Self.classify(v6: bytes)
            }
        } else {
            return nil
        }
    }

    private static func classify(v4 b: [UInt8]) -> String {
        switch (b[0], b[1]) {
        case (0, _): "unspecified"
        case (127, _): "loopback"
        case (10, _), (172, 16...31), (192, 168): "private"
        case (100, 64...127): "shared (carrier-grade NAT)"
        case (169, 254): "link-local"
        case (192, 0) where b[2] == 0: "special-purpose"
        case (198, 18...19): "benchmarking"
        case (224...239, _): "multicast"
        case (240...255, _): "reserved"
        default: "public"
        }
    }

    private static func classify(v6 b: [UInt8]) -> String {
        if b.allSatisfy({ $0 == 0 }) { return "unspecified" }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return "loopback" }
        if b[0] == 0xfe && (b[1] & 0xc0) == 0x80 { return "link-local" }
        if (b[0] & 0xfe) == 0xfc { return "private" }  // unique local fc00::/7
        if b[0] == 0xff { return "multicast" }
        if b[0..<12].allSatisfy({ $0 == 0 }) { return "special-purpose" }  // ::a.b.c.d (deprecated compatible form)
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b { return "special-purpose" }  // NAT64 64:ff9b::/96, 64:ff9b:1::/48
        if b[0] == 0x20 && b[1] == 0x02 { return "special-purpose" }  // 6to4 2002::/16 (may embed a private IPv4 address)
        if b[0] == 0xfe && (b[1] & 0xc0) == 0xc0 { return "site-local" }  // fec0::/10
        if b[0..<8].allSatisfy({ $0 == 0 }) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0 { return "special-purpose" }  // ::ffff:0:a.b.c.d
        return "public"
    }
}
