public import ErrandCrypto
import Foundation

/// An Ed25519 note verifier key (C2SP signed-note): `name+hex(key id)+base64(0x01 ‖ public key)`.
public struct NoteVerifier: Sendable, Equatable, CustomStringConvertible {
    /// Signature type byte of Ed25519 keys.
    static let ed25519Type: UInt8 = 0x01

    public let name: String
    public let keyID: [UInt8]
    public let publicKey: Ed25519.PublicKey

    /// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[0..<4]`.
    public static func keyID(name: String, publicKey: Ed25519.PublicKey) -> [UInt8] {
        Array(SHA256.hash(parts: [Array(name.utf8), [0x0A, ed25519Type], publicKey.bytes]).prefix(4))
    }

    public init(name: String, publicKey: Ed25519.PublicKey) throws(SignedNoteError) {
        try Self.validate(name: name)
        self.name = name
        self.publicKey = publicKey
        self.keyID = Self.keyID(name: name, publicKey: publicKey)
    }

    /// Parses `name+hash+key`.
    /// - Throws: ``SignedNoteError`` for a malformed key, another key type, or a key id that does not match.
    public init(parsing text: String) throws(SignedNoteError) {
        let parts = text.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].count == 8, let id = try? ByteEncoding.bytes(hex: String(parts[1])),
              let raw = Data(base64Encoded: String(parts[2])), raw.count == 33, raw.first == Self.ed25519Type,
              let key = try? Ed25519.PublicKey(bytes: Array(raw.dropFirst())) else {
            throw SignedNoteError("not an Ed25519 note verifier key (name+hash+key): \(text.prefix(80))")
        }
        try self.init(name: String(parts[0]), publicKey: key)
        guard id == keyID else { throw SignedNoteError("the verifier key's hash does not match its name and key") }
    }

    public var description: String {
        "\(name)+\(ByteEncoding.hex(keyID))+\(Data([Self.ed25519Type] + publicKey.bytes).base64EncodedString())"
    }

    static func validate(name: String) throws(SignedNoteError) {
        guard !name.isEmpty, !name.contains("+"),
              name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F && !$0.properties.isWhitespace }) else {
            throw SignedNoteError("a key name must be non-empty, without spaces or '+'")
        }
    }
}

/// An Ed25519 note signer: the verifier plus the secret key.
public struct NoteSigner: Sendable {
    public let verifier: NoteVerifier
    let secretKey: Ed25519.SecretKey

    public init(name: String, secretKey: Ed25519.SecretKey) throws(SignedNoteError) {
        verifier = try NoteVerifier(name: name, publicKey: secretKey.publicKey)
        self.secretKey = secretKey
    }

    /// Parses Go's `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`.
    public init(parsing text: String) throws(SignedNoteError) {
        let prefix = "PRIVATE+KEY+"
        guard text.hasPrefix(prefix) else { throw SignedNoteError("a signer key starts with PRIVATE+KEY+") }
        let parts = text.dropFirst(prefix.count).split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let raw = Data(base64Encoded: String(parts[2])), raw.count == 33, raw.first == NoteVerifier.ed25519Type,
              let key = try? Ed25519.SecretKey(seed: SecretBytes(copying: raw.dropFirst())) else {
            throw SignedNoteError("not an Ed25519 note signer key")
        }
        try self.init(name: String(parts[0]), secretKey: key)
        guard ByteEncoding.hex(verifier.keyID) == parts[1] else { throw SignedNoteError("the signer key's hash does not match its key") }
    }

    /// The signature line's base64 payload for `text`: key id ‖ Ed25519 signature.
    func signature(for text: String) -> NoteSignature {
        NoteSignature(name: verifier.name, keyID: verifier.keyID, signature: secretKey.signature(for: Array(text.utf8)))
    }
}

/// One signature line of a note.
public struct NoteSignature: Sendable, Equatable {
    public let name: String
    public let keyID: [UInt8]
    public let signature: [UInt8]

    /// `— name base64(key id ‖ signature)\n` (the dash is U+2014).
    var line: String { "\u{2014} \(name) \(Data(keyID + signature).base64EncodedString())\n" }
}

/// A C2SP signed note: text (one or more lines, each ending in a newline), a blank line, then
/// signature lines.
public struct SignedNote: Sendable, Equatable {
    public let text: String
    public let signatures: [NoteSignature]

    /// Signs `text` (which must end with a newline) with each signer.
    public static func sign(_ text: String, with signers: [NoteSigner]) throws(SignedNoteError) -> SignedNote {
        try validate(text: text)
        return SignedNote(text: text, signatures: signers.map { $0.signature(for: text) })
    }

    init(text: String, signatures: [NoteSignature]) {
        self.text = text
        self.signatures = signatures
    }

