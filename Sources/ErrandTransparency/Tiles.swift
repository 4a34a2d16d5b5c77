/// C2SP tlog-tiles paths: tiles of 256 hashes (height 8) and entry bundles of 256 entries.
public enum TilePath {
    /// Hashes (or entries) per full tile.
    public static let width: UInt64 = 256
    /// Tree levels per tile level.
    public static let height = 8

    /// The index as path elements: groups of three digits, all but the last prefixed with `x`
    /// (1234067 → `x001/x234/067`).
    public static func encode(index: UInt64) -> String {
        var groups: [String] = []
        var rest = index
        repeat {
            let group = String(rest % 1000)
            groups.insert(String(repeating: "0", count: 3 - group.count) + group, at: 0)
            rest /= 1000
        } while rest > 0
        return groups.enumerated().map { $0.offset < groups.count - 1 ? "x" + $0.element : $0.element }.joined(separator: "/")
    }

    /// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (`level` nil).
    public static func path(level: Int?, index: UInt64, partialWidth: UInt64?) -> String {
        let base = "tile/" + (level.map(String.init) ?? "entries") + "/" + encode(index: index)
        return partialWidth.map { base + ".p/\($0)" } ?? base
    }

    /// Parses the path after `tile/`: level (nil for entries), index and partial width.
    public static func parse(_ segments: [Substring]) -> (level: Int?, index: UInt64, partialWidth: UInt64?)? {
        guard segments.count >= 2 else { return nil }
        let level: Int?
        if segments[0] == "entries" { level = nil } else {
            guard let parsed = Int(segments[0]), (0...63).contains(parsed), String(parsed) == segments[0] else { return nil }
            level = parsed
        }
        var rest = Array(segments.dropFirst())
        var partial: UInt64?
        if rest.count >= 2, rest[rest.count - 2].hasSuffix(".p") {
            guard let width = UInt64(rest[rest.count - 1]), (1..<Self.width).contains(width), String(width) == rest[rest.count - 1] else { return nil }
            partial = width
            rest[rest.count - 2] = rest[rest.count - 2].dropLast(2)
            rest.removeLast()
        }
        var index: UInt64 = 0
        for (position, group) in rest.enumerated() {
            let last = position == rest.count - 1
            let digits = last ? group : (group.hasPrefix("x") ? group.dropFirst() : "")
            guard digits.count == 3, let value = UInt64(digits), !(last && group.hasPrefix("x")) else { return nil }
            let (shifted, overflow) = index.multipliedReportingOverflow(by: 1000)
            let (sum, carry) = shifted.addingReportingOverflow(value)
            guard !overflow, !carry else { return nil }
            index = sum
        }
        return (level, index, partial)
    }

}
