import CProcessControl
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn` in a process group of its own, with standard
/// output and error merged into one pipe. Unlike Foundation's `Process`, its end is seen as soon
/// as the child itself exits (children it left behind may still hold the pipe), and signals the
/// host ignores (SIGPIPE) are reset to their defaults in the child.
struct ChildProcess {
    let pid: pid_t
    /// Read end of the merged output.
    let output: FileHandle
    /// Write end of standard input.
    let input: FileHandle

    init(executable: String, arguments: [String], environment: [String: String], workingDirectory: String) throws {
        var outputPipe: [Int32] = [0, 0]
        var inputPipe: [Int32] = [0, 0]
        guard pipe(&outputPipe) == 0, pipe(&inputPipe) == 0 else { throw ChildProcessError("cannot create pipes: \(String(cString: strerror(errno)))") }

        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t?
        var attributes: posix_spawnattr_t?
        #else
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
        for descriptor in [inputPipe[0], inputPipe[1], outputPipe[0], outputPipe[1]] {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
        // Nothing else of the host's reaches the task: not its relay connections, not its
        // database, not a descriptor it inherited (one a parent watches for its exit, say).
        #if os(Linux)
        let closing = errand_spawn_close_from(&actions, 3)
        guard closing == 0 else {
            for descriptor in [inputPipe[0], inputPipe[1], outputPipe[0], outputPipe[1]] { close(descriptor) }
            throw ChildProcessError("cannot keep the host's files from the task: \(String(cString: strerror(closing)))")
        }
        #endif

        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        #if canImport(Darwin)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_CLOEXEC_DEFAULT))
        #else
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        #endif

        // posix_spawn has no portable "change directory" action: a shell changes it and then
        // replaces itself with the program (same pid, same process group).
        let trampoline = ["/bin/sh", "-c", "cd -- \"$1\" || exit 126; shift; exec \"$@\"", "errand-task", workingDirectory, executable]
        let argv = (trampoline + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawn(&child, "/bin/sh", &actions, &attributes, argv, envp)
        close(inputPipe[0])
        close(outputPipe[1])
        guard status == 0 else {
            close(inputPipe[1])
            close(outputPipe[0])
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(status)))")
        }
        // Our ends must not leak into later children.
        _ = fcntl(inputPipe[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(outputPipe[0], F_SETFD, FD_CLOEXEC)
        pid = child
        output = FileHandle(fileDescriptor: outputPipe[0], closeOnDealloc: true)
        input = FileHandle(fileDescriptor: inputPipe[1], closeOnDealloc: true)
    }

    /// How the child ended.
    enum Termination {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Blocks until the child (not its group) has exited, without reaping it: until ``wait()``,
    /// its pid, and so its process group's id, cannot be given to another process.
    func waitForExit() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
    }

    /// Blocks until the child (not its group) ends, and reaps it.
    func wait() -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros in C).
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signalled(signal)
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
