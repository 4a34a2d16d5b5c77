import ErrandPeer
import Foundation

/// Keeps a second `errand host run` off the same state folder (an advisory `flock` on
/// `host.lock`, released when the process ends, however it ends).
struct HostLock {
    private let descriptor: Int32

    init(directory: StateDirectory) throws(PeerError) {
        let path = directory.file("host.lock")
        descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw PeerError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw PeerError("another 'errand host run' is already running on \(directory.path)",
                            hint: "stop it first (or, if it is a service, use the service manager)")
        }
    }

    func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
