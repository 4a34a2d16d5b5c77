import ErrandQR
import ErrandTestSupport
import Foundation
import Testing

@Suite("QR codes: render with libqrencode, read back with zbar")
struct QRRoundTripTests {
    static let uri = "errand://pair?v=1&r=https://relay.example.com&s=UFFSU1RVVldYWVpbXF1eXw&k=A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg&x=NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ&t=QEFCQ0RFRkdISUpLTE1OTw&e=1767225600&a=relay.example.com%2Be1f35565%2BAekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k&n=studio-mac"

    @Test("URI → PNG → zbar library → the same URI")
    func pngRoundTrip() throws {
        let code = try QRCode(encoding: Self.uri)
        #expect(code.size == 17 + 4 * code.version)
        let png = try code.pngData()
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(try QRScanner.decode(imageData: png) == Self.uri)
    }

    @Test("The same PNG decoded by the zbarimg command-line tool")
    func zbarimgReadsPNG() throws {
        let folder = try ScratchFolder()
        let path = folder.path("offer.png")
        try Data(QRCode(encoding: Self.uri).pngData()).write(to: URL(fileURLWithPath: path))
        let result = try run("zbarimg", ["--quiet", "--raw", path])
        #expect(result.status == 0, "\(result.errorOutput)")
        #expect(result.output.trimmingCharacters(in: .newlines) == Self.uri)
        #expect(try QRScanner.decode(imageAt: path) == Self.uri)
    }

    @Test("Terminal rendering in every style matches the symbol and is readable", arguments: [
        QRCode.TerminalStyle.ansiColors, .lightOnDark, .darkOnLight,
    ])
    func terminal(style: QRCode.TerminalStyle) throws {
        let code = try QRCode(encoding: Self.uri)
        let quiet = 2
        let text = code.terminalText(style: style, quietZone: quiet)
        let lines = text.split(separator: "\n")
        #expect(lines.count == (code.size + 2 * quiet + 1) / 2)
        if style == .ansiColors {
            #expect(lines.allSatisfy { $0.hasPrefix("\u{1B}[30;107m") && $0.hasSuffix("\u{1B}[0m") })
        } else {
            #expect(!text.contains("\u{1B}"))
        }
        let (pixels, width, height, rows) = rasterize(terminalText: text, style: style)
        // Every module read back from the text is the module in the symbol; the border is light.
        for y in 0..<(code.size + 2 * quiet) {
            for x in 0..<(code.size + 2 * quiet) {
                #expect(rows[y][x] == code.isDark(x: x - quiet, y: y - quiet))
            }
        }
        #expect(try QRScanner.decode(grayscale: pixels, width: width, height: height) == Self.uri)
    }

    @Test("SVG rendered by librsvg is read by zbarimg and by the library")
    func svgRoundTrip() throws {
        let folder = try ScratchFolder()
        let code = try QRCode(encoding: Self.uri)
        let svg = code.svg(moduleSize: 6)
        #expect(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.contains("viewBox=\"0 0 \(code.size + 8) \(code.size + 8)\""))
        try svg.write(toFile: folder.path("offer.svg"), atomically: true, encoding: .utf8)
        let converted = try run("rsvg-convert", ["--format=png", "--background-color=white", "--output", folder.path("from-svg.png"), folder.path("offer.svg")])
        #expect(converted.status == 0, "\(converted.errorOutput)")
        let zbar = try run("zbarimg", ["--quiet", "--raw", folder.path("from-svg.png")])
        #expect(zbar.output.trimmingCharacters(in: .newlines) == Self.uri)
        #expect(try QRScanner.decode(imageAt: folder.path("from-svg.png")) == Self.uri)
    }

