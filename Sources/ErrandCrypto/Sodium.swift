internal import CSodium

/// Makes sure `sodium_init()` ran exactly once before any libsodium call.
///
/// Swift initialises global constants lazily and thread-safely, so touching `Sodium.ready`
/// costs one already-taken branch after the first call.
enum Sodium {
    static let ready: Void = {
        // sodium_init returns 0 on success, 1 when already initialised, -1 on failure.
        precondition(sodium_init() >= 0, "libsodium failed to initialise (sodium_init)")
    }()
}
