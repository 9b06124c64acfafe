//! Tests of the write side against a real PostgreSQL (and a real nats-server for the relay).

mod group_commit;
mod monitoring;
mod relay;
mod retention;
mod store;
mod vault;
