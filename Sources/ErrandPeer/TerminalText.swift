/// Text that came from another party (a device's task text, a host's output, names) made safe to
/// print to a terminal or a log: control characters that could move the cursor, recolour or
/// retitle the terminal, hide text or forge a line (ESC, CR, backspace, DEL, the C1 controls,
/// bidirectional overrides, line and paragraph separators) are shown as visible escapes
/// (`\x1B`, `\u{202E}`) instead of acting. Tabs stay; line feeds stay only where the text is
/// meant to span lines (output), and are shown as `\n` on one-line fields.
public enum TerminalText {
    /// `text` with every acting control character shown as an escape.
    /// - Parameter multiline: keep line feeds (for output); false escapes them too (for one-line fields).
    public static func neutralized(_ text: String, multiline: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { isActing($0, multiline: multiline) }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if isActing(scalar, multiline: multiline) {
                result.append(contentsOf: escape(scalar).unicodeScalars)
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    /// Bytes of output (possibly cut anywhere, even inside a UTF-8 character) with the ASCII
    /// controls other than tab and line feed shown as escapes; bytes of 0x80 and above are left
    /// as they are, so a character cut between two pieces is not damaged.
    public static func neutralized(bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(where: isActingByte) else { return bytes }
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count + 16)
        for byte in bytes {
            if isActingByte(byte) {
                result.append(contentsOf: Array(escape(Unicode.Scalar(byte)).utf8))
            } else {
                result.append(byte)
            }
        }
        return result
    }

    private static func isActingByte(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != 0x09 && byte != 0x0A) || byte == 0x7F
    }

    private static func isActing(_ scalar: Unicode.Scalar, multiline: Bool) -> Bool {
        switch scalar.value {
        case 0x09: false
        case 0x0A: !multiline
        case 0x00..<0x20, 0x7F..<0xA0: true
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: true
        default: false
        }
    }

    private static func escape(_ scalar: Unicode.Scalar) -> String {
        if scalar.value == 0x0A { return "\\n" }
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return scalar.value <= 0xFF ? "\\x" + String(repeating: "0", count: 2 - hex.count) + hex : "\\u{\(hex)}"
    }
}
