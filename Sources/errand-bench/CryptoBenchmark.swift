import ArgumentParser
import CSodium
import ErrandCrypto
import Foundation

/// Compares the ErrandCrypto wrapper with direct libsodium calls, in the same run, on the
/// operations every envelope pays for.
struct CryptoBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "Seal/open a 1 KiB envelope and sign/verify: wrapper vs. raw libsodium."
    )

    @Option(help: "Operations per round.")
    var iterations = 20_000

    @Option(help: "Rounds per measurement; the median round is reported.")
    var rounds = 15

    @Option(help: "Payload size in bytes.")
    var size = 1024

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard iterations >= 10 else { throw ValidationError("--iterations must be at least 10") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard (1...65_536).contains(size) else { throw ValidationError("--size must be 1 to 65536 bytes") }
    }

    func run() throws {
        guard sodium_init() >= 0 else { throw ValidationError("libsodium failed to initialise") }
        let plaintext = SecureRandom.bytes(count: size)
        let associatedData = SecureRandom.bytes(count: 17)
        let key = XChaCha20Poly1305.Key()
        let rawKey = key.secret.unsafeCopyToArray()
        let nonce = SecureRandom.bytes(count: XChaCha20Poly1305.nonceLength)
        let sealed = try XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, associatedData: associatedData)
        let signer = Ed25519.SecretKey()
        let rawSigningKey = Self.expandedSigningKey(signer)
        let signature = signer.signature(for: plaintext)
        var sink: UInt8 = 0
        var scratch = [UInt8](repeating: 0, count: size + 64)

        // Each operation three ways: through the wrapper (which returns a fresh array), as a
        // direct libsodium call that also allocates its output (what any caller returning the
        // result must do), and as a direct call into a reused buffer (the floor).
        let cases: [(String, () throws -> Void, () -> Void, () -> Void)] = [
            ("seal \(size) B (XChaCha20-Poly1305)", {
                let out = try XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, associatedData: associatedData)
                sink ^= out[0]
            }, {
                var out = [UInt8](repeating: 0, count: plaintext.count + 16)
                var written: UInt64 = 0
                crypto_aead_xchacha20poly1305_ietf_encrypt(&out, &written, plaintext, UInt64(plaintext.count),
                                                           associatedData, UInt64(associatedData.count), nil, nonce, rawKey)
                sink ^= out[0]
            }, {
                var written: UInt64 = 0
                crypto_aead_xchacha20poly1305_ietf_encrypt(&scratch, &written, plaintext, UInt64(plaintext.count),
                                                           associatedData, UInt64(associatedData.count), nil, nonce, rawKey)
                sink ^= scratch[0]
            }),
            ("open \(size) B (XChaCha20-Poly1305)", {
                let out = try XChaCha20Poly1305.open(sealed, key: key, nonce: nonce, associatedData: associatedData)
                sink ^= out[0]
            }, {
                var out = [UInt8](repeating: 0, count: sealed.count - 16)
                var written: UInt64 = 0
                let status = crypto_aead_xchacha20poly1305_ietf_decrypt(&out, &written, nil, sealed, UInt64(sealed.count),
                                                                        associatedData, UInt64(associatedData.count), nonce, rawKey)
                sink ^= out[0] &+ UInt8(truncatingIfNeeded: status)
            }, {
                var written: UInt64 = 0
                let status = crypto_aead_xchacha20poly1305_ietf_decrypt(&scratch, &written, nil, sealed, UInt64(sealed.count),
                                                                        associatedData, UInt64(associatedData.count), nonce, rawKey)
                sink ^= scratch[0] &+ UInt8(truncatingIfNeeded: status)
            }),
            ("sign \(size) B (Ed25519)", {
                sink ^= signer.signature(for: plaintext)[0]
            }, {
                var out = [UInt8](repeating: 0, count: 64)
                crypto_sign_detached(&out, nil, plaintext, UInt64(plaintext.count), rawSigningKey)
                sink ^= out[0]
            }, {
                crypto_sign_detached(&scratch, nil, plaintext, UInt64(plaintext.count), rawSigningKey)
                sink ^= scratch[0]
            }),
            ("verify \(size) B (Ed25519)", {
                sink ^= signer.publicKey.isValidSignature(signature, for: plaintext) ? 1 : 0
            }, {
                sink ^= crypto_sign_verify_detached(signature, plaintext, UInt64(plaintext.count), signer.publicKey.bytes) == 0 ? 1 : 0
            }, {
                sink ^= crypto_sign_verify_detached(signature, plaintext, UInt64(plaintext.count), signer.publicKey.bytes) == 0 ? 1 : 0
            }),
        ]

        var results: [(name: String, wrapper: Double, raw: Double, floor: Double)] = []
        for (name, wrapped, raw, floor) in cases {
            // Warm up, then rotate through the three in every round so drift and noise hit all alike.
            for body in [wrapped, raw, floor] { _ = try measure(iterations / 10, body) }
            var wrapperRounds: [Double] = []
            var rawRounds: [Double] = []
            var floorRounds: [Double] = []
            for _ in 0..<rounds {
                wrapperRounds.append(try measure(iterations, wrapped))
                rawRounds.append(try measure(iterations, raw))
                floorRounds.append(try measure(iterations, floor))
            }
            results.append((name, median(wrapperRounds), median(rawRounds), median(floorRounds)))
        }
        if sink == 0xFF { print("") }  // keeps the work observable to the optimiser

        if json {
            let rows = results.map {
                "{\"operation\":\"\($0.name)\",\"wrapperNanoseconds\":\(format($0.wrapper)),\"rawNanoseconds\":\(format($0.raw)),"
                    + "\"rawReusedBufferNanoseconds\":\(format($0.floor)),\"ratio\":\(format($0.wrapper / $0.raw, 3))}"
            }
            print("{\"benchmark\":\"crypto\",\"iterations\":\(iterations),\"rounds\":\(rounds),\"results\":[\(rows.joined(separator: ","))]}")
        } else {
            print("errand-bench crypto: median of \(rounds) rounds × \(iterations) operations, ns per operation")
            print("raw = direct libsodium call allocating its output; reused = direct call into a reused buffer")
            print(pad("operation", 36) + pad("wrapper", 10) + pad("raw", 10) + pad("reused", 10) + pad("wrapper/raw", 13) + "wrapper/reused")
            for row in results {
                print(pad(row.name, 36) + pad(format(row.wrapper), 10) + pad(format(row.raw), 10) + pad(format(row.floor), 10)
                      + pad(format(row.wrapper / row.raw, 3), 13) + format(row.wrapper / row.floor, 3))
            }
        }
    }

    /// Nanoseconds per call of `body`, averaged over `count` calls.
    private func measure(_ count: Int, _ body: () throws -> Void) throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<count { try body() }
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        return Double(elapsed) / Double(max(count, 1))
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }

    private func format(_ value: Double, _ decimals: Int = 1) -> String {
        String(format: "%.\(decimals)f", value)
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    /// libsodium's 64-byte signing key for the raw side of the comparison.
    private static func expandedSigningKey(_ key: Ed25519.SecretKey) -> [UInt8] {
        var publicKey = [UInt8](repeating: 0, count: 32)
        var expanded = [UInt8](repeating: 0, count: 64)
        key.seed.withUnsafeBytes { seed in
            _ = crypto_sign_seed_keypair(&publicKey, &expanded, seed.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return expanded
    }
}
