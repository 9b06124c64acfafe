//! Unity's write side: the event store in PostgreSQL, command handling, the secrets vault, and
//! the relay that broadcasts the log over NATS JetStream.

pub mod acme;
pub mod canonical;
pub mod credentials;
pub mod handler;
pub mod identity;
pub mod integrity;
pub mod lease;
pub mod relay;
pub mod ssh_keys;
pub mod store;
pub mod vault;
pub mod wakeup;
pub mod x509;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

/// Every migration in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
