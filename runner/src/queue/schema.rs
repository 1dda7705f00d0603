//! Versioned migrations of the queue's schema. `schema_version` holds the
//! number of migrations applied; a released migration is never edited, later
//! versions only add.

/// Each migration's SQL, run in the caller's schema (`search_path`).
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tasks, their claims, and completions that arrived without the lease.
    r#"
    CREATE TABLE tasks (
        id BIGSERIAL PRIMARY KEY,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'queued'
            CHECK (state IN ('queued', 'running', 'completed', 'failed')),
        payload JSONB NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
        lease_owner TEXT,
        lease_token UUID,
        lease_expires TIMESTAMPTZ,
        completions INTEGER NOT NULL DEFAULT 0,
        result JSONB,
        error TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        finished_at TIMESTAMPTZ
    );
    CREATE INDEX tasks_queued ON tasks (priority, id) WHERE state = 'queued';
    CREATE INDEX tasks_leased ON tasks (lease_expires) WHERE state = 'running';

    CREATE TABLE claims (
        seq BIGSERIAL PRIMARY KEY,
        task_id BIGINT NOT NULL REFERENCES tasks (id),
        attempt INTEGER NOT NULL,
        worker TEXT NOT NULL,
        token UUID NOT NULL,
        claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );

    CREATE TABLE rejected_completions (
        id BIGSERIAL PRIMARY KEY,
        task_id BIGINT NOT NULL,
        worker TEXT NOT NULL,
        token UUID NOT NULL,
        attempt INTEGER NOT NULL,
        outcome JSONB NOT NULL,
        reason TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    "#,
    // 2: the outbox, the cluster's one event sequence (see `outbox.rs`):
    // ids are handed out by `outbox_head` under its row lock, so they grow
    // by one with no gap, and commit in id order.
    r#"
    CREATE TABLE outbox (
        id BIGINT PRIMARY KEY,
        node TEXT NOT NULL,
        event TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE outbox_head (
        one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
        last_id BIGINT NOT NULL
    );
    INSERT INTO outbox_head (last_id) VALUES (0);
    "#,
    // 3: pools (a limit on how many of their tasks run at once, across
    // every worker, see `pools.rs`) and cancel requests a heartbeat sees.
    r#"
    ALTER TABLE tasks ADD COLUMN pool TEXT;
    ALTER TABLE tasks ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
    CREATE INDEX tasks_pool_running ON tasks (pool) WHERE state = 'running';
    CREATE TABLE pools (
        name TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL CHECK (max_running > 0)
    );
    "#,
    // 4: plugins for workers, by the hash of their bytes, and what each
    // run declared it may use (see `plugins.rs`).
    r#"
    CREATE TABLE plugins (
        sha256 TEXT PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
        name TEXT NOT NULL,
        size BIGINT NOT NULL CHECK (size >= 0),
        bytes BYTEA NOT NULL,
        added_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE run_plugins (
        run TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES plugins (sha256),
        PRIMARY KEY (run, sha256)
    );
    "#,
    // The output of running tasks, sent by their workers in batches while
    // they run and taken (deleted) by the coordinator as it reads it (see
    // `output.rs`); `stream` `cut` marks where a worker stopped sending.
    r#"
    CREATE TABLE task_output (
        seq BIGSERIAL PRIMARY KEY,
        task_id BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'log', 'cut')),
        chunk BYTEA NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX task_output_task ON task_output (task_id, seq);
    CREATE INDEX claims_task ON claims (task_id, seq);
    "#,
    // An agent task's second pool (`agent:<name>`, see `pools.rs`): a claim
    // needs room in both; `queue_limit` counts the queued tasks of it. What
    // each run's agent tasks spent (see `spent.rs`).
    r#"
    CREATE TABLE run_spent (
        run TEXT PRIMARY KEY,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        tokens BIGINT NOT NULL DEFAULT 0
    );
    ALTER TABLE tasks ADD COLUMN second_pool TEXT;
    CREATE INDEX tasks_second_pool_running ON tasks (second_pool) WHERE state = 'running';
    CREATE INDEX tasks_second_pool_queued ON tasks (second_pool) WHERE state = 'queued';
    "#,
    // An agent task's events (`event`: one event's JSON, see `output.rs`).
    r#"
    ALTER TABLE task_output DROP CONSTRAINT task_output_stream_check;
    ALTER TABLE task_output ADD CONSTRAINT task_output_stream_check
        CHECK (stream IN ('stdout', 'stderr', 'log', 'cut', 'event'));
    "#,
];
