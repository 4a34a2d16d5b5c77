import ArgumentParser
import ErrandCrypto
import ErrandQR
import Foundation

/// `errand qr`: make and read QR codes (the same code paths pairing uses).
struct QRCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qr",
        abstract: "Make and read QR codes.",
        subcommands: [Encode.self, Decode.self]
    )

    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show text as a QR code in the terminal and optionally save it as PNG or SVG.",
            discussion: "Files are written readable by you only (mode 0600): a pairing code is a secret."
        )

        @Argument(help: "The text to encode. Omit it to read the text from standard input (keeps it out of the process list).")
        var text: String?

        @Option(name: .long, help: ArgumentHelp("Also write the code as a PNG image.", valueName: "file"))
        var png: String?

        @Option(name: .long, help: ArgumentHelp("Also write the code as an SVG image.", valueName: "file"))
        var svg: String?

        @Option(name: .long, help: ArgumentHelp("How to draw in the terminal: auto, ansi, light-on-dark, dark-on-light, none.", valueName: "style"))
        var terminal: String = "auto"

        func run() throws {
            let input = text ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                .trimmingCharacters(in: .newlines)
            let code: QRCode
            do {
                code = try QRCode(encoding: input)
            } catch {
                throw UserFacingError(error.description, hint: "shorten the text, or lower the error correction")
            }
            if let png {
                try writePrivately(try code.pngData(), to: png)
            }
            if let svg {
                try writePrivately(Array(code.svg().utf8), to: svg)
            }
            if let style = try terminalStyle() {
                print(code.terminalText(style: style), terminator: "")
            }
        }

        private func terminalStyle() throws -> QRCode.TerminalStyle? {
            try QROutput.terminalStyle(named: terminal)
        }

        private func writePrivately(_ bytes: [UInt8], to path: String) throws {
            try QROutput.writePrivately(bytes, to: path)
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the text of the QR code in a PNG or JPEG image."
        )

        @Argument(help: ArgumentHelp("The image file.", valueName: "image"))
        var image: String

        func run() throws {
            do {
                print(try QRScanner.decode(imageAt: image))
            } catch {
                throw UserFacingError(error.message, hint: error.hint)
            }
        }
    }
}
