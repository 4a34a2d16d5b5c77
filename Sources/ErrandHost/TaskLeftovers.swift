import CProcessControl
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a task's processes leave running, found and ended.
///
/// Every process of a task carries `ERRAND_TASK=<id>` in its environment (the host sets it and
/// children inherit it), so a child that left the task's process group (`setsid`) or detached
/// (`cmd </dev/null >/dev/null 2>&1 &`) is still found — on Linux, by reading `/proc`. There the
/// host is also the subreaper of its descendants, so such a child, once orphaned, becomes the
/// host's child and its exit is reaped here. On macOS only the task's process group is ended:
/// a child that called `setsid` escapes it (docs/host.md says so).
enum TaskLeftovers {
    /// Main processes of running tasks: their own waiters reap them, the orphan sweep must not.
    private static let waited = Mutex<Set<pid_t>>([])

    /// Makes this process the reaper of its orphaned descendants (Linux). False where it cannot.
    @discardableResult
    static func becomeSubreaper() -> Bool { errand_become_subreaper() == 0 }

    /// Starts a task's main process and counts it as waited for, both while the orphan sweep
    /// cannot run: a child that exits at once must not be reaped by the sweep before its waiter.
    static func spawn(_ start: () throws -> ChildProcess) throws -> ChildProcess {
        try waited.withLock { waited in
            let child = try start()
            waited.insert(child.pid)
            return child
        }
    }

    static func reaped(_ pid: pid_t) { _ = waited.withLock { $0.remove(pid) } }

    /// Every other process whose environment holds `ERRAND_TASK=<task>` (empty where `/proc` is not).
    static func processes(of task: String) -> [pid_t] {
        let marker = Array("ERRAND_TASK=\(task)".utf8)
        let me = getpid()
        return processIDs().filter { pid in
            guard pid != me, let environment = contents(of: "/proc/\(pid)/environ") else { return false }
            return environment.split(separator: 0).contains { $0.elementsEqual(marker) }
        }
    }

    /// Ends whatever the task left running: SIGKILL to its process group (`group`, while its
    /// leader's pid is still held, or nil) and to every process tagged with the task, until none
    /// is left (a few rounds: a process may fork while it is being ended), then reaps them.
    static func end(task: String, group: pid_t?) {
        if let group { kill(-group, SIGKILL) }
        var ended: Set<pid_t> = []
        for _ in 0..<20 {
            let left = processes(of: task).filter { !isZombie($0) }
            if left.isEmpty { break }
            for pid in left { kill(pid, SIGKILL) }
            ended.formUnion(left)
            usleep(10_000)
        }
        // The ones that were re-parented to this process are its children now: reap them.
        let deadline = Date().addingTimeInterval(1)
        var unreaped = ended
        while !unreaped.isEmpty && Date() < deadline {
            for pid in unreaped {
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result == -1 && errno == ECHILD) { unreaped.remove(pid) }
            }
            if !unreaped.isEmpty { usleep(10_000) }
        }
    }

    /// Reaps this process's children that have exited and that no task waits for: orphans of
    /// tasks, re-parented here, that ended on their own.
    static func reapOrphans() {
        let me = getpid()
        waited.withLock { waited in
            for pid in processIDs() where !waited.contains(pid) {
                guard let stat = stat(of: pid), stat.parent == me, stat.state == "Z" else { continue }
                var status: Int32 = 0
                _ = waitpid(pid, &status, WNOHANG)
            }
        }
    }

    /// When the process started (clock ticks since boot, `/proc/PID/stat` field 22): with the pid,
    /// what tells a task's process from a later one that got the same pid. Nil where unknown.
    static func startTime(of pid: pid_t) -> UInt64? { stat(of: pid)?.start }

    /// Ends the processes of a task recorded as running by a host that did not stop cleanly
    /// (killed, or the machine crashed): its group when its main process is still the recorded
    /// one, and everything tagged with the task.
    static func endAbandoned(task: String, pid: pid_t?, start: UInt64?) {
        var group: pid_t? = nil
        if let pid, let start, startTime(of: pid) == start { group = pid }
        end(task: task, group: group)
    }

    // MARK: /proc

    private static func isZombie(_ pid: pid_t) -> Bool { stat(of: pid)?.state == "Z" }

    private static func processIDs() -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { pid_t($0) }
    }

    private struct Stat {
        let state: Character
        let parent: pid_t
        let start: UInt64
    }

    /// Fields of `/proc/PID/stat` (after the command name, which is in parentheses and may hold
    /// spaces: everything up to its last ')').
    private static func stat(of pid: pid_t) -> Stat? {
        guard let bytes = contents(of: "/proc/\(pid)/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        // fields[0] is field 3 (state), fields[1] field 4 (parent), fields[19] field 22 (start time).
        guard fields.count > 19, let state = fields[0].first, let parent = pid_t(fields[1]), let start = UInt64(fields[19]) else { return nil }
        return Stat(state: state, parent: parent, start: start)
    }

    /// A whole small file read with read(2) (files in /proc report no size).
    private static func contents(of path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return bytes
    }
}
