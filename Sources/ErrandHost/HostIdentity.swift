public import ErrandCrypto
public import ErrandPeer
public import ErrandProtocol

/// The host's long-term keys: Ed25519 (owns the host's mailbox, signs pairing replies) and
/// X25519 (companions seal pairing requests to it). Kept in `identity.key` and `agreement.key`
/// in the host's state folder, mode 0600.
public struct HostIdentity: Sendable {
    static let signingFile = "identity.key"
    static let agreementFile = "agreement.key"

    public let signing: Ed25519.SecretKey
    public let agreement: X25519.SecretKey

    /// Fresh keys.
    public init() {
        signing = Ed25519.SecretKey()
        agreement = X25519.SecretKey()
    }

    /// The host's mailbox at the relay.
    public var mailbox: MailboxID { MailboxID(owner: signing.publicKey) }

    /// Loads both keys from `directory`.
    /// - Throws: ``PeerError`` when a key file is missing, damaged or readable by others.
    public static func load(from directory: StateDirectory) throws(PeerError) -> HostIdentity {
        do {
            let seed = try SecretKeyFile.read(.ed25519Seed, from: directory.file(signingFile))
            let secret = try SecretKeyFile.read(.x25519Secret, from: directory.file(agreementFile))
            return try HostIdentity(signing: Ed25519.SecretKey(seed: seed), agreement: X25519.SecretKey(secret: secret))
        } catch {
            throw PeerError("cannot load the host's keys from \(directory.path): \(error.description)",
                            hint: "run 'errand host init --home \(directory.path) --relay URL' first, or fix the file's permissions")
        }
    }

    private init(signing: Ed25519.SecretKey, agreement: X25519.SecretKey) {
        self.signing = signing
        self.agreement = agreement
    }

    /// Writes both keys to `directory` (0600, atomically).
    func save(to directory: StateDirectory) throws(PeerError) {
        do {
            try SecretKeyFile.write(signing.seed, kind: .ed25519Seed, to: directory.file(Self.signingFile))
            try SecretKeyFile.write(agreement.secret, kind: .x25519Secret, to: directory.file(Self.agreementFile))
        } catch {
            throw PeerError("cannot save the host's keys in \(directory.path): \(error.description)")
        }
    }
}
