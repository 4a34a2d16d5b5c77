import ErrandCrypto
import ErrandProtocol
import Foundation
import Testing

/// The fixed offer of the published test vector (docs/protocol.md, "Test vectors").
enum Vector {
    static func range(_ start: UInt8, _ count: Int = 32) -> [UInt8] { (0..<count).map { start + UInt8($0) } }
    static let hostSigning = try! Ed25519.SecretKey(seed: SecretBytes(copying: range(0x00)))
    static let hostAgreement = try! X25519.SecretKey(secret: SecretBytes(copying: range(0x20)))
    static let companionSigning = try! Ed25519.SecretKey(seed: SecretBytes(copying: range(0x60)))
    static let companionAgreement = try! X25519.SecretKey(secret: SecretBytes(copying: range(0x80)))
    static let secretBytes = range(0x40, 16)
    static let expiry = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01T00:00:00Z
    static let auditKey = "relay.example.com+e1f35565+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    static let uri = "errand://pair?v=1&r=https://relay.example.com&s=UFFSU1RVVldYWVpbXF1eXw&k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg&x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ&t=QEFCQ0RFRkdISUpLTE1OTw&e=1767225600&a=relay.example.com%2Be1f35565%2BAekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k&n=studio-mac"

    static func offer() throws -> PairingOffer {
        try PairingOffer(
            relayURL: "https://relay.example.com", slotID: PairingSlotID(bytes: range(0x50, 16)),
            hostSigningKey: hostSigning.publicKey, hostAgreementKey: hostAgreement.publicKey,
            secret: SecretBytes(copying: secretBytes), expiresAt: expiry,
            auditVerifierKey: auditKey, hostName: "studio-mac")
    }
}

@Suite("Pairing offer URI")
struct PairingOfferTests {
    let beforeExpiry = Vector.expiry.addingTimeInterval(-120)

    @Test("Encodes the published vector byte for byte and parses it back")
    func vector() throws {
        let offer = try Vector.offer()
        #expect(offer.uri == Vector.uri)
        let parsed = try PairingOffer(uri: Vector.uri, now: beforeExpiry)
        #expect(parsed.uri == Vector.uri)
        #expect(parsed.relayURL == "https://relay.example.com")
        #expect(parsed.hostSigningKey == Vector.hostSigning.publicKey)
        #expect(parsed.hostAgreementKey == Vector.hostAgreement.publicKey)
        #expect(parsed.secret.unsafeCopyToArray() == Vector.secretBytes)
        #expect(parsed.auditVerifierKey == Vector.auditKey)
        #expect(parsed.hostName == "studio-mac")
        #expect(parsed.expiresAt == Vector.expiry)
    }

