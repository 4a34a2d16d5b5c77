import ErrandCrypto
import ErrandPeer
public import ErrandProtocol
import Foundation
import GRDB

/// A task as the host keeps it.
public struct TaskRecord: Sendable, Equatable {
    public let position: Int64
    public let id: String
    public let deviceID: Int64
    public let deviceName: String
    public let request: TaskRequest
    public let status: TaskStatus
    public let exitCode: Int32?
    public let output: [UInt8]
    public let truncated: Bool
    public let reason: String?
    public let createdAt: Int64
    public let startedAt: Int64?
    public let finishedAt: Int64?
}

/// One line of the local execution audit (`errand host log`): kept only on the host.
public struct ExecutionLogEntry: Sendable, Equatable {
    public let at: Int64
    public let device: String
    public let task: String
    public let executor: String
    public let what: String
    public let status: String
    public let exitCode: Int32?
    public let outputBytes: Int
    public let outputDigest: String
}

/// A device's policy: which executors and which actions it may use, and whether it may answer
/// an agent's approval requests.
public struct DevicePolicy: Sendable, Equatable {
    public var executors: Set<Executor>
    /// Allowed action names; nil means every action.
    public var actions: Set<String>?
    public var mayApprove = true

    public func allows(_ request: TaskRequest) -> Bool {
        guard executors.contains(request.executor) else { return false }
        if request.executor == .action, let actions {
            return actions.contains(request.action ?? "")
        }
        return true
    }

    /// `agent,action` and `*` or `a,b` as stored.
    init(executors text: String, actions: String, mayApprove: Bool = true) {
        self.executors = Set(text.split(separator: ",").compactMap { Executor(rawValue: String($0)) })
        self.actions = actions == "*" ? nil : Set(actions.split(separator: ",").map(String.init))
        self.mayApprove = mayApprove
    }

    public init(executors: Set<Executor>, actions: Set<String>?, mayApprove: Bool = true) {
        self.executors = executors
        self.actions = actions
        self.mayApprove = mayApprove
    }

    var executorsText: String { Executor.allCases.filter { executors.contains($0) }.map(\.rawValue).joined(separator: ",") }
    var actionsText: String { actions.map { $0.sorted().joined(separator: ",") } ?? "*" }
}

extension HostStore {
    static let taskColumns = """
        t.position, t.id, t.device_id, d.name, t.request, t.status, t.exit_code, t.output, t.truncated, t.reason,
        t.created_at, t.started_at, t.finished_at
        """

    static func task(_ row: Row) throws -> TaskRecord {
        let request = try JSONDecoder().decode(TaskRequest.self, from: Data((row[4] as String).utf8))
        return TaskRecord(position: row[0], id: row[1], deviceID: row[2], deviceName: row[3], request: request,
                          status: TaskStatus(rawValue: row[5]) ?? .failed, exitCode: row[6], output: [UInt8](row[7] as Data),
                          truncated: row[8], reason: row[9], createdAt: row[10], startedAt: row[11], finishedAt: row[12])
    }

