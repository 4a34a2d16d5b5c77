import Foundation
import Synchronization

/// Keeps the computer awake while tasks run: a sleeping computer is the first way a task sent
/// from the phone fails. macOS: `caffeinate -i -w HOST_PID` (it also ends with the host). Linux:
/// `systemd-inhibit --what=sleep:idle --mode=block`, holding a command that waits on a pipe from
/// the host, so the lock goes with the host even when the host is killed. Where neither exists
/// (or the inhibitor ends at once: no logind), the host says so once and tasks run anyway.
final class SleepInhibitor: Sendable {
    private struct State {
        var holders = 0
        var process: ChildProcess?
        var warned = false
    }

    private let state = Mutex(State())
    private let path: String
    private let log: @Sendable (String) -> Void

    /// - Parameter path: where to look for the inhibitor (the PATH tasks get).
    init(path: String, log: @escaping @Sendable (String) -> Void) {
        self.path = path
        self.log = log
    }

    /// One more task runs; the first starts the inhibitor.
    func hold() {
        let (started, warning): (ChildProcess?, String?) = state.withLock { state in
            state.holders += 1
            guard state.holders == 1 else { return (nil, nil) }
            do {
                let process = try startInhibitor()
                state.process = process
                return (process, nil)
            } catch {
                guard !state.warned else { return (nil, nil) }
                state.warned = true
                return (nil, "note: cannot keep this computer awake while tasks run (\((error as? HostSystemError)?.message ?? "\(error)")); a task may stop if it sleeps")
            }
        }
        if let warning { log(warning) }
        if let started { Thread.detachNewThread { [self] in watch(started) } }
    }

    /// One task fewer; the last lets the computer sleep again.
    func release() {
        let process: ChildProcess? = state.withLock { state in
            state.holders = max(0, state.holders - 1)
            guard state.holders == 0 else { return nil }
            defer { state.process = nil }
            return state.process
        }
        guard let process else { return }
        // Signalled while it cannot have been reaped (it exits only once signalled or its input closes).
        kill(-process.pid, SIGTERM)
        try? process.input.close()
    }

    /// Waits for the inhibitor to end and reaps it; one that ends by itself (no logind, not
    /// allowed) is reported once, with what it said.
    private func watch(_ process: ChildProcess) {
        process.waitForExit()
        let ownEnd = state.withLock { state in
            guard state.process?.pid == process.pid else { return false }
            state.process = nil
            return true
        }
        if ownEnd {
            kill(-process.pid, SIGKILL)
            let said = String(decoding: process.output.availableData.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let warning: String? = state.withLock { state in
                guard !state.warned else { return nil }
                state.warned = true
                return "note: cannot keep this computer awake while tasks run (the inhibitor ended: \(said.isEmpty ? "no reason given" : Self.oneLine(said))); a task may stop if it sleeps"
            }
            if let warning { log(warning) }
        }
        _ = process.wait()
        TaskLeftovers.reaped(process.pid)
        try? process.output.close()
    }

    private func startInhibitor() throws -> ChildProcess {
        let environment = ["PATH": path, "LANG": "C.UTF-8"]
        #if os(macOS)
        guard let caffeinate = Self.find("caffeinate", in: path) else { throw HostSystemError("caffeinate is not on the PATH") }
        return try TaskLeftovers.spawn {
            try ChildProcess(executable: caffeinate, arguments: ["-i", "-w", String(getpid())], environment: environment, workingDirectory: "/")
        }
        #else
        guard let inhibit = Self.find("systemd-inhibit", in: path) else { throw HostSystemError("systemd-inhibit is not on the PATH") }
        // `read` returns when the host's end of standard input closes: at release, or when the host dies.
        return try TaskLeftovers.spawn {
            try ChildProcess(executable: inhibit, arguments: [
                "--what=sleep:idle", "--who=Errand", "--why=A task sent from a paired device is running", "--mode=block",
                "/bin/sh", "-c", "read -r _ || true",
            ], environment: environment, workingDirectory: "/")
        }
        #endif
    }

    static func oneLine(_ text: String) -> String { text.split(whereSeparator: \.isNewline).joined(separator: " ") }

    static func find(_ name: String, in path: String) -> String? {
        path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}