    @Test("A new offer has a fresh 128-bit secret, a 5-minute default lifetime and fits a modest QR code")
    func make() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let a = try PairingOffer.make(relayURL: "http://127.0.0.1:8080", hostSigningKey: Vector.hostSigning.publicKey,
                                      hostAgreementKey: Vector.hostAgreement.publicKey, hostName: "Mac mini (office)", now: now)
        let b = try PairingOffer.make(relayURL: "http://127.0.0.1:8080", hostSigningKey: Vector.hostSigning.publicKey,
                                      hostAgreementKey: Vector.hostAgreement.publicKey, now: now)
        #expect(a.secret.count == 16)
        #expect(!a.secret.constantTimeEquals(b.secret))
        #expect(a.slotID != b.slotID)
        #expect(a.expiresAt.timeIntervalSince(now) == 300)
        #expect(a.uri.count < 300)
        let parsed = try PairingOffer(uri: a.uri, now: now)
        #expect(parsed.hostName == "Mac mini (office)")
        #expect(parsed.uri == a.uri)
        #expect(throws: PairingOfferError.self) {
            try PairingOffer.make(relayURL: "http://127.0.0.1:8080", hostSigningKey: Vector.hostSigning.publicKey,
                                  hostAgreementKey: Vector.hostAgreement.publicKey, lifetime: 601, now: now)
        }
    }

    @Test("An expired offer says how long ago it expired")
    func expired() throws {
        let error = try #require(throws: PairingOfferError.self) {
            try PairingOffer(uri: Vector.uri, now: Vector.expiry.addingTimeInterval(185))
        }
        #expect(error.code == .expired)
        #expect(error.message == "pairing offer expired 3 minutes ago")
        #expect(error.hint.contains("errand host pair"))
        let justNow = try #require(throws: PairingOfferError.self) { try PairingOffer(uri: Vector.uri, now: Vector.expiry) }
        #expect(justNow.message == "pairing offer expired 1 second ago")
    }

    @Test("An offer valid for longer than 10 minutes is refused (clock or forgery)")
    func tooFarAhead() throws {
        let error = try #require(throws: PairingOfferError.self) {
            try PairingOffer(uri: Vector.uri, now: Vector.expiry.addingTimeInterval(-3600))
        }
        #expect(error.code == .malformed)
        #expect(error.message.contains("1 hour"))
        #expect(error.hint.contains("clock"))
    }

    @Test("Malformed codes give a message a person understands", arguments: [
        ("https://example.com/pair?v=1", PairingOfferError.Code.notAnOffer, "not an Errand pairing code"),
        ("", .notAnOffer, "not an Errand pairing code"),
        ("errand://pair?", .malformed, "without a name or value"),
        ("errand://pair?r=https://x", .malformed, "no format version"),
        ("errand://pair?v=one", .malformed, "not a number"),
        ("errand://pair?v=2&r=https://x", .unsupportedVersion, "offer format 2"),
        ("errand://pair?v=1&v=1", .malformed, "repeats the 'v' parameter"),
        ("errand://pair?v=1&r=%ZZ", .malformed, "percent-encoded"),
        ("errand://pair?v=1", .malformed, "missing the relay address"),
        ("errand://pair?v=0", .unsupportedVersion, "offer format 0"),
        ("errand://pair?v=+1", .malformed, "not a number"),
        ("errand://pair?v=01", .malformed, "not a number"),
        ("errand://pair?v=1&\u{1B}]0;pwned\u{07}=x&v=1", .malformed, "repeats the 'v' parameter"),
        ("errand://pair?\u{1B}[2J=1&\u{1B}[2J=2", .malformed, "repeats a parameter"),
    ])
    func malformed(uri: String, code: PairingOfferError.Code, phrase: String) throws {
        let error = try #require(throws: PairingOfferError.self) { try PairingOffer(uri: uri, now: beforeExpiry) }
        #expect(error.code == code)
        #expect(error.message.contains(phrase), "\(error.message)")
        #expect(!error.hint.isEmpty)
    }

    @Test("Every damaged field is caught, and no error or description reveals the secret")
    func damagedFields() throws {
        let secretText = "QEFCQ0RFRkdISUpLTE1OTw"
        let replacements: [(String, String, String)] = [
            ("r=https://relay.example.com", "r=ftp://relay.example.com", "relay address"),
            ("r=https://relay.example.com", "r=https://user:pw@relay.example.com", "relay address"),
            ("s=UFFSU1RVVldYWVpbXF1eXw", "s=UFFSU1RVVldYWVpbXF1e", "slot id"),
            ("k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", "k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMb", "host signing key"),
            ("x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ", "x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQAA", "host key"),
            ("t=" + secretText, "t=QEFCQ0RFRkdI", "secret must be 16 to 64 bytes"),
            ("t=" + secretText, "t=" + secretText + "!", "not base64url"),
            ("e=1767225600", "e=soon", "expiry time"),
            ("n=studio-mac", "n=studio%0Amac", "host name"),
            ("n=studio-mac", "n=%E2%80%AEcam-oiduts", "host name"),  // right-to-left override
            ("e=1767225600", "e=+1767225600", "expiry time"),
            ("e=1767225600", "e=99999999999999999", "expiry time"),
            ("&a=relay.example.com%2Be1f35565%2B", "&a=relay.example.com%2Bxyz%2B", "audit key"),
        ]
        for (original, damaged, phrase) in replacements {
            let uri = Vector.uri.replacingOccurrences(of: original, with: damaged)
            #expect(uri != Vector.uri)
            let error = try #require(throws: PairingOfferError.self) { try PairingOffer(uri: uri, now: beforeExpiry) }
            #expect(error.code == .malformed)
            #expect(error.message.contains(phrase), "\(error.message)")
            #expect(!error.message.contains(secretText) && !error.hint.contains(secretText))
        }
        let offer = try Vector.offer()
        #expect(!offer.description.contains(secretText))
        #expect(!"\(offer)".contains(secretText))
        var dumped = ""
        dump(offer, to: &dumped)
        #expect(!dumped.contains(secretText))
        #expect(!dumped.contains(ByteEncoding.hex(Vector.secretBytes)))
    }

    @Test("A damaged field is reported as damaged even when the offer has also expired")
    func fieldsBeforeClock() throws {
        let shortSecret = Vector.uri.replacingOccurrences(of: "t=QEFCQ0RFRkdISUpLTE1OTw", with: "t=QEFCQw")
        let error = try #require(throws: PairingOfferError.self) {
            try PairingOffer(uri: shortSecret, now: Vector.expiry.addingTimeInterval(3600))
        }
        #expect(error.code == .malformed)
    }

    @Test("Expiry times out of range are refused, never trapped on")
    func expiryRange() throws {
        for seconds in [1e20, -5, .infinity, .nan] {
            #expect(throws: PairingOfferError.self) {
                try PairingOffer(relayURL: "https://relay.example.com", slotID: .random(),
                                 hostSigningKey: Vector.hostSigning.publicKey, hostAgreementKey: Vector.hostAgreement.publicKey,
                                 secret: SecretBytes.random(count: 16), expiresAt: Date(timeIntervalSince1970: seconds))
            }
        }
    }

    @Test("Unknown parameters are ignored; surrounding whitespace is trimmed")
    func tolerance() throws {
        let parsed = try PairingOffer(uri: "  " + Vector.uri + "&zz=future\n", now: beforeExpiry)
        #expect(parsed.hostName == "studio-mac")
    }

    @Test("The web link form carries the offer in its fragment and reads back to the same canonical URI")
    func linkForm() throws {
        let offer = try Vector.offer()
        let link = offer.link(webApp: "https://relay.example.com/app/")
        #expect(link == "https://relay.example.com/app/#" + Vector.uri.dropFirst("errand://pair?".count))
        let parsed = try PairingOffer(uri: link, now: beforeExpiry)
        #expect(parsed.uri == Vector.uri)
        #expect(try PairingOffer(uri: "  HTTPS://elsewhere.example/errand/index.html#" + Vector.uri.dropFirst(14) + "\n", now: beforeExpiry).uri == Vector.uri)
        // A link without a fragment is no offer; a damaged fragment is reported as for the URI.
        #expect(throws: PairingOfferError.self) { try PairingOffer(uri: "https://relay.example.com/app/", now: beforeExpiry) }
        do { _ = try PairingOffer(uri: "https://relay.example.com/app/", now: beforeExpiry) } catch {
            #expect(error.code == .notAnOffer)
        }
        let damaged = link.replacingOccurrences(of: "s=UFFSU1RVVldYWVpbXF1eXw", with: "s=UFFS")
        do { _ = try PairingOffer(uri: damaged, now: beforeExpiry); Issue.record("a damaged link was read") } catch {
            #expect(error.code == .malformed && error.message.contains("pairing slot id"))
        }
        #expect(PairingOffer.offerURI(fromLink: "errand://pair?v=1") == "errand://pair?v=1")
    }

    @Test("A web companion address must be https (http only on loopback), without query or fragment")
    func webAppAddress() throws {
        let loopback: (String) -> Bool = { $0.contains("127.0.0.1") || $0.contains("localhost") }
        try PairingOffer.validateWebApp("https://errand.example.org/", isLoopback: loopback)
        try PairingOffer.validateWebApp("http://127.0.0.1:8080/app/", isLoopback: loopback)
        for (address, complaint) in [("http://errand.example.org/", "plain http"), ("https://errand.example.org/?x=1", "without a query"),
                                     ("https://errand.example.org/#frag", "without a query or fragment"), ("ftp://errand.example.org/", "not an http(s) URL"),
                                     ("https://user:pw@errand.example.org/", "not an http(s) URL"), ("errand.example.org", "not an http(s) URL")] {
            do { try PairingOffer.validateWebApp(address, isLoopback: loopback); Issue.record("\(address) was accepted") } catch {
                #expect(error.message.contains(complaint), "\(address): \(error.message)")
            }
        }
    }
}

