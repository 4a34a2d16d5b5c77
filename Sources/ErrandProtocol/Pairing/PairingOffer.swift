public import ErrandCrypto
public import Foundation

/// The 16-byte random identifier of a pairing slot at the relay.
public struct PairingSlotID: Hashable, Sendable, CustomStringConvertible {
    /// Identifier length: 16 bytes.
    public static let length = 16

    /// The identifier bytes.
    public let bytes: [UInt8]

    /// - Throws: ``PairingOfferError`` (`.malformed`) unless `bytes` is 16 bytes long.
    public init(bytes: [UInt8]) throws(PairingOfferError) {
        guard bytes.count == Self.length else {
            throw PairingOfferError(.malformed, "the pairing slot id must be 16 bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// A fresh random slot id.
    public static func random() -> PairingSlotID {
        try! PairingSlotID(bytes: SecureRandom.bytes(count: length))
    }

    /// base64url, 22 characters.
    public var description: String { ByteEncoding.base64URL(bytes) }
}

/// What a host shows as a QR code so that a companion can pair with it.
///
/// It travels as a URI (see ``uri`` and `docs/protocol.md`):
/// `errand://pair?v=1&r=RELAY&s=SLOT&k=ED25519&x=X25519&t=SECRET&e=EXPIRY[&a=AUDITKEY][&n=NAME]`.
/// The one-time ``secret`` proves to the host that a companion really scanned this code; it is
/// never sent to the relay. An offer lasts ``defaultLifetime`` and never more than
/// ``maximumLifetime``.
public struct PairingOffer: Sendable, CustomStringConvertible {
    /// The offer format this code writes and reads.
    public static let formatVersion = 1
    /// How long a new offer stays valid by default: 5 minutes.
    public static let defaultLifetime: TimeInterval = 5 * 60
    /// The longest an offer may be valid: 10 minutes.
    public static let maximumLifetime: TimeInterval = 10 * 60
    /// Clock difference between host and companion that parsing tolerates.
    public static let clockSkewAllowance: TimeInterval = 60
    /// Length of the secret in new offers: 16 bytes (128 bits).
    public static let secretLength = 16
    /// Secret lengths a parser accepts.
    public static let acceptedSecretLengths = 16...64
    /// Longest host name an offer carries, in UTF-8 bytes.
    public static let maximumNameLength = 64
    /// Longest relay URL or audit key an offer carries, in UTF-8 bytes.
    public static let maximumFieldLength = 512
    /// Expiry times must be before this (year 3000): keeps every conversion in range.
    static let latestExpiry: TimeInterval = 32_503_680_000
    /// The fixed start of every offer URI.
    public static let uriPrefix = "errand://pair?"

    /// Where the host's mailbox and the pairing slot live (`http` or `https`).
    public let relayURL: String
    /// The pairing slot the companion answers in.
    public let slotID: PairingSlotID
    /// The host's long-term Ed25519 identity key.
    public let hostSigningKey: Ed25519.PublicKey
    /// The host's long-term X25519 key; the companion seals its pairing request to it.
    public let hostAgreementKey: X25519.PublicKey
    /// The one-time secret (at least 128 bits). Never sent to the relay.
    public let secret: SecretBytes
    /// When the offer stops being valid (whole seconds).
    public let expiresAt: Date
    /// The relay's audit-log verifier key (C2SP note verifier key `name+hash+key`), if it has one.
    public let auditVerifierKey: String?
    /// A name for the host that the companion shows ("studio-mac").
    public let hostName: String?

    /// A new offer with a fresh slot id and secret, valid for `lifetime` from `now`.
    /// - Throws: ``PairingOfferError`` when a field is invalid or `lifetime` exceeds 10 minutes.
    public static func make(
        relayURL: String,
        hostSigningKey: Ed25519.PublicKey,
        hostAgreementKey: X25519.PublicKey,
        hostName: String? = nil,
        auditVerifierKey: String? = nil,
        lifetime: TimeInterval = defaultLifetime,
        now: Date = Date()
    ) throws(PairingOfferError) -> PairingOffer {
        guard lifetime > 0, lifetime <= maximumLifetime else {
            throw PairingOfferError(.malformed, "a pairing offer must last between 1 second and 10 minutes",
                                    hint: "choose a timeout of at most 600 seconds")
        }
        return try PairingOffer(
            relayURL: relayURL, slotID: .random(), hostSigningKey: hostSigningKey,
            hostAgreementKey: hostAgreementKey, secret: .random(count: secretLength),
            expiresAt: Date(timeIntervalSince1970: (now.timeIntervalSince1970 + lifetime).rounded(.down)),
            auditVerifierKey: auditVerifierKey, hostName: hostName)
    }

    /// An offer from its parts, validated (but not checked against the clock).
    /// - Throws: ``PairingOfferError`` (`.malformed`) naming the invalid field.
    public init(
        relayURL: String, slotID: PairingSlotID, hostSigningKey: Ed25519.PublicKey,
        hostAgreementKey: X25519.PublicKey, secret: SecretBytes, expiresAt: Date,
        auditVerifierKey: String? = nil, hostName: String? = nil
    ) throws(PairingOfferError) {
        try Self.validateRelayURL(relayURL)
        let seconds = expiresAt.timeIntervalSince1970
        guard seconds.isFinite, seconds >= 1, seconds < Self.latestExpiry else {
            throw PairingOfferError(.malformed, "the expiry time of the pairing code is out of range")
        }
        guard Self.acceptedSecretLengths.contains(secret.count) else {
            throw PairingOfferError(.malformed, "the one-time secret must be 16 to 64 bytes, got \(secret.count)")
        }
        if let auditVerifierKey { try Self.validateAuditKey(auditVerifierKey) }
        if let hostName { try Self.validateName(hostName) }
        self.relayURL = relayURL
        self.slotID = slotID
        self.hostSigningKey = hostSigningKey
        self.hostAgreementKey = hostAgreementKey
        self.secret = secret
        self.expiresAt = Date(timeIntervalSince1970: expiresAt.timeIntervalSince1970.rounded(.down))
        self.auditVerifierKey = auditVerifierKey
        self.hostName = hostName
    }

    /// The offer as a URI, parameters in the fixed order `v r s k x t e a n`.
    /// It contains the secret: show it only as the QR code or in a file readable by the owner.
    public var uri: String {
        var parameters: [(String, String)] = [
            ("v", String(Self.formatVersion)),
            ("r", relayURL),
            ("s", ByteEncoding.base64URL(slotID.bytes)),
            ("k", ByteEncoding.base64URL(hostSigningKey.bytes)),
            ("x", ByteEncoding.base64URL(hostAgreementKey.bytes)),
            ("t", ByteEncoding.base64URL(secret)),
            ("e", String(Int64(expiresAt.timeIntervalSince1970))),
        ]
        if let auditVerifierKey { parameters.append(("a", auditVerifierKey)) }
        if let hostName { parameters.append(("n", hostName)) }
        return Self.uriPrefix + parameters.map { "\($0.0)=\(URIComponent.encode($0.1))" }.joined(separator: "&")
    }

    /// The web companion link: `webApp` (the app's address, without a fragment) with the offer's
    /// parameters as its fragment, e.g. `https://relay.example.com/app/#v=1&r=…`. A browser never
    /// sends a fragment to a server, so the secret stays on the phone. Holds the secret, like ``uri``.
    public func link(webApp: String) -> String {
        webApp + "#" + uri.dropFirst(Self.uriPrefix.count)
    }

    /// The offer URI a web companion link carries (`http(s)://…#v=1&…` → `errand://pair?v=1&…`);
    /// any other text is returned as it is.
    public static func offerURI(fromLink text: String) -> String {
        let lower = text.prefix(8).lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://"), let hash = text.firstIndex(of: "#") else { return text }
        return uriPrefix + text[text.index(after: hash)...]
    }

    /// Checks an address to serve the web companion from: `https`, or `http` on a loopback host
    /// (`isLoopback` decides), with no fragment, user info or query.
    /// - Throws: ``PairingOfferError`` (`.malformed`) saying what is wrong.
    public static func validateWebApp(_ text: String, isLoopback: (String) -> Bool) throws(PairingOfferError) {
        guard text.utf8.count <= maximumFieldLength, let url = URL(string: text),
              let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty, url.user == nil, url.password == nil, url.query == nil, url.fragment == nil,
              !text.contains("#")
        else {
            throw PairingOfferError(.malformed, "the web companion address \(text) is not an http(s) URL without a query or fragment",
                                    hint: "give the address the app is served from, e.g. https://example.com/errand/")
        }
        guard scheme == "https" || isLoopback(text) else {
            throw PairingOfferError(.malformed, "the web companion address \(text) is plain http: a phone's browser runs the app only over https",
                                    hint: "serve the app over https (or use http only on this machine's loopback address)")
        }
    }

    /// Redacted summary for logs: never the secret.
    public var description: String {
        "PairingOffer(relay: \(relayURL), slot: \(slotID), host: \(hostName ?? "-"), expires: \(Int64(expiresAt.timeIntervalSince1970)), secret redacted)"
    }

    /// Parses an offer URI and checks that it has not expired at `now`.
    ///
    /// Unknown parameters are dropped: ``uri`` re-encodes the known ones in canonical order, and
    /// that canonical URI is what the SAS and the pairing proof cover on both sides.
    /// - Throws: ``PairingOfferError``: `.notAnOffer`, `.malformed`, `.unsupportedVersion`,
    ///   `.expired` — each with a message and a hint a person can act on. Errors never
    ///   contain the secret.
    public init(uri: String, now: Date = Date()) throws(PairingOfferError) {
        let text = Self.offerURI(fromLink: uri.trimmingCharacters(in: .whitespacesAndNewlines))
        guard text.hasPrefix(Self.uriPrefix) else {
            throw PairingOfferError(.notAnOffer, "this is not an Errand pairing code (it should start with \(Self.uriPrefix))",
                                    hint: "scan the QR code that 'errand host pair' shows on the computer")
        }
        guard text.utf8.count <= 4096 else {
            throw PairingOfferError(.malformed, "the pairing code is too long to be an Errand offer")
        }
        var fields: [String: String] = [:]
        for pair in text.dropFirst(Self.uriPrefix.count).split(separator: "&", omittingEmptySubsequences: false) {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw PairingOfferError(.malformed, "the pairing code has a parameter without a name or value")
            }
            let name = String(pair[..<equals])
            // Echo a parameter name only if it is plainly harmless to print.
            let shown = name.count <= 8 && name.allSatisfy({ $0.isASCII && $0.isLowercase }) ? "the '\(name)' parameter" : "a parameter"
            guard let value = URIComponent.decode(pair[pair.index(after: equals)...]) else {
                throw PairingOfferError(.malformed, "in the pairing code, \(shown) is not properly percent-encoded")
            }
            guard fields.updateValue(value, forKey: name) == nil else {
                throw PairingOfferError(.malformed, "the pairing code repeats \(shown)")
            }
        }
        guard let versionText = fields["v"] else {
            throw PairingOfferError(.malformed, "the pairing code has no format version (v)")
        }
        guard let version = Self.decimal(versionText) else {
            throw PairingOfferError(.malformed, "the pairing code's format version is not a number")
        }
        guard version == Int64(Self.formatVersion) else {
            throw PairingOfferError(.unsupportedVersion,
                                    "the pairing code uses offer format \(version); this Errand understands format \(Self.formatVersion)",
                                    hint: "update Errand on this device (or on the computer, if it is the older one)")
        }
        func required(_ name: String, _ what: String) throws(PairingOfferError) -> String {
            guard let value = fields[name], !value.isEmpty else {
                throw PairingOfferError(.malformed, "the pairing code is missing the \(what) (\(name))")
            }
            return value
        }
        func key(_ name: String, _ what: String) throws(PairingOfferError) -> [UInt8] {
            let text = try required(name, what)
            guard let bytes = try? ByteEncoding.bytes(base64URL: text) else {
                throw PairingOfferError(.malformed, "the pairing code's \(what) (\(name)) is not base64url")
            }
            return bytes
        }
        let relayURL = try required("r", "relay address")
        let slot = try PairingSlotID(bytes: key("s", "pairing slot id"))
        let signing: Ed25519.PublicKey
        let agreement: X25519.PublicKey
        do {
            signing = try Ed25519.PublicKey(bytes: key("k", "host signing key"))
            agreement = try X25519.PublicKey(bytes: key("x", "host key-agreement key"))
        } catch let error as CryptoError {
            throw PairingOfferError(.malformed, "the pairing code carries a host key of the wrong size (\(error.description))")
        } catch {
            throw error as! PairingOfferError
        }
        let secretText = try required("t", "one-time secret")
        guard let secret = try? ByteEncoding.secret(base64URL: secretText) else {
            throw PairingOfferError(.malformed, "the pairing code's one-time secret (t) is not base64url")
        }
        let expiryText = try required("e", "expiry time")
        guard let expiry = Self.decimal(expiryText), expiry > 0, TimeInterval(expiry) < Self.latestExpiry else {
            throw PairingOfferError(.malformed, "the pairing code's expiry time (e) is not a Unix time in seconds")
        }
        let expiresAt = Date(timeIntervalSince1970: TimeInterval(expiry))
        // Every field is checked before the clock, so a damaged code is reported as damaged.
        try self.init(
            relayURL: relayURL, slotID: slot, hostSigningKey: signing, hostAgreementKey: agreement,
            secret: secret, expiresAt: expiresAt, auditVerifierKey: fields["a"], hostName: fields["n"])
        let remaining = expiresAt.timeIntervalSince(now)
        guard remaining > 0 else {
            throw PairingOfferError(.expired, "pairing offer expired \(RelativeTime.describe(-remaining)) ago",
                                    hint: "run 'errand host pair' again on the computer")
        }
        guard remaining <= Self.maximumLifetime + Self.clockSkewAllowance else {
            throw PairingOfferError(.malformed,
                                    "pairing offer claims to stay valid for \(RelativeTime.describe(remaining)); offers last at most 10 minutes",
                                    hint: "check that the clocks of this device and the computer are right")
        }
    }

    /// A canonical decimal: digits only, no sign, no leading zeros, at most 18 digits.
    static func decimal(_ text: String) -> Int64? {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              text == "0" || !text.hasPrefix("0") else { return nil }
        return Int64(text)
    }

    /// Whether the offer is still valid at `now`.
    public func isValid(at now: Date = Date()) -> Bool {
        expiresAt > now
    }

    // MARK: Field validation

    /// Checks that `text` is a relay address an offer can carry: http(s), a host, no user,
    /// password, query or fragment, at most 512 bytes.
    public static func validateRelayURL(_ text: String) throws(PairingOfferError) {
        guard text.utf8.count <= maximumFieldLength,
              let url = URL(string: text),
              let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty,
              url.user == nil, url.password == nil, url.query == nil, url.fragment == nil
        else {
            throw PairingOfferError(.malformed, "the relay address in the pairing code is not an http(s) URL")
        }
    }

    private static func validateName(_ name: String) throws(PairingOfferError) {
        guard DeviceName.isAcceptable(name) else {
            throw PairingOfferError(.malformed, "the host name in the pairing code must be 1 to 64 bytes of printable text")
        }
    }

    private static func validateAuditKey(_ key: String) throws(PairingOfferError) {
        // C2SP signed-note verifier key: name "+" 8 hex digits "+" base64 key. Checked in depth by
        // the audit log; here only its shape, so a garbled code is caught early.
        let parts = key.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard key.utf8.count <= maximumFieldLength, parts.count == 3, !parts[0].isEmpty,
              parts[1].count == 8, parts[1].allSatisfy(\.isHexDigit), !parts[2].isEmpty,
              key.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F })
        else {
            throw PairingOfferError(.malformed, "the relay audit key in the pairing code is not a verifier key (name+hash+key)")
        }
    }
}

