//! Tests of the write side against a real PostgreSQL (and a real nats-server for the relay).

mod group_commit;
mod relay;
mod retention;
mod store;
mod vault;