    static func insertTask(_ db: Database, _ request: TaskRequest, device: Int64, status: TaskStatus, reason: String?, at time: Int64) throws -> Bool {
        let json = String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
        try db.execute(sql: """
            INSERT OR IGNORE INTO task (id, device_id, request, status, reason, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [request.task, device, json, status.rawValue, reason, time, status.isFinal ? time : nil])
        return db.changesCount == 1
    }

    /// The task with this id.
    public func task(_ id: String) throws -> TaskRecord? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.id = ?", arguments: [id]).map(Self.task)
        }
    }

    /// Tasks waiting to run, oldest first.
    public func queuedTasks() throws -> [TaskRecord] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.status = 'queued' ORDER BY t.position")
                .map(Self.task)
        }
    }

    /// Moves a queued task to running; false when it is no longer queued (cancelled meanwhile).
    public func start(_ id: String, at time: Int64) throws -> Bool {
        try queue.write { db in
            try db.execute(sql: """
                UPDATE task SET status = 'running', started_at = ?
                WHERE id = ? AND status = 'queued' AND device_id IN (SELECT id FROM device WHERE revoked_at IS NULL)
                """, arguments: [time, id])
            return db.changesCount == 1
        }
    }

    /// A running task's main process as it was started: its pid (also its process group's id)
    /// and start time (see ``TaskLeftovers/startTime(of:)``), so a later host can end it.
    public func recordProcess(of id: String, pid: Int32, start: UInt64?) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE task SET process_id = ?, process_start = ? WHERE id = ? AND status = 'running'",
                           arguments: [pid, start.map { Int64(bitPattern: $0) }, id])
        }
    }

    /// Tasks recorded as running, with their main process as recorded (nil when none was).
    public func runningProcesses() throws -> [(id: String, processID: Int32?, processStart: UInt64?)] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, process_id, process_start FROM task WHERE status = 'running'").map { row in
                (id: row[0], processID: row[1], processStart: (row[2] as Int64?).map { UInt64(bitPattern: $0) })
            }
        }
    }

    /// Cancels a task that has not started; false when it is running or finished.
    public func cancelQueued(_ id: String, at time: Int64) throws -> Bool {
        try queue.write { db in
            try db.execute(sql: "UPDATE task SET status = 'cancelled', finished_at = ?, reason = 'cancelled before it started' WHERE id = ? AND status = 'queued'",
                           arguments: [time, id])
            return db.changesCount == 1
        }
    }

    /// Records how a task ended, appends it to the execution log and, when `event` is given,
    /// seals it for the task's device into the outbox — all in one transaction.
    public func finishAndNotify(_ id: String, status: TaskStatus, exitCode: Int32?, output: [UInt8], truncated: Bool, reason: String?,
                                at time: Int64, event: [UInt8]?) throws {
        try queue.write { db in
            try db.execute(sql: """
                UPDATE task SET status = ?, exit_code = ?, output = ?, truncated = ?, reason = ?, finished_at = ? WHERE id = ?
                """, arguments: [status.rawValue, exitCode, Data(output), truncated, reason, time, id])
            guard let row = try Row.fetchOne(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.id = ?", arguments: [id]) else { return }
            let task = try Self.task(row)
            try Self.log(db, task, at: time)
            // A task's end is urgent: it rings the device's doorbells when nobody is connected.
            if let event { _ = try Self.sealAndEnqueue(db, event, to: task.deviceID, at: time, urgent: true) }
        }
    }

    static func log(_ db: Database, _ task: TaskRecord, at time: Int64) throws {
        try db.execute(sql: """
            INSERT INTO execution_log (at, device, task, executor, what, status, exit_code, output_bytes, output_digest)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [time, task.deviceName, task.id, task.request.executor.rawValue, task.request.summary, task.status.rawValue,
                             task.exitCode, task.output.count, ByteEncoding.hex(SHA256.hash(task.output))])
    }

