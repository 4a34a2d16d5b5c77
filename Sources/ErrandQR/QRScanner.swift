internal import CImageCodec
internal import CZBar
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads QR codes from images with zbar.
public enum QRScanner {
    /// Largest image file read: 32 MiB.
    public static let maximumFileSize = 32 * 1024 * 1024

    /// Decodes the single QR code in a PNG or JPEG file.
    /// - Throws: ``QRScanError`` when the file is missing or unreadable, is not a PNG/JPEG
    ///   image, holds no QR code, or holds several different ones.
    public static func decode(imageAt path: String) throws(QRScanError) -> String {
        try single(decodeAll(imageAt: path), source: path)
    }

    /// Decodes the single QR code in PNG or JPEG bytes.
    public static func decode(imageData: [UInt8]) throws(QRScanError) -> String {
        try single(decodeAll(imageData: imageData), source: "the image")
    }

    /// Decodes the single QR code in 8-bit grayscale pixels (row-major, `width × height`).
    public static func decode(grayscale pixels: [UInt8], width: Int, height: Int) throws(QRScanError) -> String {
        try single(decodeAll(grayscale: pixels, width: width, height: height), source: "the image")
    }

    /// Every QR code found in a PNG or JPEG file, in zbar's order.
    public static func decodeAll(imageAt path: String) throws(QRScanError) -> [String] {
        let data = try readImageFile(path)
        do {
            return try decodeAll(imageData: data)
        } catch {
            throw QRScanError(error.code, "\(path): \(error.message)", hint: error.hint)
        }
    }

