import ErrandCrypto
import Foundation
import Testing

@Suite("Secret keys: redaction, padding and key files")
struct SecretHandlingTests {
    @Test("Secrets never appear in description, debugDescription, interpolation or dump")
    func redaction() throws {
        let seedHex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        let seed = secret(seedHex)
        let signing = try Ed25519.SecretKey(seed: seed)
        let agreement = X25519.SecretKey()
        let aead = XChaCha20Poly1305.Key()
        var dumped = ""
        dump(seed, to: &dumped)
        dump(signing, to: &dumped)
        dump(agreement, to: &dumped)
        let rendered = [
            seed.description, seed.debugDescription, "\(seed)", String(reflecting: seed),
            signing.description, "\(signing)", String(reflecting: signing),
            agreement.description, String(reflecting: agreement), aead.description, String(reflecting: aead), dumped,
        ].joined(separator: "\n")
        #expect(!rendered.contains(seedHex))
        #expect(!rendered.contains(ByteEncoding.hex(agreement.secret.unsafeCopyToArray())))
        #expect(!rendered.contains(ByteEncoding.hex(aead.secret.unsafeCopyToArray())))
        #expect(!rendered.contains(ByteEncoding.base64(hex(seedHex))))
        #expect(rendered.contains("redacted"))
    }

    // Expected values from the reference algorithm in the PURBs paper (Algorithm 1).
    @Test("Padmé buckets with a 256-byte floor", arguments: [
        (0, 256), (1, 256), (255, 256), (256, 272), (300, 304), (1000, 1024), (1023, 1024), (1024, 1088),
        (10_000, 10_240), (65_000, 65_536),
    ])
    func paddedLengths(content: Int, padded: Int) {
        #expect(LengthPadding.paddedLength(forContentLength: content) == padded)
    }

    @Test("Padding round-trips, overhead stays under 12 % above the floor, and bad padding is refused")
    func paddingRoundTrip() throws {
        for length in [0, 1, 17, 254, 255, 256, 257, 999, 4096, 50_000] {
            let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let padded = LengthPadding.pad(message)
            #expect(padded.count == LengthPadding.paddedLength(forContentLength: length))
            #expect(padded.count > length)
            if length >= 256 { #expect(Double(padded.count) <= Double(length + 1) * 1.12) }
            #expect(try LengthPadding.unpad(padded) == message)
        }
        // Lengths are in few buckets: every short command looks the same.
        #expect(Set((0..<256).map { LengthPadding.pad([UInt8](repeating: 7, count: $0)).count }) == [256])
        #expect(throws: CryptoError.invalidPadding) { try LengthPadding.unpad([UInt8](repeating: 0, count: 256)) }
        #expect(throws: CryptoError.invalidPadding) { try LengthPadding.unpad([UInt8](repeating: 0, count: 10)) }
        var wrongBucket = LengthPadding.pad([1, 2, 3])
        wrongBucket.append(0)
        #expect(throws: CryptoError.invalidPadding) { try LengthPadding.unpad(wrongBucket) }
    }

    @Test("Key files are written 0600, read back, and refused when too open or of another kind")
    func keyFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("errand-keyfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("identity.key").path

        let key = Ed25519.SecretKey()
        try SecretKeyFile.write(key.seed, kind: .ed25519Seed, to: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int
        #expect(mode == 0o600)
        let loaded = try Ed25519.SecretKey(seed: SecretKeyFile.read(.ed25519Seed, from: path))
        #expect(loaded.publicKey == key.publicKey)

        // The file holds the seed only behind a header, and nothing else.
        let raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(raw.count == 8 + 32)
        #expect(Array(raw.prefix(4)) == Array("ERSK".utf8))

        // Overwriting is atomic and keeps the mode.
        try SecretKeyFile.write(Ed25519.SecretKey().seed, kind: .ed25519Seed, to: path)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int == 0o600)

        #expect(throws: CryptoError.keyFileUnreadable) { try SecretKeyFile.read(.x25519Secret, from: path) }

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let error = #expect(throws: CryptoError.keyFileInsecure) { try SecretKeyFile.read(.ed25519Seed, from: path) }
        #expect(error?.description.contains("chmod 600") == true)

        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 20)
        try handle.close()
        #expect(throws: CryptoError.keyFileUnreadable) { try SecretKeyFile.read(.ed25519Seed, from: path) }

        #expect(throws: CryptoError.keyFileUnreadable) {
            try SecretKeyFile.read(.ed25519Seed, from: directory.appendingPathComponent("missing.key").path)
        }
        // A FIFO at the key path must not hang the reader.
        let fifo = directory.appendingPathComponent("fifo.key").path
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: CryptoError.keyFileUnreadable) { try SecretKeyFile.read(.ed25519Seed, from: fifo) }
        // No temporary files are left behind by atomic writes.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
        #expect(throws: CryptoError.fileUnwritable) {
            try SecretKeyFile.write(key.seed, kind: .ed25519Seed, to: directory.appendingPathComponent("no/such/dir.key").path)
        }
    }
}
