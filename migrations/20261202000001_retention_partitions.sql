-- Retention by event class (DESIGN.md §2). `events` becomes a partitioned table: one partition
-- for the permanent class, and for each expiring class one partition per bucket (a UTC day of
-- samples, a month of summaries), so removing expired events drops whole partitions instead of
-- deleting millions of rows, and the table and its indexes shrink back at once.
--
-- Every row keeps its event id, position, transaction id, version and hash; `unity audit verify`
-- passes after this migration as before it. A stream of an expiring class lives wholly in the
-- bucket its UUIDv7 id names (unity_domain::retention), so `(stream_id, stream_version)` is still
-- unique across the table even though PostgreSQL can only enforce it per partition (its unique
-- keys must include the partition key: retention_class and bucket, which the stream id decides).

ALTER TABLE events RENAME TO events_before_retention;
ALTER TABLE events_before_retention RENAME CONSTRAINT events_pkey TO events_before_retention_pkey;
ALTER TABLE events_before_retention RENAME CONSTRAINT events_stream_id_stream_version_key
    TO events_before_retention_stream_key;
ALTER INDEX events_read_order RENAME TO events_before_retention_read_order;

CREATE TABLE events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id        uuid        NOT NULL,
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
    -- 0 permanent, 1 samples, 2 summaries (unity_domain::retention::RetentionClass::code).
    retention_class smallint    NOT NULL DEFAULT 0,
    -- The first day of the stream's bucket; -infinity for the permanent class.
    bucket          date        NOT NULL DEFAULT '-infinity',
    CONSTRAINT events_event_key UNIQUE (event_id, retention_class, bucket),
    CONSTRAINT events_stream_key UNIQUE (stream_id, stream_version, retention_class, bucket)
) PARTITION BY LIST (retention_class);
CREATE INDEX events_read_order ON events (transaction_id, global_position);

CREATE TABLE events_permanent PARTITION OF events FOR VALUES IN (0);
CREATE TABLE events_samples PARTITION OF events FOR VALUES IN (1) PARTITION BY RANGE (bucket);
CREATE TABLE events_summaries PARTITION OF events FOR VALUES IN (2) PARTITION BY RANGE (bucket);

INSERT INTO events (global_position, transaction_id, event_id, stream_id, stream_type, stream_version, event_type,
                    schema_version, payload, metadata, recorded_at, prev_hash, hash)
    OVERRIDING SYSTEM VALUE
    SELECT global_position, transaction_id, event_id, stream_id, stream_type, stream_version, event_type,
           schema_version, payload, metadata, recorded_at, prev_hash, hash
    FROM events_before_retention ORDER BY transaction_id, global_position;
SELECT setval(pg_get_serial_sequence('events', 'global_position'),
              (SELECT coalesce(max(global_position), 0) + 1 FROM events), false);
DROP TABLE events_before_retention;

-- Append-only as before: row triggers on the parent reach every partition, present and future;
-- TRUNCATE triggers and privileges do not, so each partition gets its own (see unity_events_bucket).
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION unity_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION unity_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events_permanent
    FOR EACH STATEMENT EXECUTE FUNCTION unity_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON events, events_permanent, events_samples, events_summaries FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON events, events_permanent, events_samples, events_summaries FROM CURRENT_USER;

