import ArgumentParser
import ErrandCrypto
import ErrandProtocol
import Foundation

/// The cost of session messages: padding + Double Ratchet with header encryption, against one
/// bare AEAD call on the same payload, in the same run.
struct SessionBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Seal/open session messages (Double Ratchet, header encryption, padding) vs. one bare AEAD call.")

    @Option(help: "Messages per round.") var iterations = 5_000
    @Option(help: "Rounds; the median round is reported.") var rounds = 9
    @Option(help: "Payload size in bytes.") var size = 1024

    func validate() throws {
        guard iterations >= 10, rounds >= 1 else { throw ValidationError("--iterations ≥ 10 and --rounds ≥ 1") }
        guard (1...SecureSession.maximumPayloadLength).contains(size) else {
            throw ValidationError("--size must be 1 to \(SecureSession.maximumPayloadLength)")
        }
    }

    func run() throws {
        let payload = SecureRandom.bytes(count: size)
        let key = XChaCha20Poly1305.Key()
        var sink: UInt8 = 0
        var bare: [Double] = [], oneWay: [Double] = [], pingPong: [Double] = []
        for _ in 0..<rounds {
            bare.append(try measure(iterations) {
                let sealed = XChaCha20Poly1305.seal(payload, key: key)
                sink ^= try XChaCha20Poly1305.open(combined: sealed, key: key).first ?? 0
            })
            // One direction: a symmetric-ratchet step per message (the common case).
            var (sender, receiver) = try Self.pair()
            oneWay.append(try measure(iterations) {
                sink ^= try receiver.open(sender.seal(payload)).first ?? 0
            })
            // Alternating: every message carries a new ratchet key (a DH step, two X25519 each side).
            var (left, right) = try Self.pair()
            _ = try right.open(left.seal(payload))
            var turn = false
            pingPong.append(try measure(iterations) {
                if turn { sink ^= try right.open(left.seal(payload)).first ?? 0 } else { sink ^= try left.open(right.seal(payload)).first ?? 0 }
                turn.toggle()
            })
        }
        if sink == 0xFF { print("") }
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        print("errand-bench session: \(size)-byte payloads, median of \(rounds) rounds × \(iterations) messages, µs per message (seal + open)")
        print(String(format: "bare AEAD seal+open              %8.2f", median(bare)))
        print(String(format: "session, one direction           %8.2f  (%.1f× bare)", median(oneWay), median(oneWay) / median(bare)))
        print(String(format: "session, alternating (DH steps)  %8.2f  (%.1f× bare)", median(pingPong), median(pingPong) / median(bare)))
    }

    static func pair() throws -> (SecureSession, SecureSession) {
        let root = SecretBytes.random(count: 32), header = SecretBytes.random(count: 32), next = SecretBytes.random(count: 32)
        let ratchet = X25519.SecretKey()
        let ad = Array("errand/v1/session".utf8) + SecureRandom.bytes(count: 32)
        return (SecureSession(ratchet: try .initiator(sharedSecret: root, headerKey: header, nextHeaderKey: next, responderRatchetKey: ratchet.publicKey),
                              associatedData: ad),
                SecureSession(ratchet: .responder(sharedSecret: root, headerKey: header, nextHeaderKey: next, ratchetKeyPair: ratchet),
                              associatedData: ad))
    }

    private func measure(_ count: Int, _ body: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        for _ in 0..<count { try body() }
        let elapsed = ContinuousClock.now - start
        return (Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12) / Double(count)
    }
}
