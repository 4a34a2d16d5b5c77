import Foundation

/// A failure the person at the keyboard can act on: what happened, and what to do.
struct UserFacingError: Error {
    let message: String
    let hint: String?

    init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    /// Writes `errand: error: …` (and `errand: hint: …`) to standard error.
    func report() {
        var text = "errand: error: \(message)\n"
        if let hint, !hint.isEmpty { text += "errand: hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
}