/// Why a pairing code cannot be used, with a hint for the person holding the device.
public struct PairingOfferError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure; compare against these.
    public struct Code: Hashable, Sendable {
        private let raw: UInt8
        private init(_ raw: UInt8) { self.raw = raw }
        /// Not an Errand pairing URI at all.
        public static let notAnOffer = Code(1)
        /// An Errand offer with a missing or invalid field.
        public static let malformed = Code(2)
        /// An offer in a format this code does not know.
        public static let unsupportedVersion = Code(3)
        /// A well-formed offer past its expiry time.
        public static let expired = Code(4)
    }

    /// The kind of failure.
    public let code: Code
    /// What happened.
    public let message: String
    /// What to do about it.
    public let hint: String

    init(_ code: Code, _ message: String, hint: String = "ask for a new pairing code: run 'errand host pair' on the computer") {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
    public static func == (lhs: PairingOfferError, rhs: PairingOfferError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// Durations in words: "45 seconds", "3 minutes", "2 hours", "4 days".
enum RelativeTime {
    static func describe(_ seconds: TimeInterval) -> String {
        let whole = Int(seconds.rounded())
        func unit(_ value: Int, _ name: String) -> String { "\(value) \(name)\(value == 1 ? "" : "s")" }
        switch whole {
        case ..<60: return unit(Swift.max(whole, 1), "second")
        case ..<3600: return unit(whole / 60, "minute")
        case ..<86_400: return unit(whole / 3600, "hour")
        default: return unit(whole / 86_400, "day")
        }
    }
}

/// Strict percent-encoding for offer parameters (RFC 3986).
enum URIComponent {
    /// Everything but unreserved characters and `:` `/` `@` is percent-encoded; `+` becomes `%2B`.
    static func encode(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
                 UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// Decodes `%XX` escapes; `nil` for a broken escape or bytes that are not UTF-8.
    static func decode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: Swift.max(0, width - count)) + self
    }
}
