internal import CImageCodec

extension QRCode {
    /// How a code is drawn with text characters.
    public enum TerminalStyle: Sendable {
        /// Black on white set explicitly with ANSI colour codes: reads right on any terminal theme.
        case ansiColors
        /// Plain characters that draw the light modules; for dark terminals without colour.
        case lightOnDark
        /// Plain characters that draw the dark modules; for light terminals, files and paper.
        case darkOnLight
    }

    /// The code as text, two module rows per line with the half-block characters `▀ ▄ █`.
    /// - Parameters:
    ///   - style: how light and dark are shown; ``TerminalStyle/ansiColors`` unless the output
    ///     is not a colour terminal.
    ///   - quietZone: light border in modules (2 reads reliably on screens; 4 is the standard's).
    public func terminalText(style: TerminalStyle = .ansiColors, quietZone: Int = 2) -> String {
        precondition(quietZone >= 0, "quiet zone must not be negative")
        let span = -quietZone..<(size + quietZone)
        let inkIsDark = style != .lightOnDark
        func ink(_ x: Int, _ y: Int) -> Bool {
            // Rows past the bottom edge (odd height) are blank terminal background, not ink.
            guard y < size + quietZone else { return false }
            return isDark(x: x, y: y) == inkIsDark
        }
        var lines: [String] = []
        for y in stride(from: -quietZone, to: size + quietZone, by: 2) {
            var line = style == .ansiColors ? "\u{1B}[30;107m" : ""
            for x in span {
                switch (ink(x, y), ink(x, y + 1)) {
                case (true, true): line += "█"
                case (true, false): line += "▀"
                case (false, true): line += "▄"
                case (false, false): line += " "
                }
            }
            if style == .ansiColors { line += "\u{1B}[0m" }
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The code as a PNG image (8-bit grayscale), black modules on white.
    /// - Parameters:
    ///   - moduleSize: pixels per module (default 8).
    ///   - quietZone: white border in modules (default 4, as the QR standard asks).
    /// - Throws: ``QRCodeError`` if libpng cannot encode the image.
    public func pngData(moduleSize: Int = 8, quietZone: Int = 4) throws(QRCodeError) -> [UInt8] {
        guard (1...Self.maximumModuleSize).contains(moduleSize), (0...Self.maximumModuleSize).contains(quietZone) else {
            throw QRCodeError("module size must be 1 to 64 pixels and the quiet zone 0 to 64 modules")
        }
        let (pixels, side) = grayscalePixels(moduleSize: moduleSize, quietZone: quietZone)
        var output: UnsafeMutablePointer<UInt8>? = nil
        var length = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = errand_png_encode_gray(pixels, UInt32(side), UInt32(side), &output, &length, &message, message.count)
        guard status == 0, let output else {
            throw QRCodeError("cannot encode the QR code as PNG: \(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
        }
        defer { errand_image_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: length))
    }

    /// The code as an SVG document: one `<path>` of black squares on a white background,
    /// one user unit per module scaled by `moduleSize`.
    public func svg(moduleSize: Int = 8, quietZone: Int = 4) -> String {
        precondition((1...Self.maximumModuleSize).contains(moduleSize) && (0...Self.maximumModuleSize).contains(quietZone),
                     "module size must be 1…64 and quiet zone 0…64")
        let side = size + 2 * quietZone
        var path = ""
        for y in 0..<size {
            var x = 0
            while x < size {
                guard isDark(x: x, y: y) else { x += 1; continue }
                var run = 1
                while x + run < size, isDark(x: x + run, y: y) { run += 1 }
                path += "M\(x + quietZone) \(y + quietZone)h\(run)v1h-\(run)z"
                x += run
            }
        }
        let pixels = side * moduleSize
        return """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(pixels)" height="\(pixels)" viewBox="0 0 \(side) \(side)" shape-rendering="crispEdges">
        <rect width="\(side)" height="\(side)" fill="#ffffff"/>
        <path fill="#000000" d="\(path)"/>
        </svg>

        """
    }
}
