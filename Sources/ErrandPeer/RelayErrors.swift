public import ErrandRelayClient
import ErrandProtocol

extension PeerError {
    /// A relay failure in words. `action` is a verb phrase ("register this host's mailbox").
    public init(relay error: RelayClientError, relayURL: String, doing action: String) {
        switch error.kind {
        case .unreachable:
            self.init("could not \(action): \(error.message)",
                      hint: "check that the relay is running and the address is right (use --relay to pick another address)")
        case .refused(let code):
            self.init("the relay refused to \(action): \(error.message)", hint: Self.hint(for: code))
        case .protocolViolation:
            self.init("could not \(action): the relay at \(relayURL) answered something unexpected (\(error.message))",
                      hint: "check that the address is an Errand relay of a compatible version")
        }
    }

    private static func hint(for code: RelayErrorCode) -> String? {
        switch code {
        case .rateLimited: "wait a little and try again"
        case .unavailable, .internalError: "try again later; if it persists, tell the relay's operator"
        default: nil
        }
    }
}
