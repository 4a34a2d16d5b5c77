/// The `[push]` settings: doorbells and the push services the relay may call.
public struct PushConfiguration: Sendable, Equatable {
    /// Ring doorbells (and accept their registration).
    public var enabled = true
    /// Hosts the relay may call (`name`, `*.name`, or an IP address); see ``PushDestinations``.
    public var allowedHosts = PushDestinations.defaultAllowedHosts
    /// Allow `http://` push URLs (a push service on this machine or the local network).
    public var allowHTTP = false
    /// A mailbox's doorbells ring at most once per this many seconds; an urgent envelope in
    /// between rings once when the interval is over.
    public var minimumIntervalSeconds = 10
    /// Doorbells one mailbox may register.
    public var maximumPerMailbox = 4
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for the push services' operators.
    public var contact = "mailto:errand-relay@localhost"
    /// Seconds one call to a push service may take (connect and answer).
    public var timeoutSeconds = 10
    /// Rings waiting to be sent at most; more are dropped (and counted).
    public var queueLength = 1000

    public init() {}
}
