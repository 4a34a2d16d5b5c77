import ErrandCrypto
import ErrandProtocol
import Testing

/// Two ends of a fresh session, as pairing would set them up.
struct SessionPair {
    var companion: SecureSession
    var host: SecureSession

    init(randomness: some RatchetRandomness = SystemRatchetRandomness()) throws {
        let root = SecretBytes.random(count: 32)
        let headerKey = SecretBytes.random(count: 32)
        let nextHeaderKey = SecretBytes.random(count: 32)
        let hostRatchet = randomness.newKeyPair()
        let ad = Array("errand/v1/session".utf8) + SecureRandom.bytes(count: 32)
        companion = try SecureSession(
            ratchet: .initiator(sharedSecret: root, headerKey: headerKey, nextHeaderKey: nextHeaderKey,
                                responderRatchetKey: hostRatchet.publicKey, randomness: randomness),
            associatedData: ad)
        host = SecureSession(
            ratchet: .responder(sharedSecret: root, headerKey: headerKey, nextHeaderKey: nextHeaderKey, ratchetKeyPair: hostRatchet),
            associatedData: ad)
    }
}

func text(_ string: String) -> [UInt8] { Array(string.utf8) }

@Suite("Double Ratchet sessions")
struct DoubleRatchetTests {
    @Test("Messages in order, both directions, several DH steps")
    func inOrder() throws {
        var pair = try SessionPair()
        for round in 0..<5 {
            for index in 0..<3 {
                let message = try pair.companion.seal(text("c\(round).\(index)"))
                #expect(try pair.host.open(message) == text("c\(round).\(index)"))
            }
            for index in 0..<2 {
                let message = try pair.host.seal(text("h\(round).\(index)"))
                #expect(try pair.companion.open(message) == text("h\(round).\(index)"))
            }
        }
    }

    @Test("Out of order and across a DH step: late messages open with skipped keys")
    func outOfOrder() throws {
        var pair = try SessionPair()
        let first = try pair.companion.seal(text("1"))
        let second = try pair.companion.seal(text("2"))
        let third = try pair.companion.seal(text("3"))
        #expect(try pair.host.open(third) == text("3"))
        #expect(pair.host.ratchet.skippedKeyCount == 2)
        // A reply makes the companion ratchet; its next message is on a new chain.
        #expect(try pair.companion.open(pair.host.seal(text("ack"))) == text("ack"))
        let fourth = try pair.companion.seal(text("4"))
        #expect(try pair.host.open(fourth) == text("4"))
        #expect(try pair.host.open(first) == text("1"))
        #expect(try pair.host.open(second) == text("2"))
        #expect(pair.host.ratchet.skippedKeyCount == 0)
    }

    @Test("A message claiming more than the bound of lost messages is refused and changes nothing")
    func skippedBeyondBound() throws {
        var pair = try SessionPair()
        var sent: [Envelope] = []
        for index in 0...Int(DoubleRatchet.maximumSkip) + 1 { sent.append(try pair.companion.seal(text("\(index)"))) }
        let before = pair.host.ratchet.serialized
        #expect(throws: SessionError(.tooManySkipped, "")) { try pair.host.open(sent.last!) }
        #expect(pair.host.ratchet.serialized.constantTimeEquals(before))
        // Exactly at the bound is fine.
        #expect(try pair.host.open(sent[Int(DoubleRatchet.maximumSkip)]) == text("\(DoubleRatchet.maximumSkip)"))
        #expect(pair.host.ratchet.skippedKeyCount == Int(DoubleRatchet.maximumSkip))
    }

    @Test("Duplicates and replays are rejected, in the current chain and from skipped keys")
    func duplicates() throws {
        var pair = try SessionPair()
        let first = try pair.companion.seal(text("run backup"))
        let second = try pair.companion.seal(text("second"))
        #expect(try pair.host.open(second) == text("second"))
        #expect(throws: SessionError(.duplicate, "")) { try pair.host.open(second) }
        #expect(try pair.host.open(first) == text("run backup"))
        // Its skipped key is gone now: a replay cannot open again.
        #expect(throws: SessionError.self) { try pair.host.open(first) }
        // After a DH step an old chain's message is undecryptable, not run again.
        _ = try pair.companion.open(pair.host.seal(text("ok")))
        _ = try pair.host.open(pair.companion.seal(text("next")))
        #expect(throws: SessionError(.undecryptable, "")) { try pair.host.open(first) }
    }

    @Test("Tampered header, body, associated data or truncation: refused, state untouched, real message still opens")
    func tampered() throws {
        var pair = try SessionPair()
        let message = try pair.companion.seal(text("delete nothing"))
        let before = pair.host.ratchet.serialized
        for index in [0, 30, DoubleRatchet.encryptedHeaderLength - 1, DoubleRatchet.encryptedHeaderLength + 3, message.ciphertext.count - 1] {
            var bytes = message.ciphertext
            bytes[index] ^= 0x01
            let forged = try Envelope(id: message.id, ciphertext: bytes)
            #expect(throws: SessionError.self) { try pair.host.open(forged) }
            #expect(pair.host.ratchet.serialized.constantTimeEquals(before))
        }
        let truncated = try Envelope(id: message.id, ciphertext: Array(message.ciphertext.prefix(90)))
        #expect(throws: SessionError.self) { try pair.host.open(truncated) }
        var other = SecureSession(ratchet: pair.host.ratchet, associatedData: text("another session"))
        #expect(throws: SessionError(.undecryptable, "")) { try other.open(message) }
        #expect(try pair.host.open(message) == text("delete nothing"))
    }

