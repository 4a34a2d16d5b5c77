/// A system facility the host wanted could not be had (a local socket, a sleep inhibitor), in
/// words for its log or for the agent.
struct HostSystemError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
