import ErrandCrypto
import Testing

/// Published vectors, checked byte for byte.
@Suite("Known-answer vectors")
struct KnownAnswerTests {
    // RFC 7748 §5.2
    @Test("X25519 RFC 7748 §5.2 scalar multiplication", arguments: [
        ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
        ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
    ])
    func x25519Vectors(scalar: String, u: String, expected: String) throws {
        let key = try X25519.SecretKey(secret: secret(scalar))
        let shared = try key.sharedSecret(with: X25519.PublicKey(bytes: hex(u)))
        #expect(shared.unsafeCopyToArray() == hex(expected))
    }

    @Test("X25519 RFC 7748 §5.2 iterated 1 and 1,000 times")
    func x25519Iterated() throws {
        var k = hex("0900000000000000000000000000000000000000000000000000000000000000")
        var u = k
        for iteration in 1...1000 {
            let result = try X25519.SecretKey(secret: SecretBytes(copying: k))
                .sharedSecret(with: X25519.PublicKey(bytes: u)).unsafeCopyToArray()
            u = k
            k = result
            if iteration == 1 {
                #expect(k == hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"))
            }
        }
        #expect(k == hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"))
    }

    @Test("X25519 RFC 7748 §6.1 Diffie-Hellman")
    func x25519DiffieHellman() throws {
        let alice = try X25519.SecretKey(secret: secret("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519.SecretKey(secret: secret("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(alice.publicKey.bytes == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        #expect(bob.publicKey.bytes == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        let k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(try alice.sharedSecret(with: bob.publicKey).unsafeCopyToArray() == k)
        #expect(try bob.sharedSecret(with: alice.publicKey).unsafeCopyToArray() == k)
    }

    // RFC 8032 §7.1, TEST 1-3
    @Test("Ed25519 RFC 8032 §7.1", arguments: [
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
         "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
         "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
        ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
         "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
         "af82",
         "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ])
    func ed25519Vectors(seed: String, publicKey: String, message: String, signature: String) throws {
        let key = try Ed25519.SecretKey(seed: secret(seed))
        #expect(key.publicKey.bytes == hex(publicKey))
        #expect(key.signature(for: hex(message)) == hex(signature))
        try key.publicKey.verify(signature: hex(signature), for: hex(message))
        #expect(key.seed.unsafeCopyToArray() == hex(seed))
    }

    // draft-irtf-cfrg-xchacha-03 §A.3.1
    static let xchachaPlaintext = Array("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".utf8)
    static let xchachaAAD = hex("50515253c0c1c2c3c4c5c6c7")
    static let xchachaKey = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    static let xchachaNonce = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
    static let xchachaCiphertext = hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e")
    static let xchachaTag = hex("c0875924c1c7987947deafd8780acf49")

    @Test("XChaCha20-Poly1305 draft-irtf-cfrg-xchacha §A.3.1")
    func xchachaVector() throws {
        let key = try XChaCha20Poly1305.Key(secret(Self.xchachaKey))
        let sealed = try XChaCha20Poly1305.seal(Self.xchachaPlaintext, key: key, nonce: Self.xchachaNonce, associatedData: Self.xchachaAAD)
        #expect(sealed == Self.xchachaCiphertext + Self.xchachaTag)
        let opened = try XChaCha20Poly1305.open(sealed, key: key, nonce: Self.xchachaNonce, associatedData: Self.xchachaAAD)
        #expect(opened == Self.xchachaPlaintext)
    }

    // RFC 5869 A.1
    @Test("HKDF-SHA256 RFC 5869 test case 1")
    func hkdfVector() throws {
        let ikm = secret("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")
        let salt = hex("000102030405060708090a0b0c")
        let info = hex("f0f1f2f3f4f5f6f7f8f9")
        let prk = HKDF.extract(salt: salt, inputKeyMaterial: ikm)
        #expect(prk.unsafeCopyToArray() == hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"))
        let okm = try HKDF.expand(pseudorandomKey: prk, info: info, length: 42)
        #expect(okm.unsafeCopyToArray() == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
        #expect(try HKDF.deriveKey(inputKeyMaterial: ikm, salt: salt, info: info, length: 42).unsafeCopyToArray() == okm.unsafeCopyToArray())
    }

    // RFC 4231 §4.3
    @Test("HMAC-SHA256 RFC 4231 test case 2")
    func hmacVector() throws {
        let key = SecretBytes(copying: Array("Jefe".utf8))
        let data = Array("what do ya want for nothing?".utf8)
        let expected = hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(HMACSHA256.authenticationCode(for: data, key: key) == expected)
        try HMACSHA256.verify(expected, for: data, key: key)
        #expect(throws: CryptoError.invalidSignature) {
            try HMACSHA256.verify(flippingBit(expected, 255), for: data, key: key)
        }
    }

    // RFC 7693 Appendix A and the BLAKE2 reference KAT (keyed, empty input)
    @Test("BLAKE2b-512 RFC 7693 Appendix A and keyed KAT")
    func blake2bVectors() throws {
        #expect(try BLAKE2b.hash(Array("abc".utf8), outputLength: 64) == hex("ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"))
        let key = SecretBytes(copying: (0..<64).map { UInt8($0) })
        #expect(try BLAKE2b.hash([], outputLength: 64, key: key) == hex("10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568"))
    }

    // FIPS 180-4 example: SHA-256("abc")
    @Test("SHA-256 of \"abc\"")
    func sha256Vector() {
        let expected = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash(Array("abc".utf8)) == expected)
        #expect(SHA256.hash(parts: [Array("a".utf8), [], Array("bc".utf8)]) == expected)
    }
}
