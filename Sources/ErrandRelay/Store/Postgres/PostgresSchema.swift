import Logging
import PostgresNIO

/// The PostgreSQL store's named, append-only migrations. Several nodes may start at once: each
/// applies what is missing inside one transaction that holds an advisory lock, so exactly one
/// of them migrates and the others find the work done.
enum PostgresSchema {
    /// Advisory-lock keys (one 64-bit space per database): "errand" in ASCII, then a purpose.
    enum LockKey: Int64 {
        case migration = 0x6572_7261_6e64_0001
        case auditSequencer = 0x6572_7261_6e64_0002
        case expiry = 0x6572_7261_6e64_0003
    }

    /// The channel that carries "an envelope arrived for mailbox X" between nodes.
    static let arrivalChannel = "errand_envelope_arrived"

    static let migrations: [(name: String, sql: [String])] = [
        ("v1: mailboxes, envelopes, tokens, slots, audit log, shared limits", [
            """
            CREATE TABLE invite (
                hash bytea PRIMARY KEY,
                expires_at bigint NOT NULL
            )
            """,
            """
            CREATE TABLE mailbox (
                id bytea PRIMARY KEY,
                owner_key bytea NOT NULL,
                sponsor bytea,
                created_at bigint NOT NULL,
                envelope_count bigint NOT NULL DEFAULT 0,
                envelope_bytes bigint NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX mailbox_by_sponsor ON mailbox (sponsor) WHERE sponsor IS NOT NULL",
            """
            CREATE TABLE send_token (
                mailbox bytea NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                hash bytea NOT NULL,
                created_at bigint NOT NULL,
                PRIMARY KEY (mailbox, hash)
            )
            """,
            """
            CREATE TABLE envelope (
                seq bigserial PRIMARY KEY,
                mailbox bytea NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                envelope_id bytea NOT NULL,
                body bytea NOT NULL,
                digest bytea NOT NULL,
                stored_at bigint NOT NULL,
                expires_at bigint NOT NULL,
                UNIQUE (mailbox, envelope_id)
            )
            """,
            "CREATE INDEX envelope_by_mailbox ON envelope (mailbox, seq)",
            "CREATE INDEX envelope_by_expiry ON envelope (expires_at)",
            """
            CREATE TABLE request_nonce (
                signer bytea NOT NULL,
                nonce text NOT NULL,
                expires_at bigint NOT NULL,
                PRIMARY KEY (signer, nonce)
            )
            """,
            "CREATE INDEX request_nonce_by_expiry ON request_nonce (expires_at)",
            """
            CREATE TABLE pairing_slot (
                id bytea PRIMARY KEY,
                owner bytea NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                expires_at bigint NOT NULL,
                request bytea,
                claim bytea,
                reply bytea
            )
            """,
            // Leaves wait here (in commit order of their id, gaps allowed) until the sequencer
            // gives them dense indices in audit_leaf.
            """
            CREATE TABLE audit_pending (
                id bigserial PRIMARY KEY,
                leaf bytea NOT NULL
            )
            """,
            """
            CREATE TABLE audit_leaf (
                idx bigint PRIMARY KEY,
                leaf bytea NOT NULL
            )
            """,
            """
            CREATE TABLE audit_node (
                level integer NOT NULL,
                idx bigint NOT NULL,
                hash bytea NOT NULL,
                PRIMARY KEY (level, idx)
            )
            """,
            "CREATE INDEX audit_leaf_hash ON audit_node (hash) WHERE level = 0",
            """
            CREATE TABLE audit_checkpoint (
                size bigint PRIMARY KEY,
                note text NOT NULL
            )
            """,
            // Token buckets shared by every node. Unlogged: a crash of the database forgets
            // them, which only refills everyone's allowance.
            """
            CREATE UNLOGGED TABLE rate_bucket (
                key bytea PRIMARY KEY,
                tokens double precision NOT NULL,
                updated double precision NOT NULL,
                allowed boolean NOT NULL
            )
            """,
            // Facts every node must agree on (the audit log's verifier key).
            """
            CREATE TABLE relay_setting (
                name text PRIMARY KEY,
                value text NOT NULL
            )
            """,
        ]),
    ]

    /// Applies the migrations that are missing.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(LockKey.migration.rawValue))", logger: logger)
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS errand_migration (
                    name text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM errand_migration", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO errand_migration (name) VALUES (\(migration.name))", logger: logger)
            }
        }
    }
}
