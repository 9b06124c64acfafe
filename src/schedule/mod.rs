//! The collectors role, one module per domain: each domain's reactor and its periodic work that
//! joins read models to commands (the drift check of every server's managed blocks, the
//! unused-keys report, certificate renewal and expiry warnings). Each domain's `spawn` starts
//! them, and `App::serve` calls it in one line. Periodic tasks take the time as an argument, so
//! tests move the clock instead of waiting; each tick records requests or reports as events, and
//! the reactors do the rest.
//!
//! One process should run the collectors role for now: two would both ask for the checks (which
//! is harmless, the reactor's lease serialises the work) and both write reports.

use std::time::Duration;

use tokio::sync::watch;
use unity_domain::{Actor, EventMetadata};

pub mod acme;
pub mod certificates;
pub mod credentials;
pub mod monitoring;
pub mod servers;

pub use certificates::{check_certificate_expiry, renew_due_certificates};
pub use credentials::report_unused_keys;
pub use servers::check_all_servers;

pub(crate) fn metadata() -> EventMetadata {
    unity_commands::metadata(Actor::system("scheduler"), "scheduler")
}

/// Runs `tick` every `interval` (the first time one interval after start) until shutdown.
pub(crate) async fn every<F, Fut>(interval: Duration, mut shutdown: watch::Receiver<bool>, what: &str, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = tick().await {
            tracing::warn!(error = %e, task = what, "A scheduled task failed; it runs again at the next interval.");
        }
    }
}
