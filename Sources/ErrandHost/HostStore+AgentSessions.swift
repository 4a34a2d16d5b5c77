import GRDB

extension HostStore {
    /// The conversation agent tasks continue (1 until a task starts a new one).
    public func conversation() throws -> Int64 {
        try queue.read { db in try Int64.fetchOne(db, sql: "SELECT conversation FROM host_settings WHERE id = 1") ?? 1 }
    }

    /// Starts a new conversation and returns its number: the agent forgets the earlier tasks.
    @discardableResult
    public func beginConversation() throws -> Int64 {
        try queue.write { db in
            try db.execute(sql: "UPDATE host_settings SET conversation = conversation + 1 WHERE id = 1")
            return try Int64.fetchOne(db, sql: "SELECT conversation FROM host_settings WHERE id = 1") ?? 1
        }
    }

    /// The session `adapter`'s agent named in `conversation`, to resume; nil before its first run.
    func agentSession(conversation: Int64, adapter: AgentAdapterKind) throws -> String? {
        try queue.read { db in
            try String.fetchOne(db, sql: "SELECT session FROM agent_session WHERE conversation = ? AND adapter = ?",
                                arguments: [conversation, adapter.rawValue])
        }
    }

    /// Keeps the session the agent named (the latest, should a resumed run name another).
    func recordAgentSession(_ session: String, conversation: Int64, adapter: AgentAdapterKind) throws {
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO agent_session (conversation, adapter, session) VALUES (?, ?, ?)
                ON CONFLICT (conversation, adapter) DO UPDATE SET session = excluded.session
                """, arguments: [conversation, adapter.rawValue, session])
        }
    }
}
