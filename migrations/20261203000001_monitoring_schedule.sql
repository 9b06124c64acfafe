-- Which collectors process polls which server, and when next: a work queue the collectors
-- claim from with FOR UPDATE SKIP LOCKED, so two processes never poll one server in the same
-- cycle. A claim renews the claimer's hold on the server for two intervals; a process that dies
-- stops renewing, and another takes its servers over once the hold runs out. This is
-- coordination state, like the checkpoints, not history: the events say what was polled.
CREATE TABLE monitoring_schedule (
    server_id      uuid        PRIMARY KEY,
    interval_secs  integer     NOT NULL CHECK (interval_secs >= 15),
    smart_secs     integer,
    holder         uuid,
    held_until     timestamptz,
    next_poll_at   timestamptz NOT NULL,
    next_smart_at  timestamptz
);
CREATE INDEX monitoring_schedule_due ON monitoring_schedule (next_poll_at);
