import ErrandRelayClient
import Testing

@Suite("Relay addresses")
struct RelayAddressTests {
    @Test("Plain http counts as unencrypted unless it stays on this machine", arguments: [
        ("http://relay.example.com", true), ("http://192.168.1.20:8080", true), ("HTTP://10.0.0.1", true), ("http://[2001:db8::1]:80", true),
        ("http://0.0.0.0:1", true), ("http://127.0.0.1.example.com", true),
        ("https://relay.example.com", false), ("http://127.0.0.1:8080", false), ("http://127.9.9.9", false),
        ("http://localhost:8080", false), ("http://LOCALHOST", false), ("http://relay.localhost", false), ("http://[::1]:8080", false),
    ])
    func unencrypted(_ url: String, _ expected: Bool) {
        #expect(RelayClient.isUnencryptedRemote(url) == expected, "\(url)")
    }
}
