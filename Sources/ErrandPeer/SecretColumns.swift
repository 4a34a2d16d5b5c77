public import ErrandCrypto
public import Foundation
public import GRDB

extension SecretBytes {
    /// Runs `body` with the bytes in a `Data` that is wiped afterwards: for binding a secret to
    /// an SQL statement (SQLite copies bound blobs, so nothing of ours outlives the call).
    public func withWipedData<T>(_ body: (Data) throws -> T) rethrows -> T {
        var data = Data(count: count)
        data.withUnsafeMutableBytes { target in
            withUnsafeBytes { source in target.copyMemory(from: source) }
        }
        defer { data.resetBytes(in: 0..<data.count) }
        return try body(data)
    }
}

extension Row {
    /// A blob column read straight into ``SecretBytes`` (no intermediate Swift copy when the row
    /// comes from a cursor).
    /// - Throws: ``PeerError`` when the column is NULL.
    public func secret(at index: Int) throws -> SecretBytes {
        let secret = try withUnsafeData(atIndex: index) { data in data.map { SecretBytes(copying: $0) } }
        guard let secret else { throw PeerError("a stored key is missing from the state database") }
        return secret
    }
}
