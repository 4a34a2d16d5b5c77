import ErrandCrypto
import ErrandQR
import Foundation

/// Showing QR codes and writing private files, shared by `errand qr` and `errand host pair`.
enum QROutput {
    /// The terminal style named by `--terminal`: auto (ANSI colours on a terminal unless
    /// `NO_COLOR` or `TERM=dumb`, else plain dark-on-light), ansi, light-on-dark, dark-on-light, none.
    static func terminalStyle(named name: String) throws -> QRCode.TerminalStyle? {
        switch name {
        case "auto":
            let environment = ProcessInfo.processInfo.environment
            let colour = isatty(STDOUT_FILENO) == 1 && environment["NO_COLOR"] == nil && environment["TERM"] != "dumb"
            return colour ? .ansiColors : .darkOnLight
        case "ansi": return .ansiColors
        case "light-on-dark": return .lightOnDark
        case "dark-on-light": return .darkOnLight
        case "none": return nil
        default:
            throw UserFacingError("unknown terminal style '\(name)'",
                                  hint: "use one of: auto, ansi, light-on-dark, dark-on-light, none")
        }
    }

    /// Writes `bytes` to `path` with mode 0600, atomically.
    static func writePrivately(_ bytes: [UInt8], to path: String) throws {
        do {
            try OwnerOnlyFile.write(bytes, to: path)
        } catch {
            throw UserFacingError(error.description, hint: "check that the folder exists and is writable")
        }
    }
}
