import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import Synchronization

/// Closes the connections whose request body has not fully arrived by its deadline, and those
/// whose request was answered before its body was read to the end.
///
/// One check a second for all of them (running only while some body is being read), instead of
/// a timer task per request. A connection's idle timer is not enough on its own: Hummingbird
/// does not run it while an earlier request of the same connection is still being answered, and
/// a body that trickles in resets it with every byte.
final class BodyDeadlines: Sendable {
    /// A watched body, to hand back to ``release(_:)`` or ``closeSoon(_:)``.
    struct Watch: Sendable {
        fileprivate let id: Int
    }

    private struct Entry {
        let channel: any Channel
        var deadline: ContinuousClock.Instant
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var nextID = 0
        var timer: RepeatedTask?
    }

    private let state = Mutex(State())
    private let eventLoop: any EventLoop
    private let interval: TimeAmount

    init(eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(), interval: TimeAmount = .seconds(1)) {
        self.eventLoop = eventLoop
        self.interval = interval
    }

    /// Watches the body being read on `channel`: past `deadline` the connection is closed.
    func watch(_ channel: any Channel, until deadline: ContinuousClock.Instant) -> Watch {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.entries[id] = Entry(channel: channel, deadline: deadline)
            if state.timer == nil {
                state.timer = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in self?.sweep() }
            }
            return Watch(id: id)
        }
    }

    /// The body arrived whole: nothing to do.
    func release(_ watch: Watch) {
        _ = state.withLock { $0.entries.removeValue(forKey: watch.id) }
    }

    /// The request was answered without its body read to the end: the connection is closed at
    /// the first check a second from now (its answer written by then), whatever the transport
    /// (TLS cannot close only its input).
    func closeSoon(_ watch: Watch) {
        state.withLock { $0.entries[watch.id]?.deadline = .now + .seconds(1) }
    }

    /// Whether the body is still watched (neither released nor closed yet).
    func isWatched(_ watch: Watch) -> Bool {
        state.withLock { $0.entries[watch.id] != nil }
    }

    private func sweep() {
        let now = ContinuousClock.now
        let due = state.withLock { state -> [any Channel] in
            let due = state.entries.filter { $0.value.deadline <= now }
            for id in due.keys { state.entries.removeValue(forKey: id) }
            if state.entries.isEmpty {
                state.timer?.cancel()
                state.timer = nil
            }
            return due.values.map(\.channel)
        }
        for channel in due { channel.close(promise: nil) }
    }
}

/// Gives every request that declares a body a deadline for it (`limits.idle_timeout_seconds`),
/// whatever the route does: a body not read to its end by then (a slow sender) has its
/// connection closed. A request answered before its body was read to the end (a refusal ahead
/// of the body, or a route that does not read it) is answered with `Connection: close` and loses
/// its connection a moment later, so the rest is never read. The first of the router's
/// middlewares, so the others' refusals are covered too.
struct BodyDeadlineMiddleware: RouterMiddleware {
    let core: RelayCore

    func handle(_ request: Request, context: RelayRequestContext,
                next: (Request, RelayRequestContext) async throws -> Response) async throws -> Response {
        let declaresBody = request.headers[.transferEncoding] != nil || (request.headers[.contentLength].flatMap { Int($0) } ?? 0) > 0
        guard declaresBody else { return try await next(request, context) }
        let deadlines = core.bodyDeadlines
        let deadline = ContinuousClock.now + .seconds(core.configuration.idleTimeoutSeconds)
        let watch = deadlines.watch(context.channel, until: deadline)
        var context = context
        context.bodyDeadline = (watch, deadline)
        do {
            var response = try await next(request, context)
            if deadlines.isWatched(watch) {
                deadlines.closeSoon(watch)
                response.headers[.connection] = "close"
            }
            return response
        } catch var refusal as RelayError {
            if deadlines.isWatched(watch) {
                deadlines.closeSoon(watch)
                refusal.closesConnection = true
            }
            throw refusal
        } catch {
            if deadlines.isWatched(watch) { deadlines.closeSoon(watch) }
            throw error
        }
    }
}
