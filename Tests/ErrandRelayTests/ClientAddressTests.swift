@testable import ErrandRelay
import Foundation
import Testing

@Suite("Client addresses behind reverse proxies")
struct ClientAddressTests {
    func address(_ text: String) -> [UInt8] { IPNetwork.address(text) ?? [] }

    /// The status of a request a trusted proxy would forward for `client`.
    func status(_ relay: TestRelay, from client: String) async throws -> Int {
        try await raw("GET", "\(relay.url)/v1/log/checkpoint", headers: [("X-Forwarded-For", client)]).status
    }

    @Test("Networks parse addresses and ranges, and refuse what is neither")
    func networks() throws {
        let v4 = try #require(IPNetwork("10.0.0.0/8"))
        #expect(v4.contains(address("10.200.3.4")))
        #expect(!v4.contains(address("11.0.0.1")))
        let narrow = try #require(IPNetwork("192.168.1.128/25"))
        #expect(narrow.contains(address("192.168.1.200")))
        #expect(!narrow.contains(address("192.168.1.100")))
        let v6 = try #require(IPNetwork("2001:db8::/32"))
        #expect(v6.contains(address("2001:db8:1::5")))
        #expect(!v6.contains(address("2001:db9::5")))
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        #expect(IPNetwork("127.0.0.1")?.contains(address("::ffff:127.0.0.1")) == true)
        for bad in ["", "nonsense", "10.0.0.0/33", "10.0.0/8", "::1/129", "10.0.0.1/x"] {
            #expect(IPNetwork(bad) == nil, "\(bad)")
        }
    }

    @Test("X-Forwarded-For counts only from a trusted proxy, read from the right past trusted hops")
    func resolution() {
        let resolver = ClientAddressResolver(trustedProxies: [IPNetwork("127.0.0.1")!, IPNetwork("10.0.0.0/8")!])
        // Not a proxy: whatever it claims is ignored.
        #expect(resolver.clientIP(peer: "203.0.113.9", forwardedFor: ["198.51.100.1"]) == "203.0.113.9")
        // A proxy: the address it received from.
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["198.51.100.1"]) == "198.51.100.1")
        // A client that sends its own header gets it appended to, not replaced: the rightmost untrusted entry wins.
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["1.2.3.4, 198.51.100.1, 10.1.1.1"]) == "198.51.100.1")
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["1.2.3.4", "198.51.100.1"]) == "198.51.100.1")
        // Garbage ends the chain at the last address the proxies vouch for.
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["198.51.100.1, junk, 10.2.2.2"]) == "10.2.2.2")
        // Ports some proxies add are dropped.
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["198.51.100.1:4711"]) == "198.51.100.1")
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["[2001:db8::1]:443"]) == "2001:db8::1")
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: ["2001:db8::2"]) == "2001:db8::2")
        // No header: the proxy itself.
        #expect(resolver.clientIP(peer: "127.0.0.1", forwardedFor: []) == "127.0.0.1")
        #expect(ClientAddressResolver(trustedProxies: []).clientIP(peer: "127.0.0.1", forwardedFor: ["198.51.100.1"]) == "127.0.0.1")
        #expect(resolver.clientIP(peer: nil, forwardedFor: ["198.51.100.1"]) == "local")
    }

    @Test("The setting parses a comma-separated list and names a bad entry")
    func setting() throws {
        var configuration = RelayConfiguration()
        try ConfigurationLoader.apply(environment: ["ERRAND_RELAY_TRUSTED_PROXIES": "127.0.0.1, ::1, 10.0.0.0/8"], to: &configuration)
        #expect(configuration.trustedProxies.map(\.description) == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"])
        let error = #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader.apply(environment: ["ERRAND_RELAY_TRUSTED_PROXIES": "127.0.0.1, proxy.local"], to: &configuration)
        }
        #expect(error?.description.contains("'proxy.local' is not an IP address") == true)
    }

    @Test("Per-IP limits apply to each client behind a trusted proxy, and to the proxy's peer otherwise")
    func perClientLimits() async throws {
        try await TestRelay.with({
            $0.requestsPerSecondPerIP = 0.01
            $0.requestBurstPerIP = 1
            $0.trustedProxies = [IPNetwork("127.0.0.1")!]
        }) { relay in
            let first = try await status(relay, from: "198.51.100.1")
            let again = try await status(relay, from: "198.51.100.1")
            let other = try await status(relay, from: "198.51.100.2")
            #expect(first != 429 && again == 429 && other != 429, "\(first) \(again) \(other)")
        }
        // Without trusted proxies the header is the client's own claim: ignored.
        try await TestRelay.with({
            $0.requestsPerSecondPerIP = 0.01
            $0.requestBurstPerIP = 1
        }) { relay in
            let first = try await status(relay, from: "198.51.100.1")
            let other = try await status(relay, from: "198.51.100.2")
            #expect(first != 429 && other == 429, "\(first) \(other)")
        }
    }

    @Test("IPv6 clients are counted by their /64 (or the configured prefix); IPv4 ones by their address")
    func limitKeys() {
        let resolver = ClientAddressResolver(trustedProxies: [])
        #expect(resolver.limitKey("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64")
        #expect(resolver.limitKey("2001:db8:1:2:bbbb:cccc:dddd:eeee") == "2001:db8:1:2::/64")
        #expect(resolver.limitKey("2001:db8:1:3::1") == "2001:db8:1:3::/64")
        #expect(resolver.limitKey("203.0.113.9") == "203.0.113.9")
        #expect(resolver.limitKey("local") == "local")
        let wide = ClientAddressResolver(trustedProxies: [], ipv6PrefixLength: 44)
        #expect(wide.limitKey("2001:db8:1:2:aaaa::1") == "2001:db8::/44")
        #expect(wide.limitKey("2001:db8:1f:2::1") == "2001:db8:10::/44")
        let exact = ClientAddressResolver(trustedProxies: [], ipv6PrefixLength: 128)
        #expect(exact.limitKey("2001:db8:1:2:aaaa::1") == "2001:db8:1:2:aaaa::1")
    }

    @Test("Fresh addresses from one IPv6 /64 share one rate bucket; another /64 has its own")
    func ipv6NetworksShareLimits() async throws {
        try await TestRelay.with({
            $0.requestsPerSecondPerIP = 0.01
            $0.requestBurstPerIP = 1
            $0.trustedProxies = [IPNetwork("127.0.0.1")!]
        }) { relay in
            let first = try await status(relay, from: "2001:db8:1:2::1")
            let sameNetwork = try await status(relay, from: "2001:db8:1:2:ffff:1:2:3")
            let otherNetwork = try await status(relay, from: "2001:db8:1:3::1")
            #expect(first != 429 && sameNetwork == 429 && otherNetwork != 429, "\(first) \(sameNetwork) \(otherNetwork)")
        }
        try await TestRelay.with({
            $0.requestsPerSecondPerIP = 0.01
            $0.requestBurstPerIP = 1
            $0.trustedProxies = [IPNetwork("127.0.0.1")!]
            $0.ipv6PrefixLength = 128
        }) { relay in
            let first = try await status(relay, from: "2001:db8:1:2::1")
            let neighbour = try await status(relay, from: "2001:db8:1:2::2")
            #expect(first != 429 && neighbour != 429, "\(first) \(neighbour)")
        }
    }
}
