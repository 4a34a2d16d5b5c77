import ErrandQR
import Foundation
import Testing

/// A scratch folder removed when the test's value goes away.
final class ScratchFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("errand-qr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

struct CommandResult {
    let status: Int32
    let output: String
    let errorOutput: String
}

/// Runs a system tool (zbarimg, rsvg-convert, cjpeg) and captures what it prints.
func run(_ tool: String, _ arguments: [String]) throws -> CommandResult {
    let candidates = ["/usr/bin/\(tool)", "/usr/local/bin/\(tool)", "/opt/homebrew/bin/\(tool)"]
    let executable = try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                                  "\(tool) is not installed; scripts/bootstrap installs it")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errorOutput = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus,
                         output: String(decoding: output, as: UTF8.self),
                         errorOutput: String(decoding: errorOutput, as: UTF8.self))
}

/// Reads terminal text made by `QRCode.terminalText` back into light/dark pixels, the way a
/// camera would see the screen: `scale` pixels per module, a generous light margin added.
func rasterize(terminalText text: String, style: QRCode.TerminalStyle, scale: Int = 4) -> (pixels: [UInt8], width: Int, height: Int, rows: [[Bool]]) {
    let stripped = text.replacingOccurrences(of: "\u{1B}[30;107m", with: "").replacingOccurrences(of: "\u{1B}[0m", with: "")
    var rows: [[Bool]] = []  // true = dark
    for line in stripped.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
        var top: [Bool] = []
        var bottom: [Bool] = []
        for character in line {
            let (upper, lower): (Bool, Bool) = switch character {
            case "█": (true, true)
            case "▀": (true, false)
            case "▄": (false, true)
            default: (false, false)
            }
            // Ink is dark except in the light-on-dark style, where ink is light.
            let inkIsDark = style != .lightOnDark
            top.append(upper == inkIsDark)
            bottom.append(lower == inkIsDark)
        }
        rows.append(top)
        rows.append(bottom)
    }
    let margin = 4
    let width = (rows[0].count + 2 * margin) * scale
    let height = (rows.count + 2 * margin) * scale
    var pixels = [UInt8](repeating: 255, count: width * height)
    for (y, row) in rows.enumerated() {
        for (x, dark) in row.enumerated() where dark {
            for dy in 0..<scale {
                for dx in 0..<scale {
                    pixels[((y + margin) * scale + dy) * width + (x + margin) * scale + dx] = 0
                }
            }
        }
    }
    return (pixels, width, height, rows)
}