    @Test("A JPEG photo of the code is decoded")
    func jpeg() throws {
        let folder = try ScratchFolder()
        let (pixels, side) = try QRCode(encoding: Self.uri).grayscalePixels(moduleSize: 6, quietZone: 4)
        // PGM is the simplest input cjpeg takes.
        let pgm = Data("P5\n\(side) \(side)\n255\n".utf8) + Data(pixels)
        try pgm.write(to: URL(fileURLWithPath: folder.path("offer.pgm")))
        let converted = try run("cjpeg", ["-quality", "75", "-outfile", folder.path("offer.jpg"), folder.path("offer.pgm")])
        #expect(converted.status == 0, "\(converted.errorOutput)")
        #expect(try QRScanner.decode(imageAt: folder.path("offer.jpg")) == Self.uri)
    }

    @Test("Larger error correction still round-trips; text too long for any QR code is refused")
    func capacity() throws {
        for level in [QRCode.ErrorCorrection.low, .quartile, .high] {
            let code = try QRCode(encoding: Self.uri, errorCorrection: level)
            #expect(try QRScanner.decode(imageData: code.pngData(moduleSize: 4)) == Self.uri)
        }
        let error = try #require(throws: QRCodeError.self) { try QRCode(encoding: String(repeating: "x", count: 4000)) }
        #expect(error.description.contains("too long"))
        #expect(throws: QRCodeError.self) { try QRCode(encoding: "") }
    }
}

@Suite("QR scanning failures")
struct QRScanFailureTests {
    @Test("Missing file, folder, non-image, damaged image, blank image and two codes each say what happened")
    func failures() throws {
        let folder = try ScratchFolder()
        func failure(_ path: String) throws -> QRScanError {
            try #require(throws: QRScanError.self) { try QRScanner.decode(imageAt: path) }
        }
        let missing = try failure(folder.path("nope.png"))
        #expect(missing.code == .fileNotFound)
        #expect(missing.message.contains("nope.png"))

        #expect(try failure(folder.url.path).code == .unreadable)

        // A FIFO would block a naive reader forever; it is refused at once.
        #expect(mkfifo(folder.path("pipe.png"), 0o600) == 0)
        #expect(try failure(folder.path("pipe.png")).message.contains("not a regular file"))

        try "errand://pair?v=1".write(toFile: folder.path("note.txt"), atomically: true, encoding: .utf8)
        let text = try failure(folder.path("note.txt"))
        #expect(text.code == .notAnImage)
        #expect(text.message.contains("not a PNG or JPEG"))

        let png = try QRCode(encoding: "hello").pngData()
        try Data(png.prefix(png.count / 2)).write(to: URL(fileURLWithPath: folder.path("torn.png")))
        let torn = try failure(folder.path("torn.png"))
        #expect(torn.code == .notAnImage)
        #expect(torn.message.contains("damaged"))

        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]).write(to: URL(fileURLWithPath: folder.path("torn.jpg")))
        #expect(try failure(folder.path("torn.jpg")).code == .notAnImage)

        let blank = [UInt8](repeating: 255, count: 200 * 200)
        let blankError = try #require(throws: QRScanError.self) { try QRScanner.decode(grayscale: blank, width: 200, height: 200) }
        #expect(blankError.code == .noCode)
        #expect(!blankError.hint.isEmpty)

        // Two different codes side by side.
        let (a, side) = try QRCode(encoding: "first").grayscalePixels(moduleSize: 4, quietZone: 4)
        let (b, _) = try QRCode(encoding: "second").grayscalePixels(moduleSize: 4, quietZone: 4)
        var both = [UInt8](repeating: 255, count: side * 2 * side)
        for row in 0..<side {
            both.replaceSubrange((row * 2 * side)..<(row * 2 * side + side), with: a[(row * side)..<((row + 1) * side)])
            both.replaceSubrange((row * 2 * side + side)..<((row + 1) * 2 * side), with: b[(row * side)..<((row + 1) * side)])
        }
        #expect(Set(try QRScanner.decodeAll(grayscale: both, width: 2 * side, height: side)) == ["first", "second"])
        #expect(try #require(throws: QRScanError.self) { try QRScanner.decode(grayscale: both, width: 2 * side, height: side) }.code == .severalCodes)
        #expect(throws: QRScanError.self) { try QRScanner.decode(grayscale: [0, 0], width: 5, height: 5) }
    }
}