-- The partition of one bucket, created when the first event of that bucket arrives. It is made
-- apart and then attached, which locks the class's partition only in SHARE UPDATE EXCLUSIVE mode:
-- readers and writers of the log carry on. A bucket whose removal has been recorded (in the
-- permanent stream `removal_stream`) is closed for good and is not made again.
CREATE FUNCTION unity_events_bucket(class smallint, first_day date, removal_stream text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    parent text := CASE class WHEN 1 THEN 'events_samples' WHEN 2 THEN 'events_summaries' END;
    leaf   text;
    last_day date;
BEGIN
    IF parent IS NULL THEN
        RAISE EXCEPTION 'retention class % has no buckets', class USING ERRCODE = 'invalid_parameter_value';
    END IF;
    leaf := parent || '_' || to_char(first_day, 'YYYYMMDD');
    IF to_regclass(leaf) IS NOT NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM events WHERE retention_class = 0 AND bucket = '-infinity' AND stream_id = removal_stream) THEN
        RAISE EXCEPTION 'bucket % of % was removed by retention; it takes no more events', first_day, parent
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- One creator at a time; whoever waited finds the partition made.
    PERFORM pg_advisory_xact_lock(hashtext(leaf));
    IF to_regclass(leaf) IS NOT NULL THEN
        RETURN;
    END IF;
    last_day := CASE class WHEN 2 THEN first_day + interval '1 month' ELSE first_day + 1 END;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', leaf);
    EXECUTE format('ALTER TABLE %I ADD CHECK (retention_class = %s AND bucket >= %L AND bucket < %L)',
                   leaf, class, first_day, last_day);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, leaf, first_day, last_day);
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION unity_append_only()', leaf);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM PUBLIC', leaf);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM CURRENT_USER', leaf);
END $$;

-- The one path by which events leave the log. It removes the bucket a removal record describes
-- (an event `BucketRemovalRecorded` of a `retention` stream, appended before) and nothing else:
-- it refuses a record that is not there, a class that never expires, and a bucket that no
-- longer matches its record (its event count, the digest of its hashes in log order, the last
-- version and hash of each of its streams). Returns the number of events removed (0 if the
-- bucket is already gone). The caller sets lock_timeout: detaching waits for running readers.
CREATE FUNCTION unity_remove_bucket(record uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    rec    events%ROWTYPE;
    class  smallint;
    parent text;
    leaf   text;
    n      bigint;
    digest bytea;
    heads  jsonb;
BEGIN
    SELECT * INTO rec FROM events e
     WHERE e.retention_class = 0 AND e.bucket = '-infinity' AND e.event_id = record;
    IF NOT FOUND OR rec.stream_type <> 'retention' OR rec.event_type <> 'BucketRemovalRecorded' THEN
        RAISE EXCEPTION 'no removal is recorded under %', record USING ERRCODE = 'insufficient_privilege';
    END IF;
    class := CASE rec.payload->>'class' WHEN 'samples' THEN 1 WHEN 'summaries' THEN 2 END;
    IF class IS NULL THEN
        RAISE EXCEPTION 'events of class % never expire', rec.payload->>'class' USING ERRCODE = 'insufficient_privilege';
    END IF;
    parent := 'events_' || (rec.payload->>'class');
    leaf := parent || '_' || to_char((rec.payload->>'bucket')::date, 'YYYYMMDD');
    IF to_regclass(leaf) IS NULL THEN
        RETURN 0;
    END IF;
    -- Detached first: no event can enter the bucket between the check and the drop, and if the
    -- check fails the transaction rolls the detach back. (LOCK TABLE would need the UPDATE or
    -- DELETE privilege the owner gave up.) The class's partition stays locked while the bucket
    -- is checked: about a tenth of a second for a day of 100 servers' samples.
    EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, leaf);
    EXECUTE format('SELECT count(*), sha256(coalesce(string_agg(hash, ''''::bytea ORDER BY global_position), ''''::bytea)) '
                   'FROM %I', leaf) INTO n, digest;
    EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_object(''stream_id'', stream_id, ''version'', stream_version, '
                   '''hash'', encode(hash, ''hex'')) ORDER BY stream_id COLLATE "C"), ''[]'') '
                   'FROM (SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash FROM %I '
                   '      ORDER BY stream_id, stream_version DESC) h', leaf) INTO heads;
    IF n <> (rec.payload->>'events')::bigint OR encode(digest, 'hex') <> rec.payload->>'digest'
       OR heads <> rec.payload->'streams' THEN
        RAISE EXCEPTION 'bucket % no longer matches its removal record %', leaf, record
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('DROP TABLE %I', leaf);
    RETURN n;
END $$;