@Suite("Short authentication string")
struct ShortAuthenticationStringTests {
    @Test("The published vector: transcript hash and SAS")
    func vector() throws {
        let transcript = PairingTranscript(offerURI: Vector.uri, companionSigningKey: Vector.companionSigning.publicKey,
                                           companionAgreementKey: Vector.companionAgreement.publicKey)
        #expect(ByteEncoding.hex(transcript.hash) == "48d05c5d272c2d8542778025b107f44273bc207dfc2448cb600943a81c9b06e9")
        let sas = ShortAuthenticationString(transcript: transcript, secret: SecretBytes(copying: Vector.secretBytes))
        #expect(sas.digits == "654700")
        #expect(sas.description == "654 700")
    }

    @Test("The vector's audit key is a consistent verifier key: its id is SHA-256(name ‖ LF ‖ 0x01 ‖ key)[0..4]")
    func vectorAuditKeyID() throws {
        let parts = Vector.auditKey.split(separator: "+", maxSplits: 2).map(String.init)
        let key = try #require(Data(base64Encoded: parts[2]))
        #expect(key.count == 33 && key.first == 0x01)
        #expect(ByteEncoding.hex(Array(SHA256.hash(Array((parts[0] + "\n").utf8) + Array(key)).prefix(4))) == parts[1])
    }

