import ErrandCrypto
import Testing

/// Tampered, truncated and mis-sized inputs must fail with a typed error.
@Suite("Authentication failures and bad inputs")
struct NegativeTests {
    static let key = try! XChaCha20Poly1305.Key(secret(KnownAnswerTests.xchachaKey))
    static let nonce = KnownAnswerTests.xchachaNonce
    static let aad = KnownAnswerTests.xchachaAAD
    static let sealed = KnownAnswerTests.xchachaCiphertext + KnownAnswerTests.xchachaTag

    @Test("A flipped ciphertext or tag bit fails authentication", arguments: [0, 7, 400, 913, 912 + 3, 912 + 127])
    func flippedCiphertextBit(bit: Int) {
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(flippingBit(Self.sealed, bit), key: Self.key, nonce: Self.nonce, associatedData: Self.aad)
        }
    }

    @Test("A flipped nonce bit fails authentication", arguments: [0, 100, 191])
    func flippedNonceBit(bit: Int) {
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(Self.sealed, key: Self.key, nonce: flippingBit(Self.nonce, bit), associatedData: Self.aad)
        }
    }

    @Test("A flipped associated-data bit fails authentication", arguments: [0, 50, 95])
    func flippedAssociatedDataBit(bit: Int) {
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(Self.sealed, key: Self.key, nonce: Self.nonce, associatedData: flippingBit(Self.aad, bit))
        }
    }

    @Test("Missing associated data, wrong key and truncation fail")
    func otherAEADFailures() {
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(Self.sealed, key: Self.key, nonce: Self.nonce)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(Self.sealed, key: XChaCha20Poly1305.Key(), nonce: Self.nonce, associatedData: Self.aad)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(Array(Self.sealed.dropLast()), key: Self.key, nonce: Self.nonce, associatedData: Self.aad)
        }
        #expect(throws: CryptoError.wrongLength) {
            try XChaCha20Poly1305.open(Array(Self.sealed.prefix(15)), key: Self.key, nonce: Self.nonce)
        }
        #expect(throws: CryptoError.wrongLength) {
            try XChaCha20Poly1305.open(Self.sealed, key: Self.key, nonce: Array(Self.nonce.prefix(12)))
        }
        #expect(throws: CryptoError.wrongLength) {
            try XChaCha20Poly1305.Key(SecretBytes(copying: [UInt8](repeating: 1, count: 16)))
        }
    }

    @Test("Random-nonce seal round-trips and each seal differs")
    func randomNonceRoundTrip() throws {
        let key = XChaCha20Poly1305.Key()
        let message = Array("run the backup".utf8)
        let a = XChaCha20Poly1305.seal(message, key: key, associatedData: [1])
        let b = XChaCha20Poly1305.seal(message, key: key, associatedData: [1])
        #expect(a != b)
        #expect(try XChaCha20Poly1305.open(combined: a, key: key, associatedData: [1]) == message)
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(combined: flippingBit(a, 3), key: key, associatedData: [1])
        }
    }

    @Test("Ed25519 rejects a changed message, a flipped signature bit and another key")
    func ed25519Failures() throws {
        let key = Ed25519.SecretKey()
        let message = Array("checkpoint 42".utf8)
        let signature = key.signature(for: message)
        try key.publicKey.verify(signature: signature, for: message)
        #expect(throws: CryptoError.invalidSignature) {
            try key.publicKey.verify(signature: signature, for: message + [0])
        }
        for bit in [0, 255, 256, 511] {
            #expect(throws: CryptoError.invalidSignature) {
                try key.publicKey.verify(signature: flippingBit(signature, bit), for: message)
            }
        }
        #expect(throws: CryptoError.invalidSignature) {
            try Ed25519.SecretKey().publicKey.verify(signature: signature, for: message)
        }
        #expect(throws: CryptoError.wrongLength) {
            try key.publicKey.verify(signature: Array(signature.prefix(63)), for: message)
        }
        #expect(throws: CryptoError.wrongLength) { try Ed25519.PublicKey(bytes: [1, 2, 3]) }
        #expect(throws: CryptoError.wrongLength) { try Ed25519.SecretKey(seed: SecretBytes(copying: [1])) }
    }

    @Test("X25519 rejects small-order public keys (all-zero shared secret)", arguments: [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    ])
    func x25519SmallOrder(point: String) throws {
        let key = X25519.SecretKey()
        #expect(throws: CryptoError.weakPublicKey) {
            try key.sharedSecret(with: X25519.PublicKey(bytes: hex(point)))
        }
    }

    @Test("Sealed boxes open only for their recipient and detect tampering")
    func sealedBox() throws {
        let recipient = X25519.SecretKey()
        let message = Array("pairing request".utf8)
        let sealed = try SealedBox.seal(message, to: recipient.publicKey)
        #expect(sealed.count == message.count + SealedBox.overhead)
        #expect(try SealedBox.open(sealed, recipient: recipient) == message)
        #expect(throws: CryptoError.authenticationFailed) {
            try SealedBox.open(sealed, recipient: X25519.SecretKey())
        }
        for bit in [0, 300, sealed.count * 8 - 1] {
            #expect(throws: CryptoError.authenticationFailed) {
                try SealedBox.open(flippingBit(sealed, bit), recipient: recipient)
            }
        }
        #expect(throws: CryptoError.wrongLength) {
            try SealedBox.open(Array(sealed.prefix(47)), recipient: recipient)
        }
        // A small-order recipient key (e.g. all zeros from a forged pairing code) is refused
        // instead of producing a half-written buffer.
        #expect(throws: CryptoError.weakPublicKey) {
            try SealedBox.seal(message, to: X25519.PublicKey(bytes: [UInt8](repeating: 0, count: 32)))
        }
    }

    @Test("BLAKE2b and HKDF refuse out-of-range lengths")
    func lengthLimits() {
        #expect(throws: CryptoError.wrongLength) { try BLAKE2b.hash([], outputLength: 8) }
        #expect(throws: CryptoError.wrongLength) { try BLAKE2b.hash([], outputLength: 65) }
        #expect(throws: CryptoError.wrongLength) { try BLAKE2b.hash([], key: SecretBytes(copying: [1, 2])) }
        #expect(throws: CryptoError.wrongLength) {
            try HKDF.expand(pseudorandomKey: SecretBytes.random(count: 32), info: [], length: 8161)
        }
    }

    @Test("Constant-time comparison")
    func constantTime() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([], []))
        let a = SecretBytes(copying: [9, 9])
        #expect(a.constantTimeEquals(SecretBytes(copying: [9, 9])))
        #expect(!a.constantTimeEquals(SecretBytes(copying: [9, 8])))
    }

    @Test("Encodings reject malformed text")
    func encodings() throws {
        #expect(ByteEncoding.hex([0, 0xAB, 0xFF]) == "00abff")
        #expect(try ByteEncoding.bytes(hex: "00ABff") == [0, 0xAB, 0xFF])
        #expect(throws: CryptoError.invalidEncoding) { try ByteEncoding.bytes(hex: "abc") }
        #expect(throws: CryptoError.invalidEncoding) { try ByteEncoding.bytes(hex: "zz") }
        #expect(ByteEncoding.base64URL([0xFB, 0xFF]) == "-_8")
        #expect(ByteEncoding.base64([0xFB, 0xFF]) == "+/8=")
        #expect(try ByteEncoding.bytes(base64URL: "-_8") == [0xFB, 0xFF])
        #expect(throws: CryptoError.invalidEncoding) { try ByteEncoding.bytes(base64URL: "+/8") }
        #expect(throws: CryptoError.invalidEncoding) { try ByteEncoding.bytes(base64URL: "-_8=") }
        #expect(throws: CryptoError.invalidEncoding) { try ByteEncoding.bytes(base64URL: "-_8 ") }
    }
}
