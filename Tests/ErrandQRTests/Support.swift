import ErrandQR
import ErrandTestSupport
import Foundation
import Testing

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
