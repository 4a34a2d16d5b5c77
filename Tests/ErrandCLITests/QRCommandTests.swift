import ErrandTestSupport
import Foundation
import Testing

@Suite("errand qr")
struct QRCommandTests {
    let folder: URL

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("errand-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    @Test("encode from standard input writes owner-only PNG and SVG that decode to the same text")
    func encodeDecode() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let text = "errand://pair?v=1&r=http://127.0.0.1:8080&t=c2VjcmV0"
        let encoded = try run("errand", ["qr", "encode", "--png", path("code.png"), "--svg", path("code.svg")], input: text + "\n")
        #expect(encoded.status == 0, "\(encoded.errorOutput)")
        // Not a terminal: plain dark-on-light half blocks, no colour codes.
        #expect(encoded.output.contains("█"))
        #expect(!encoded.output.contains("\u{1B}"))
        for file in ["code.png", "code.svg"] {
            let mode = try FileManager.default.attributesOfItem(atPath: path(file))[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file) must be readable by its owner only")
        }
        let decoded = try run("errand", ["qr", "decode", path("code.png")])
        #expect(decoded.status == 0)
        #expect(decoded.output == text + "\n")
        let zbar = try run("zbarimg", ["--quiet", "--raw", path("code.png")])
        #expect(zbar.output.trimmingCharacters(in: .newlines) == text)
    }

    @Test("decode failures read 'errand: error:' then 'errand: hint:' and exit 1")
    func decodeFailures() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = try run("errand", ["qr", "decode", path("absent.png")])
        #expect(missing.status == 1)
        #expect(missing.output.isEmpty)
        #expect(missing.errorOutput == "errand: error: no image at \(path("absent.png"))\nerrand: hint: check the path, or pass the pairing code as text\n")

        try "not an image".write(toFile: path("note.txt"), atomically: true, encoding: .utf8)
        let notImage = try run("errand", ["qr", "decode", path("note.txt")])
        #expect(notImage.status == 1)
        #expect(notImage.errorOutput.hasPrefix("errand: error: \(path("note.txt")): not a PNG or JPEG image\nerrand: hint: "))

        let badStyle = try run("errand", ["qr", "encode", "--terminal", "neon", "x"])
        #expect(badStyle.status == 1)
        #expect(badStyle.errorOutput.contains("errand: error: unknown terminal style 'neon'"))

        let tooLong = try run("errand", ["qr", "encode", "--terminal", "none"], input: String(repeating: "z", count: 5000))
        #expect(tooLong.status == 1)
        #expect(tooLong.errorOutput.hasPrefix("errand: error: the text (5000 bytes) is too long for a QR code"))
    }

    @Test("help lists the commands and their options")
    func help() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let root = try run("errand", ["--help"])
        #expect(root.status == 0)
        #expect(root.output.contains("USAGE: errand <subcommand>"))
        #expect(root.output.contains("qr                      Make and read QR codes."))
        let encode = try run("errand", ["qr", "encode", "--help"])
        for option in ["--png <file>", "--svg <file>", "--terminal <style>", "mode 0600"] {
            #expect(encode.output.contains(option), "missing \(option)")
        }
        let relay = try run("errand-relay", ["--help"])
        #expect(relay.status == 0)
        #expect(relay.output.contains("serve"))
        #expect(relay.output.contains("invite"))
    }
}
