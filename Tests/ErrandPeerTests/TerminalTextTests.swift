import ErrandPeer
import Testing

@Suite("Text from others, printed to a terminal")
struct TerminalTextTests {
    @Test("Escape sequences, carriage returns, C1 and bidi controls are shown, never acted on")
    func neutralizes() {
        let hostile = "\u{1B}]0;pwned\u{07}a\rSECURITY: forged\u{8}\u{7F}\u{9B}31m\u{202E}txt.exe\u{2028}x"
        let shown = TerminalText.neutralized(hostile)
        #expect(shown == #"\x1B]0;pwned\x07a\x0DSECURITY: forged\x08\x7F\x9B31m\u{202E}txt.exe\u{2028}x"#)
        #expect(!shown.unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) })
        // One-line fields show line feeds; output keeps them (and tabs), escaping the rest.
        #expect(TerminalText.neutralized("a\nSECURITY: b") == #"a\nSECURITY: b"#)
        #expect(TerminalText.neutralized("line 1\n\tline 2\u{1B}[2J", multiline: true) == "line 1\n\tline 2\\x1B[2J")
        #expect(TerminalText.neutralized("plain text, ünïcode ✓") == "plain text, ünïcode ✓")
    }

    @Test("Output bytes: ASCII controls escaped, a UTF-8 character cut between pieces left whole")
    func bytes() {
        let check = Array("✓".utf8)
        let first = TerminalText.neutralized(bytes: [0x1B, 0x5B, 0x32, 0x4A, 0x0D] + check.prefix(1))
        let second = TerminalText.neutralized(bytes: Array(check.dropFirst()) + [0x0A])
        #expect(String(decoding: first + second, as: UTF8.self) == "\\x1B[2J\\x0D✓\n")
    }
}
