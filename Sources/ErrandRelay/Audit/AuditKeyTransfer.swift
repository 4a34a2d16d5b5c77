import ErrandCrypto
import ErrandTransparency
import Foundation

/// Carries the audit log's signing key from one relay node's data folder to another's, as one
/// line of text (`errand-relay-audit-key-v1:` then the base64url Ed25519 seed). Nodes sharing a
/// PostgreSQL database must sign one log with one key; the key stays in the data folders (mode
/// 0600), never in the database, so a copy of the database cannot forge checkpoints.
public enum AuditKeyTransfer {
    /// What every exported key starts with.
    public static let prefix = "errand-relay-audit-key-v1:"

    /// The one `hint:` a node without the shared key prints: which file, from where, what mode.
    /// - Parameter replace: the node has a key of its own that the install must replace.
    public static func copyHint(dataDirectory: String, replace: Bool = false) -> String {
        let install = "errand-relay audit-key install --data \(dataDirectory)\(replace ? " --replace" : "")"
        return "copy \(AuditLog.keyFileName) from the data folder of a node already serving this database into \(dataDirectory) "
            + "with mode 0600, owned by the relay's user, or let errand-relay do it: "
            + "ssh OTHER_NODE errand-relay audit-key export --data ITS_DATA_DIR | \(install)"
    }

    /// The key of the data folder as one line of text (a secret).
    /// - Throws: ``RelayStartupError`` when the folder has no readable key.
    public static func export(dataDirectory: String) throws -> String {
        let path = AuditLog.keyPath(dataDirectory: dataDirectory)
        guard FileManager.default.fileExists(atPath: path) else {
            throw RelayStartupError("\(dataDirectory) holds no \(AuditLog.keyFileName)",
                                    hint: "export from the data folder of a node that has served (its --data, or storage.data_dir in its configuration)")
        }
        do {
            let seed = try SecretKeyFile.read(.ed25519Seed, from: path)
            return prefix + ByteEncoding.base64URL(seed)
        } catch {
            throw RelayStartupError("cannot read the audit key: \(error)")
        }
    }

    /// Writes the exported key `text` to the data folder's key file (mode 0600).
    /// - Parameter replace: replace a different key already there (only right for a node whose
    ///   own key never signed a checkpoint anyone relies on).
    /// - Returns: the verifier key (`name+hash+key`) of the installed key.
    /// - Throws: ``RelayStartupError`` for text that is not an exported key, or a different key in place.
    public static func install(_ text: String, dataDirectory: String, replace: Bool) throws -> String {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix(prefix), !line.contains("\n") else {
            throw RelayStartupError("standard input is not an exported audit key (one line starting with '\(prefix)')",
                                    hint: "pipe in what 'errand-relay audit-key export' printed on a node already serving this database")
        }
        let seed: SecretBytes
        do {
            seed = try ByteEncoding.secret(base64URL: String(line.dropFirst(prefix.count)))
            guard seed.count == 32 else { throw CryptoError.invalidEncoding }
        } catch {
            throw RelayStartupError("the exported audit key is damaged (not 32 bytes of base64url after '\(prefix)')",
                                    hint: "export it again and pass the whole line unchanged")
        }
        let incoming: String
        do {
            incoming = try AuditLog.signer(seed: seed, origin: nil).verifier.description
        } catch {
            throw RelayStartupError("the exported audit key is not an Ed25519 seed: \(error)")
        }
        let path = AuditLog.keyPath(dataDirectory: dataDirectory)
        if FileManager.default.fileExists(atPath: path) {
            let current: String
            do {
                current = try AuditLog.loadSigner(dataDirectory: dataDirectory, origin: nil).verifier.description
            } catch {
                throw RelayStartupError("cannot read the audit key already in \(dataDirectory): \(error)",
                                        hint: "move \(path) aside, then install again")
            }
            if current == incoming { return incoming }
            guard replace else {
                throw RelayStartupError("\(dataDirectory) already has another audit key (\(current))",
                                        hint: "add --replace if this node's own key never signed a log anyone checks; its checkpoints stop verifying")
            }
        }
        do {
            try SecretKeyFile.write(seed, kind: .ed25519Seed, to: path)
        } catch {
            throw RelayStartupError("cannot write \(path): \(error)")
        }
        return incoming
    }
}