    @Test("A message from another session is undecryptable")
    func foreign() throws {
        var one = try SessionPair()
        var two = try SessionPair()
        let message = try one.companion.seal(text("hello"))
        #expect(throws: SessionError(.undecryptable, "")) { try two.host.open(message) }
    }

    @Test("Restart in the middle: the serialized state carries on exactly, skipped keys included")
    func restart() throws {
        var pair = try SessionPair()
        let late = try pair.companion.seal(text("late"))
        _ = try pair.host.open(pair.companion.seal(text("a")))
        _ = try pair.companion.open(pair.host.seal(text("b")))
        let stored = pair.host.ratchet.serialized
        var restored = try SecureSession(ratchet: DoubleRatchet(serialized: stored), associatedData: pair.host.associatedData)
        #expect(restored.ratchet.serialized.constantTimeEquals(stored))
        #expect(try restored.open(pair.companion.seal(text("c"))) == text("c"))
        #expect(try restored.open(late) == text("late"))
        #expect(try pair.companion.open(restored.seal(text("d"))) == text("d"))
        // Damaged state is refused, not half-loaded.
        var bytes = stored.unsafeCopyToArray()
        #expect(throws: SessionError(.malformed, "")) { try DoubleRatchet(serialized: SecretBytes(copying: bytes.dropLast())) }
        bytes[0] = 0
        #expect(throws: SessionError(.malformed, "")) { try DoubleRatchet(serialized: SecretBytes(copying: bytes)) }
    }

    @Test("The responder cannot send before the first message")
    func responderWaits() throws {
        var pair = try SessionPair()
        #expect(!pair.host.ratchet.canSend)
        #expect(throws: SessionError(.cannotSendYet, "")) { try pair.host.seal(text("too early")) }
        _ = try pair.host.open(pair.companion.seal(text("hi")))
        #expect(pair.host.ratchet.canSend)
    }

    @Test("Forward secrecy: a later state cannot decrypt earlier messages")
    func forwardSecrecy() throws {
        var pair = try SessionPair()
        var captured: [Envelope] = []
        for index in 0..<3 {
            let message = try pair.companion.seal(text("secret \(index)"))
            captured.append(message)
            _ = try pair.host.open(message)
        }
        _ = try pair.companion.open(pair.host.seal(text("reply")))
        // An attacker who steals both states now learns nothing about the captured messages.
        var stolenHost = try SecureSession(ratchet: DoubleRatchet(serialized: pair.host.ratchet.serialized), associatedData: pair.host.associatedData)
        var stolenCompanion = try SecureSession(ratchet: DoubleRatchet(serialized: pair.companion.ratchet.serialized), associatedData: pair.companion.associatedData)
        for message in captured {
            #expect(throws: SessionError.self) { try stolenHost.open(message) }
            #expect(throws: SessionError.self) { try stolenCompanion.open(message) }
        }
    }

    @Test("Post-compromise recovery: after a full DH round trip a stolen state is locked out")
    func recovery() throws {
        var pair = try SessionPair()
        _ = try pair.host.open(pair.companion.seal(text("start")))
        // The companion's state leaks.
        var attacker = try SecureSession(ratchet: DoubleRatchet(serialized: pair.companion.ratchet.serialized), associatedData: pair.companion.associatedData)
        // Right after the leak the attacker can read what the host sends (the test would be empty otherwise).
        let exposed = try pair.host.seal(text("exposed"))
        #expect(try attacker.open(exposed) == text("exposed"))
        _ = try pair.companion.open(exposed)
        // Full round trip: companion sends with a fresh ratchet key, host answers with a fresh one.
        _ = try pair.host.open(pair.companion.seal(text("new key")))
        let healed = try pair.host.seal(text("healed"))
        #expect(throws: SessionError.self) { try attacker.open(healed) }
        #expect(try pair.companion.open(healed) == text("healed"))
    }

    @Test("Payloads up to the envelope limit; larger ones are refused with a clear error")
    func sizes() throws {
        var pair = try SessionPair()
        let largest = [UInt8](repeating: 7, count: SecureSession.maximumPayloadLength)
        let envelope = try pair.companion.seal(largest)
        #expect(envelope.encoded.count <= Envelope.maximumLength)
        #expect(try pair.host.open(envelope) == largest)
        #expect(throws: SessionError(.tooLarge, "")) { try pair.companion.seal(largest + [0]) }
        // Padding hides small lengths: 1 byte and 200 bytes look the same.
        #expect(try pair.companion.seal([1]).ciphertext.count == pair.companion.seal([UInt8](repeating: 1, count: 200)).ciphertext.count)
    }
}