    @Test("Both sides agree, and any change to the transcript or secret changes the SAS")
    func sensitivity() throws {
        let offer = try Vector.offer()
        let secret = SecretBytes(copying: Vector.secretBytes)
        // The host builds the transcript from its offer, the companion from the URI it scanned.
        let host = ShortAuthenticationString(
            transcript: PairingTranscript(offerURI: offer.uri, companionSigningKey: Vector.companionSigning.publicKey,
                                          companionAgreementKey: Vector.companionAgreement.publicKey), secret: offer.secret)
        let scanned = try PairingOffer(uri: Vector.uri, now: Vector.expiry.addingTimeInterval(-10))
        let companion = ShortAuthenticationString(
            transcript: PairingTranscript(offerURI: Vector.uri, companionSigningKey: Vector.companionSigning.publicKey,
                                          companionAgreementKey: Vector.companionAgreement.publicKey), secret: scanned.secret)
        #expect(host == companion)

        let variants = [
            ShortAuthenticationString(transcript: PairingTranscript(offerURI: Vector.uri + "&z=1", companionSigningKey: Vector.companionSigning.publicKey, companionAgreementKey: Vector.companionAgreement.publicKey), secret: secret),
            ShortAuthenticationString(transcript: PairingTranscript(offerURI: Vector.uri, companionSigningKey: Ed25519.SecretKey().publicKey, companionAgreementKey: Vector.companionAgreement.publicKey), secret: secret),
            ShortAuthenticationString(transcript: PairingTranscript(offerURI: Vector.uri, companionSigningKey: Vector.companionSigning.publicKey, companionAgreementKey: X25519.SecretKey().publicKey), secret: secret),
            ShortAuthenticationString(transcript: PairingTranscript(offerURI: Vector.uri, companionSigningKey: Vector.companionSigning.publicKey, companionAgreementKey: Vector.companionAgreement.publicKey), secret: SecretBytes.random(count: 16)),
        ]
        // A 1-in-a-million collision per variant is possible in principle; these fixed inputs
        // plus fresh random keys make a false failure vanishingly rare.
        for variant in variants { #expect(variant != host) }
        #expect(variants.allSatisfy { $0.digits.count == 6 && $0.digits.allSatisfy(\.isNumber) })
    }
}
