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
        /// Held (per transaction) while an integration is saved.
        case auditIntegration = 0x6572_7261_6e64_0004
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
        // Storing an envelope in one round trip: the checks, the insert, the usage, the audit
        // leaf and the cross-node notification, under the mailbox's row lock, in one statement
        // (so one implicit transaction) instead of eleven.
        ("v2: store_envelope function", [
            """
            CREATE FUNCTION errand_store_envelope(
                p_mailbox bytea, p_token bytea, p_id bytea, p_body bytea, p_digest bytea,
                p_stored_at bigint, p_expires_at bigint, p_max_count bigint, p_max_bytes bigint, p_leaf bytea)
            RETURNS TABLE (result_outcome text, result_seq bigint) LANGUAGE plpgsql AS $$
            DECLARE
                v_count bigint;
                v_bytes bigint;
                v_seq bigint;
            BEGIN
                SELECT envelope_count, envelope_bytes INTO v_count, v_bytes FROM mailbox WHERE id = p_mailbox FOR UPDATE;
                IF NOT FOUND THEN RETURN QUERY SELECT 'forbidden'::text, 0::bigint; RETURN; END IF;
                PERFORM 1 FROM send_token WHERE mailbox = p_mailbox AND hash = p_token FOR KEY SHARE;
                IF NOT FOUND THEN RETURN QUERY SELECT 'forbidden'::text, 0::bigint; RETURN; END IF;
                SELECT e.seq INTO v_seq FROM envelope e WHERE e.mailbox = p_mailbox AND e.envelope_id = p_id;
                IF FOUND THEN RETURN QUERY SELECT 'duplicate'::text, v_seq; RETURN; END IF;
                IF v_count + 1 > p_max_count THEN RETURN QUERY SELECT 'quota_envelopes'::text, 0::bigint; RETURN; END IF;
                IF v_bytes + length(p_body) > p_max_bytes THEN RETURN QUERY SELECT 'quota_bytes'::text, 0::bigint; RETURN; END IF;
                INSERT INTO envelope (mailbox, envelope_id, body, digest, stored_at, expires_at)
                    VALUES (p_mailbox, p_id, p_body, p_digest, p_stored_at, p_expires_at) RETURNING envelope.seq INTO v_seq;
                UPDATE mailbox SET envelope_count = envelope_count + 1, envelope_bytes = envelope_bytes + length(p_body)
                    WHERE id = p_mailbox;
                IF p_leaf IS NOT NULL THEN INSERT INTO audit_pending (leaf) VALUES (p_leaf); END IF;
                PERFORM pg_notify('\(arrivalChannel)', encode(p_mailbox, 'hex'));
                RETURN QUERY SELECT 'stored'::text, v_seq;
            END
            $$
            """,
        ]),
        // A batch of envelopes in one round trip (and one implicit transaction): every mailbox
        // of the batch locked first, in one order, then each item through errand_store_envelope;
        // after a refusal for a mailbox, its later items are 'not_attempted'.
        ("v3: store_envelopes function", [
            """
            CREATE FUNCTION errand_store_envelopes(
                p_mailboxes bytea[], p_tokens bytea[], p_ids bytea[], p_bodies bytea[], p_digests bytea[],
                p_stored_at bigint[], p_expires_at bigint[], p_max_count bigint, p_max_bytes bigint, p_leaves bytea[])
            RETURNS TABLE (result_index integer, result_outcome text, result_seq bigint) LANGUAGE plpgsql AS $$
            DECLARE
                v_refused bytea[] := '{}';
                v_outcome text;
                v_seq bigint;
            BEGIN
                PERFORM 1 FROM mailbox WHERE id = ANY(p_mailboxes) ORDER BY id FOR UPDATE;
                FOR i IN 1 .. coalesce(array_length(p_mailboxes, 1), 0) LOOP
                    IF p_mailboxes[i] = ANY(v_refused) THEN
                        RETURN QUERY SELECT i, 'not_attempted'::text, 0::bigint;
                        CONTINUE;
                    END IF;
                    SELECT s.result_outcome, s.result_seq INTO v_outcome, v_seq FROM errand_store_envelope(
                        p_mailboxes[i], p_tokens[i], p_ids[i], p_bodies[i], p_digests[i], p_stored_at[i], p_expires_at[i],
                        p_max_count, p_max_bytes, p_leaves[i]) s;
                    IF v_outcome NOT IN ('stored', 'duplicate') THEN v_refused := v_refused || p_mailboxes[i]; END IF;
                    RETURN QUERY SELECT i, v_outcome, v_seq;
                END LOOP;
            END
            $$
            """,
        ]),
        ("v4: doorbells", [
            """
            CREATE TABLE doorbell (
                mailbox bytea NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,
                id bytea NOT NULL,
                kind text NOT NULL,
                url text NOT NULL,
                p256dh bytea,
                auth bytea,
                created_at bigint NOT NULL,
                PRIMARY KEY (mailbox, id)
            )
            """,
        ]),
        ("v5: pairing receipts", [
            "ALTER TABLE pairing_slot ADD COLUMN receipt bytea",
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