    /// Reads a regular file of at most ``maximumFileSize`` bytes (never a FIFO, device or folder,
    /// which could block or never end).
    private static func readImageFile(_ path: String) throws(QRScanError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            let error = errno
            if error == ENOENT {
                throw QRScanError(.fileNotFound, "no image at \(path)", hint: "check the path, or pass the pairing code as text")
            }
            throw QRScanError(.unreadable, "cannot read \(path): \(String(cString: strerror(error)))", hint: "check the file's permissions")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw QRScanError(.unreadable, "cannot read \(path)", hint: "check the file's permissions")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            let kind = info.st_mode & S_IFMT == S_IFDIR ? "a folder" : "not a regular file"
            throw QRScanError(.unreadable, "\(path) is \(kind), not an image", hint: "pass the path of a PNG or JPEG file")
        }
        guard Int(info.st_size) <= maximumFileSize else {
            throw QRScanError(.unreadable, "\(path) is \(Int(info.st_size) / 1_048_576) MiB; images over 32 MiB are not read",
                              hint: "crop or shrink the image around the QR code")
        }
        // Read at most one byte past the cap, in case the file grows while we read.
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var total = 0
        while total < bytes.count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + total, buffer.count - total)
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else {
                throw QRScanError(.unreadable, "cannot read \(path): \(String(cString: strerror(errno)))", hint: "check the file")
            }
            if got == 0 { break }
            total += got
            guard total <= maximumFileSize else {
                throw QRScanError(.unreadable, "\(path) grew past 32 MiB while being read", hint: "use a smaller image")
            }
        }
        return Array(bytes.prefix(total))
    }

    /// Every QR code found in PNG or JPEG bytes.
    public static func decodeAll(imageData: [UInt8]) throws(QRScanError) -> [String] {
        var pixels: UnsafeMutablePointer<UInt8>? = nil
        var width: UInt32 = 0
        var height: UInt32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = errand_image_decode_gray(imageData, imageData.count, &pixels, &width, &height, &message, message.count)
        guard status == 0, let pixels else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw QRScanError(.notAnImage, reason, hint: "use a PNG or JPEG photo or screenshot of the QR code")
        }
        defer { errand_image_free(pixels) }
        let buffer = UnsafeBufferPointer(start: pixels, count: Int(width) * Int(height))
        return try scan(buffer, width: Int(width), height: Int(height))
    }

    /// Every QR code found in 8-bit grayscale pixels.
    public static func decodeAll(grayscale pixels: [UInt8], width: Int, height: Int) throws(QRScanError) -> [String] {
        let (area, overflow) = width.multipliedReportingOverflow(by: height)
        guard width > 0, height > 0, !overflow, pixels.count == area else {
            throw QRScanError(.notAnImage, "pixel buffer of \(pixels.count) bytes does not match \(width)×\(height)", hint: "")
        }
        return try pixels.withUnsafeBufferPointer { buffer throws(QRScanError) in
            try scan(buffer, width: width, height: height)
        }
    }

    private static func scan(_ pixels: UnsafeBufferPointer<UInt8>, width: Int, height: Int) throws(QRScanError) -> [String] {
        guard let scanner = zbar_image_scanner_create() else {
            throw QRScanError(.unreadable, "cannot start the QR decoder (zbar)", hint: "")
        }
        defer { zbar_image_scanner_destroy(scanner) }
        // Only QR codes: no barcodes that might misread noise.
        zbar_image_scanner_set_config(scanner, ZBAR_NONE, ZBAR_CFG_ENABLE, 0)
        zbar_image_scanner_set_config(scanner, ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1)
        guard let image = zbar_image_create() else {
            throw QRScanError(.unreadable, "cannot start the QR decoder (zbar)", hint: "")
        }
        defer { zbar_image_destroy(image) }
        // FourCC "Y800": 8-bit grayscale.
        let y800 = UInt(UInt8(ascii: "Y")) | UInt(UInt8(ascii: "8")) << 8 | UInt(UInt8(ascii: "0")) << 16 | UInt(UInt8(ascii: "0")) << 24
        zbar_image_set_format(image, y800)
        zbar_image_set_size(image, UInt32(width), UInt32(height))
        // zbar only reads the pixels; no cleanup handler because we own the buffer.
        zbar_image_set_data(image, UnsafeRawPointer(pixels.baseAddress), UInt(pixels.count), nil)
        let found = zbar_scan_image(scanner, image)
        guard found > 0 else {
            throw QRScanError(.noCode, "no QR code found in the image",
                              hint: "make sure the whole code is in the picture, sharp and not cropped")
        }
        var results: [String] = []
        var symbol = zbar_image_first_symbol(image)
        while let current = symbol {
            if zbar_symbol_get_type(current) == ZBAR_QRCODE, let data = zbar_symbol_get_data(current) {
                let length = Int(zbar_symbol_get_data_length(current))
                results.append(String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self))
            }
            symbol = zbar_symbol_next(current)
        }
        guard !results.isEmpty else {
            throw QRScanError(.noCode, "no QR code found in the image", hint: "make sure the whole code is in the picture")
        }
        return results
    }

    private static func single(_ results: [String], source: String) throws(QRScanError) -> String {
        let distinct = Array(Set(results))
        guard distinct.count == 1 else {
            throw QRScanError(.severalCodes, "\(source) holds \(distinct.count) different QR codes",
                              hint: "crop the image to the one QR code you want to read")
        }
        return distinct[0]
    }
}

/// Why no QR code could be read, with a hint for the person.
public struct QRScanError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure; compare against these.
    public struct Code: Hashable, Sendable {
        private let raw: UInt8
        private init(_ raw: UInt8) { self.raw = raw }
        /// No file at the path.
        public static let fileNotFound = Code(1)
        /// The file exists but cannot be read (permissions, size, a folder).
        public static let unreadable = Code(2)
        /// The bytes are not a PNG or JPEG image, or the image is damaged.
        public static let notAnImage = Code(3)
        /// The image holds no readable QR code.
        public static let noCode = Code(4)
        /// The image holds more than one different QR code.
        public static let severalCodes = Code(5)
    }

    /// The kind of failure.
    public let code: Code
    /// What happened.
    public let message: String
    /// What to do about it.
    public let hint: String

    init(_ code: Code, _ message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}