    /// Tasks that were running when the host stopped become `interrupted` (and are logged).
    public func interruptRunning(at time: Int64) throws -> [TaskRecord] {
        try queue.write { db in
            let running = try Row.fetchAll(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.status = 'running'")
                .map(Self.task)
            try db.execute(sql: "UPDATE task SET status = 'interrupted', finished_at = ?, reason = 'the host stopped while it ran' WHERE status = 'running'",
                           arguments: [time])
            var interrupted: [TaskRecord] = []
            for task in running {
                let row = try Row.fetchOne(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.id = ?", arguments: [task.id])!
                let updated = try Self.task(row)
                try Self.log(db, updated, at: time)
                interrupted.append(updated)
            }
            return interrupted
        }
    }

    /// The conversation after `position`, oldest first.
    public func conversation(after position: Int64 = 0, limit: Int = 1000) throws -> [TaskRecord] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.taskColumns) FROM task t JOIN device d ON d.id = t.device_id WHERE t.position > ? ORDER BY t.position LIMIT ?",
                             arguments: [position, limit]).map(Self.task)
        }
    }

    /// The conversation as devices read it: the first `outputLimit` bytes of output and of the
    /// task text, without loading whole outputs.
    public func conversationSummaries(after position: Int64, limit: Int, outputLimit: Int) throws -> [ConversationEntry] {
        try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.position, t.id, d.name, t.request, t.status, t.exit_code, COALESCE(substr(t.output, 1, ?), x''), length(t.output), t.truncated,
                       t.created_at, t.finished_at
                FROM task t JOIN device d ON d.id = t.device_id WHERE t.position > ? ORDER BY t.position LIMIT ?
                """, arguments: [outputLimit, position, limit]).map { row in
                var request = try JSONDecoder().decode(TaskRequest.self, from: Data((row[3] as String).utf8))
                if let text = request.text, text.utf8.count > outputLimit {
                    request = request.with(text: String(decoding: text.utf8.prefix(outputLimit), as: UTF8.self) + "…", arguments: request.arguments)
                }
                let output: Data = row[6] ?? Data()
                let fullLength: Int = row[7] ?? 0
                return ConversationEntry(position: row[0], task: row[1], device: row[2], request: request,
                                         status: TaskStatus(rawValue: row[4]) ?? .failed, exitCode: row[5],
                                         output: String(decoding: output, as: UTF8.self), truncated: row[8] || fullLength > outputLimit,
                                         createdAt: row[9], finishedAt: row[10])
            }
        }
    }

    /// The local execution audit, oldest first.
    public func executionLog() throws -> [ExecutionLogEntry] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT at, device, task, executor, what, status, exit_code, output_bytes, output_digest FROM execution_log ORDER BY id").map {
                ExecutionLogEntry(at: $0[0], device: $0[1], task: $0[2], executor: $0[3], what: $0[4], status: $0[5], exitCode: $0[6],
                                  outputBytes: $0[7], outputDigest: $0[8])
            }
        }
    }

    // MARK: Policy

    public func policy(of device: Int64) throws -> DevicePolicy {
        try queue.read { db in
            try Self.policy(db, of: device)
        }
    }

    static func policy(_ db: Database, of device: Int64) throws -> DevicePolicy {
        guard let row = try Row.fetchOne(db, sql: "SELECT policy, actions, approve FROM device WHERE id = ?", arguments: [device]) else {
            return DevicePolicy(executors: [], actions: [], mayApprove: false)
        }
        return DevicePolicy(executors: row[0], actions: row[1], mayApprove: row[2])
    }

    public func setPolicy(_ policy: DevicePolicy, of device: Int64) throws {
        try queue.write { db in
            try db.execute(sql: "UPDATE device SET policy = ?, actions = ?, approve = ? WHERE id = ?",
                           arguments: [policy.executorsText, policy.actionsText, policy.mayApprove, device])
        }
    }

    // MARK: Outbox (host → device)

    /// Seals `payload` for a device and queues it, reading and saving the session in one write
    /// transaction. Returns nil when the device has no session (revoked).
    public func sealAndEnqueue(_ payload: [UInt8], to device: Int64, at time: Int64, urgent: Bool = false) throws -> Envelope? {
        try queue.write { db in try Self.sealAndEnqueue(db, payload, to: device, at: time, urgent: urgent) }
    }

    static func sealAndEnqueue(_ db: Database, _ payload: [UInt8], to device: Int64, at time: Int64, urgent: Bool = false) throws -> Envelope? {
        guard let candidate = try Self.activeSessions(db).first(where: { $0.device.id == device }) else { return nil }
        var session = candidate.session
        let envelope = try session.seal(payload)
        try session.ratchet.serialized.withWipedData { state in
            try db.execute(sql: "UPDATE session SET ratchet = ? WHERE device_id = ?", arguments: [state, device])
        }
        try db.execute(sql: "INSERT INTO outbox (envelope_id, device_id, envelope, created_at, urgent) VALUES (?, ?, ?, ?, ?)",
                       arguments: [Data(envelope.id.bytes), device, Data(envelope.encoded), time, urgent])
        return envelope
    }

    /// What waits to be posted: envelope, recipient mailbox and token, whether it is urgent, oldest first.
    public func pendingOutbox() throws -> [(envelope: Envelope, device: Int64, mailbox: MailboxID, token: SendToken, urgent: Bool)] {
        try queue.read { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT o.envelope, o.device_id, d.signing_key, d.outbound_token, o.urgent FROM outbox o JOIN device d ON d.id = o.device_id
                WHERE d.revoked_at IS NULL AND d.outbound_token IS NOT NULL ORDER BY o.rowid
                """)
            var pending: [(Envelope, Int64, MailboxID, SendToken, Bool)] = []
            while let row = try rows.next() {
                let key = try Ed25519.PublicKey(bytes: [UInt8](row[2] as Data))
                pending.append((try Envelope(parsing: [UInt8](row[0] as Data)), row[1], MailboxID(owner: key), try SendToken(secret: row.secret(at: 3)),
                                row[4]))
            }
            return pending
        }
    }

    /// Removes a posted envelope from the outbox.
    public func sent(_ id: EnvelopeID) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM outbox WHERE envelope_id = ?", arguments: [Data(id.bytes)]) }
    }
}
