import ErrandCrypto
import ErrandProtocol
import Testing

@Suite("Envelope v1")
struct EnvelopeTests {
    @Test("Encodes as version ‖ id ‖ ciphertext and parses back")
    func roundTrip() throws {
        let id = try EnvelopeID(bytes: Array(0..<16))
        let envelope = try Envelope(id: id, ciphertext: [UInt8](repeating: 0xAB, count: 40))
        let encoded = envelope.encoded
        #expect(encoded.count == 57)
        #expect(encoded[0] == 0x01)
        #expect(Array(encoded[1..<17]) == Array(0..<16))
        #expect(try Envelope(parsing: encoded) == envelope)
        #expect(envelope.id.description == "000102030405060708090a0b0c0d0e0f")
    }

    @Test("Accepts exactly 64 KiB and refuses one byte more")
    func sizeCap() throws {
        let largest = try Envelope(ciphertext: [UInt8](repeating: 1, count: Envelope.maximumCiphertextLength))
        #expect(largest.encoded.count == 65_536)
        #expect(try Envelope(parsing: largest.encoded) == largest)
        let tooBig = largest.encoded + [0]
        #expect(try #require(throws: EnvelopeError.self) { try Envelope(parsing: tooBig) }.code == .oversized)
        #expect(try #require(throws: EnvelopeError.self) {
            try Envelope(ciphertext: [UInt8](repeating: 1, count: Envelope.maximumCiphertextLength + 1))
        }.code == .oversized)
    }

    @Test("Refuses empty, truncated and unknown-version input with a typed error")
    func refusals() throws {
        func code(_ bytes: [UInt8]) throws -> EnvelopeError.Code {
            try #require(throws: EnvelopeError.self) { try Envelope(parsing: bytes) }.code
        }
        #expect(try code([]) == .truncated)
        #expect(try code([1]) == .truncated)
        #expect(try code([1] + [UInt8](repeating: 0, count: 31)) == .truncated)
        #expect(try code([2] + [UInt8](repeating: 0, count: 40)) == .unsupportedVersion)
        #expect(try code([0] + [UInt8](repeating: 0, count: 40)) == .unsupportedVersion)
        let error = try #require(throws: EnvelopeError.self) { try Envelope(parsing: [9] + [UInt8](repeating: 0, count: 40)) }
        #expect(error.description.contains("version 9"))
        #expect(try #require(throws: EnvelopeError.self) { try Envelope(ciphertext: [1, 2, 3]) }.code == .truncated)
        #expect(try #require(throws: EnvelopeError.self) { try EnvelopeID(bytes: [1]) }.code == .malformed)
    }

    @Test("Thousands of random and mutated inputs parse or fail with a typed error, never crash")
    func fuzz() throws {
        var generator = SplitMix64(seed: 0x00E2_2A4D)
        let valid = try Envelope(ciphertext: [UInt8](repeating: 7, count: 300)).encoded
        var parsed = 0
        var refused = 0
        for round in 0..<5000 {
            var input: [UInt8]
            switch round % 4 {
            case 0: // random bytes of random length; now and then over the cap
                let length = round % 100 == 0 ? 65_000 + Int(generator.next() % 1_000) : Int(generator.next() % 2_000)
                input = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            case 1: // valid envelope with random bytes flipped
                input = valid
                for _ in 0..<(1 + generator.next() % 8) {
                    input[Int(generator.next() % UInt64(input.count))] ^= UInt8(truncatingIfNeeded: generator.next() | 1)
                }
            case 2: // valid envelope truncated or extended
                let length = Int(generator.next() % UInt64(valid.count + 40))
                input = length <= valid.count ? Array(valid.prefix(length)) : valid + [UInt8](repeating: 0, count: length - valid.count)
            default: // short inputs around the header boundary
                let length = Int(generator.next() % 40)
                input = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
                if !input.isEmpty, generator.next() % 2 == 0 { input[0] = 1 }
            }
            do {
                let envelope = try Envelope(parsing: input)
                // Whatever parses must re-encode to exactly the same bytes.
                #expect(envelope.encoded == input)
                parsed += 1
            } catch {
                #expect(!error.description.isEmpty)
                refused += 1
            }
        }
        #expect(parsed > 100)
        #expect(refused > 1000)
    }
}

/// A small deterministic generator so fuzz failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