    /// The note's bytes: text, a newline, signature lines.
    public var encoded: String { text + "\n" + signatures.map(\.line).joined() }

    /// Parses a note (signatures are not checked: see ``verified(by:)``).
    public init(parsing note: String) throws(SignedNoteError) {
        guard let split = note.range(of: "\n\n", options: .backwards) else {
            throw SignedNoteError("a signed note needs a blank line before its signatures")
        }
        let text = String(note[..<split.lowerBound]) + "\n"
        let block = note[split.upperBound...]
        guard block.hasSuffix("\n") else { throw SignedNoteError("the signature block must end with a newline") }
        try Self.validate(text: text)
        var signatures: [NoteSignature] = []
        for line in block.dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("\u{2014} ") else { throw SignedNoteError("a signature line must start with '— '") }
            let fields = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 2, let raw = Data(base64Encoded: String(fields[1])), raw.count == 4 + Ed25519.signatureLength else {
                throw SignedNoteError("a signature line must be '— name base64(keyid ‖ signature)'")
            }
            signatures.append(NoteSignature(name: String(fields[0]), keyID: Array(raw.prefix(4)), signature: Array(raw.dropFirst(4))))
        }
        guard !signatures.isEmpty, signatures.count <= 100 else { throw SignedNoteError("a signed note needs 1 to 100 signatures") }
        self.init(text: text, signatures: signatures)
    }

    /// Whether `verifier` signed the text: a signature with its name and key id that verifies.
    /// - Throws: ``SignedNoteError`` when there is no such signature or it does not verify.
    public func verify(_ verifier: NoteVerifier) throws(SignedNoteError) {
        let candidates = signatures.filter { $0.name == verifier.name && $0.keyID == verifier.keyID }
        guard !candidates.isEmpty else { throw SignedNoteError("the note has no signature by \(verifier.name)") }
        guard candidates.contains(where: { verifier.publicKey.isValidSignature($0.signature, for: Array(text.utf8)) }) else {
            throw SignedNoteError("the signature by \(verifier.name) does not verify")
        }
    }

    static func validate(text: String) throws(SignedNoteError) {
        guard text.hasSuffix("\n"), !text.hasPrefix("\n"), !text.contains("\n\n") else {
            throw SignedNoteError("a note's text is one or more lines, each ending with a newline, none empty")
        }
        guard text.unicodeScalars.allSatisfy({ $0 == "\n" || ($0.value >= 0x20 && $0.value != 0x7F) }) else {
            throw SignedNoteError("a note's text must not contain control characters")
        }
    }
}

/// A C2SP tlog-checkpoint: `origin\nsize\nbase64(root)\n` then optional extension lines.
public struct Checkpoint: Sendable, Equatable {
    public let origin: String
    public let size: UInt64
    public let rootHash: [UInt8]
    public let extensions: [String]

    public init(origin: String, size: UInt64, rootHash: [UInt8], extensions: [String] = []) {
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensions = extensions
    }

    /// The note text.
    public var text: String {
        ([origin, String(size), Data(rootHash).base64EncodedString()] + extensions).map { $0 + "\n" }.joined()
    }

    /// Parses a signed checkpoint note, checks its signature by `verifier`, and that its origin
    /// is the key's name (a log signs only its own checkpoints).
    public static func verified(note: String, by verifier: NoteVerifier) throws(SignedNoteError) -> Checkpoint {
        let parsed = try SignedNote(parsing: note)
        try parsed.verify(verifier)
        let checkpoint = try Checkpoint(text: parsed.text)
        guard checkpoint.origin == verifier.name else {
            throw SignedNoteError("the checkpoint's origin is \(checkpoint.origin), not \(verifier.name)")
        }
        return checkpoint
    }

    /// Parses a checkpoint's note text.
    /// - Throws: ``SignedNoteError`` naming the bad line.
    public init(text: String) throws(SignedNoteError) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.last == "" else { throw SignedNoteError("a checkpoint ends with a newline") }
        lines.removeLast()
        guard lines.count >= 3, !lines[0].isEmpty else { throw SignedNoteError("a checkpoint has an origin, a size and a root hash") }
        guard let size = UInt64(lines[1]), String(size) == lines[1] else { throw SignedNoteError("the checkpoint size is not a decimal number") }
        guard let root = Data(base64Encoded: lines[2]), root.count == MerkleHash.length else {
            throw SignedNoteError("the checkpoint root is not 32 bytes of base64")
        }
        self.init(origin: lines[0], size: size, rootHash: Array(root), extensions: Array(lines.dropFirst(3)))
    }
}

/// A note or key that is malformed or does not verify.
public struct SignedNoteError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
