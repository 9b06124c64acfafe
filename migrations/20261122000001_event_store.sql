-- The event store: one append-only table, its tamper-evidence seals, consumer checkpoints and
-- the vault's data keys. Never edit this file once applied; add a new migration instead.

CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction's id. Readers go in (transaction_id, global_position) order and
    -- only below the oldest running transaction, so a slow commit is never skipped.
    transaction_id  bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id        uuid        PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_type     text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    schema_version  smallint    NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE UNIQUE INDEX events_read_order ON events (transaction_id, global_position);

CREATE FUNCTION unity_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION unity_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION unity_append_only();

-- A wake-up hint for readers in other processes; delivered at commit, one per transaction.
CREATE FUNCTION unity_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('unity_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION unity_events_notify();

-- Seals: each records the head (version, hash) of every stream changed since the previous seal,
-- and chains to it, so removing the newest events of a stream or a whole stream is detected.
CREATE TABLE seals (
    seal_number             bigint      PRIMARY KEY CHECK (seal_number > 0),
    sealed_at               timestamptz NOT NULL,
    through_transaction_id  bigint      NOT NULL,
    through_position        bigint      NOT NULL,
    heads                   jsonb       NOT NULL,
    prev_hash               bytea       NOT NULL,
    hash                    bytea       NOT NULL
);
CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION unity_append_only();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION unity_append_only();

-- The application's own role (the table owner) loses these privileges too.
REVOKE UPDATE, DELETE, TRUNCATE ON events, seals FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON events, seals FROM CURRENT_USER;

-- Where each consumer of the log (projection, reactor, NATS relay) has got to.
CREATE TABLE checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  bigint      NOT NULL DEFAULT 0,
    global_position bigint      NOT NULL DEFAULT 0,
    events_handled  bigint      NOT NULL DEFAULT 0,
    -- 'running' or 'stopped' (a poison event); error_* say why.
    state           text        NOT NULL DEFAULT 'running',
    error           text,
    error_event_id  uuid,
    error_at        timestamptz,
    -- A projection whose table layout changed is rebuilt when this differs from its code.
    model_version   integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The vault's data keys, each wrapped by the master key (which never enters the database).
-- Mutable on purpose: shredding a secret deletes its key, leaving ciphertext nobody can open.
CREATE TABLE vault_keys (
    secret_id   uuid        PRIMARY KEY,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- One row encrypted under the master key, to tell a wrong key file from a damaged secret.
CREATE TABLE vault_master_check (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
