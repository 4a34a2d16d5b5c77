/// An origin as browsers write it (RFC 6454): lower-case scheme and host, no trailing dot, the
/// port only when it is not the scheme's default, an IPv6 address in brackets. Used to compare
/// `Origin` headers with `web.allowed_origins` and for the VAPID `aud` of a push endpoint.
enum WebOrigin {
    static func text(scheme: String, host: String, port: Int?) -> String {
        let scheme = scheme.lowercased()
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        while host.hasSuffix(".") { host.removeLast() }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let defaultPort = scheme == "https" ? 443 : 80
        let shownPort = port.flatMap { $0 == defaultPort ? nil : ":\($0)" } ?? ""
        return "\(scheme)://\(shownHost)\(shownPort)"
    }
}
