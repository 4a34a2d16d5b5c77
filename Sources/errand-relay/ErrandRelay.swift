import ArgumentParser

/// `errand-relay`: the self-hostable relay that stores and forwards sealed envelopes.
@main
struct ErrandRelay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "errand-relay",
        abstract: "The Errand relay: stores and forwards sealed envelopes it cannot read.",
        discussion: "The server ('serve', 'invite') is not built yet; this release ships the envelope "
            + "format it will carry (docs/protocol.md).",
        version: "0.1.0"
    )
}
