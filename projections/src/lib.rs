//! Unity's read side: the projection engine and the read models it maintains.

pub mod acme;
pub mod audit;
pub mod certificates;
pub mod credentials;
pub mod engine;
pub mod identity;
pub mod monitoring;
pub mod servers;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use engine::{ApplyError, Projection, ProjectionEngine, ProjectionStatus};

/// Every projection this build knows, by name.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(audit::AuditLogProjection),
        Arc::new(identity::UsersProjection),
        Arc::new(credentials::CredentialsProjection),
        Arc::new(certificates::CertificatesProjection),
        Arc::new(acme::AcmeProjection),
        Arc::new(monitoring::MonitoringProjection),
    ]
}
