-- NOTIFY inside every appending transaction serialises commits on PostgreSQL's notify-queue lock
-- (one-event commits from 32 writers: 3,000/s with it, 4,400/s without). Unity now sends one
-- coalesced NOTIFY per burst of appends from outside the appending transactions instead.
DROP TRIGGER events_notify ON events;
DROP FUNCTION unity_events_notify();
