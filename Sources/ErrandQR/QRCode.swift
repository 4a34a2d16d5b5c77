internal import CQREncode

/// A QR code symbol: a square of dark and light modules, made by libqrencode.
///
/// Render it with ``terminalText(style:quietZone:)``, ``pngData(moduleSize:quietZone:)`` or
/// ``svg(moduleSize:quietZone:)``; read one back from an image with ``QRScanner``.
public struct QRCode: Sendable, Equatable {
    /// How much damage the code can take and still be read (larger levels make bigger codes).
    public enum ErrorCorrection: Sendable {
        /// About 7 % of the code can be restored.
        case low
        /// About 15 % (the default: a good trade for screens).
        case medium
        /// About 25 %.
        case quartile
        /// About 30 %.
        case high
    }

    /// Most bytes a QR code can carry (version 40, low error correction).
    public static let maximumPayload = 2953
    /// Largest module size and quiet zone the image renderers accept.
    public static let maximumModuleSize = 64

    /// Modules per side (21 for version 1, +4 per version, up to 177).
    public let size: Int
    /// QR version 1…40 chosen by libqrencode for the payload.
    public let version: Int
    private let modules: [Bool]

    /// Encodes `text` (UTF-8, 8-bit byte mode) as the smallest QR code that holds it.
    /// - Throws: ``QRCodeError`` when the text is empty or too long for any QR code.
    public init(encoding text: String, errorCorrection: ErrorCorrection = .medium) throws(QRCodeError) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw QRCodeError("cannot make a QR code of empty text") }
        // 2,953 bytes is the most any QR code holds (version 40, level L).
        guard bytes.count <= Self.maximumPayload else {
            throw QRCodeError("the text (\(bytes.count) bytes) is too long for a QR code (at most \(Self.maximumPayload) bytes)")
        }
        let level: QRecLevel = switch errorCorrection {
        case .low: QR_ECLEVEL_L
        case .medium: QR_ECLEVEL_M
        case .quartile: QR_ECLEVEL_Q
        case .high: QR_ECLEVEL_H
        }
        guard let code = QRcode_encodeData(Int32(bytes.count), bytes, 0, level) else {
            throw QRCodeError("the text (\(bytes.count) bytes) is too long for a QR code at this error-correction level")
        }
        defer { QRcode_free(code) }
        let width = Int(code.pointee.width)
        size = width
        version = Int(code.pointee.version)
        // libqrencode: bit 0 of each byte is 1 for a dark module.
        modules = (0..<width * width).map { code.pointee.data[$0] & 1 == 1 }
    }

    /// A code from an explicit module matrix (row-major, `true` = dark), e.g. one read back from a rendering.
    public init(size: Int, darkModules: [Bool]) {
        precondition(size > 0 && darkModules.count == size * size, "module matrix must be size × size")
        self.size = size
        self.version = (size - 17) / 4
        self.modules = darkModules
    }

    /// Whether the module at column `x`, row `y` is dark. Outside the symbol (the quiet zone) is light.
    public func isDark(x: Int, y: Int) -> Bool {
        guard x >= 0, y >= 0, x < size, y < size else { return false }
        return modules[y * size + x]
    }

    /// 8-bit grayscale pixels (0 = dark, 255 = light), `moduleSize` pixels per module and a
    /// light border of `quietZone` modules. Returns the pixels and the side length in pixels.
    public func grayscalePixels(moduleSize: Int, quietZone: Int) -> (pixels: [UInt8], side: Int) {
        precondition((1...Self.maximumModuleSize).contains(moduleSize) && (0...Self.maximumModuleSize).contains(quietZone),
                     "module size must be 1…64 and quiet zone 0…64")
        let side = (size + 2 * quietZone) * moduleSize
        var pixels = [UInt8](repeating: 255, count: side * side)
        for y in 0..<size {
            for x in 0..<size where isDark(x: x, y: y) {
                let left = (x + quietZone) * moduleSize
                for row in 0..<moduleSize {
                    let start = ((y + quietZone) * moduleSize + row) * side + left
                    for column in start..<(start + moduleSize) { pixels[column] = 0 }
                }
            }
        }
        return (pixels, side)
    }
}

/// Why a QR code could not be made.
public struct QRCodeError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
