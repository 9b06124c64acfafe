//! Unity's write side: the event store in PostgreSQL, command handling, the secrets vault, and
//! the relay that broadcasts the log over NATS JetStream.

pub mod acme;
pub mod canonical;
pub mod certificates;
pub mod credentials;
pub mod handler;
pub mod identity;
pub mod integrity;
pub mod lease;
pub mod monitoring;
pub mod relay;
pub mod retention;
pub mod servers;
pub mod store;
pub mod vault;
pub mod wakeup;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

/// Metadata for a command from `actor` entering at `source`, with a fresh correlation id (the
/// domain makes no ids, so they are made here).
pub fn metadata(actor: unity_domain::Actor, source: &str) -> unity_domain::EventMetadata {
    unity_domain::EventMetadata::new(actor, source, uuid::Uuid::now_v7())
}

/// The write side, one field per domain: what the API, the reactors and the scheduler drive.
/// A new domain adds its field here and one line to [`Commands::open`].
#[derive(Clone)]
pub struct Commands {
    pub identity: identity::IdentityCommands,
    pub credentials: credentials::CredentialCommands,
    pub servers: servers::ServerCommands,
    pub certificates: certificates::X509Commands,
    pub acme: acme::AcmeCommands,
    pub monitoring: monitoring::MonitoringCommands,
}

impl Commands {
    /// Every domain's commands over one store and one vault.
    pub fn open(store: store::EventStore, vault: vault::Vault) -> Commands {
        let credentials = credentials::CredentialCommands::new(store.clone(), vault.clone());
        let certificates = certificates::X509Commands::new(store.clone(), vault.clone());
        Commands {
            monitoring: monitoring::MonitoringCommands::new(store.clone()),
            identity: identity::IdentityCommands::new(store, vault.clone()),
            servers: servers::ServerCommands::new(credentials.clone()),
            acme: acme::AcmeCommands::new(certificates.clone(), vault),
            credentials,
            certificates,
        }
    }
}

/// Every migration in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
