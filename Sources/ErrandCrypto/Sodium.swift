internal import CSodium

/// Makes sure `sodium_init()` ran exactly once before any libsodium call.
///
/// Swift initialises global constants lazily and thread-safely, so touching `Sodium.ready`
/// costs one already-taken branch after the first call.
enum Sodium {
    static let ready: Void = {
        // sodium_init returns 0 on success, 1 when already initialised, -1 on failure.
        precondition(sodium_init() >= 0, "libsodium failed to initialise (sodium_init)")
        // sodium_pad with block sizes of 256 bytes and more (LengthPadding) is correct from 1.0.17 on.
        let version = String(cString: sodium_version_string()).split(separator: ".").compactMap { Int($0) }
        precondition(version.lexicographicallyPrecedes([1, 0, 17]) == false,
                     "libsodium \(String(cString: sodium_version_string())) is too old; Errand needs 1.0.17 or newer")
    }()

    /// The linked libsodium's version, e.g. "1.0.18".
    static var version: String {
        _ = ready
        return String(cString: sodium_version_string())
    }
}
