//! Periodic work that joins read models to commands: the drift check of every server's managed
//! key blocks, and the unused-keys report. Each tick records requests or reports as events; the
//! SSH reactor does the rest.
//!
//! One process should run the collectors role for now: two would both ask for the checks (which
//! is harmless, the reactor's lease serialises the work) and both write reports.

use std::time::Duration;

use tokio::sync::watch;
use unity_commands::credentials::CredentialCommands;
use unity_domain::{credentials::UnusedKey, servers::ServerRequest, Actor, EventMetadata};
use unity_projections::credentials as read;

fn metadata() -> EventMetadata {
    EventMetadata::new(Actor::system("scheduler"), "scheduler")
}

/// Runs `tick` every `interval` (the first time one interval after start) until shutdown.
async fn every<F, Fut>(interval: Duration, mut shutdown: watch::Receiver<bool>, what: &str, mut tick: F)
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

/// Asks the SSH reactor to read back every server's managed blocks.
pub async fn check_all_servers(credentials: &CredentialCommands) -> anyhow::Result<usize> {
    let pool = credentials.store().pool();
    let mut after = None;
    let mut requested = 0;
    loop {
        let page = read::servers(pool, after, 200).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.server_id);
        for server in &page {
            credentials.request(server.server_id, ServerRequest::Check, &metadata()).await?;
            requested += 1;
        }
    }
    Ok(requested)
}

pub async fn check_keys_periodically(
    credentials: CredentialCommands,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) {
    every(interval, shutdown, "key drift check", || async {
        let n = check_all_servers(&credentials).await?;
        tracing::debug!(servers = n, "Asked for a key drift check of every server.");
        Ok(())
    })
    .await
}

/// Records the keys unused for `days` days as an `UnusedSshKeysReported` event.
pub async fn report_unused_keys(credentials: &CredentialCommands, days: u32) -> anyhow::Result<usize> {
    let rows = read::unused_ssh_keys(credentials.store().pool(), days as i32).await?;
    let keys: Vec<UnusedKey> = rows
        .into_iter()
        .map(|k| UnusedKey { key_id: k.key_id, name: k.name, fingerprint: k.fingerprint, last_used_at: k.last_used_at })
        .collect();
    let n = keys.len();
    credentials.report_unused_keys(days, keys, &metadata()).await?;
    Ok(n)
}

pub async fn report_unused_keys_periodically(
    credentials: CredentialCommands,
    interval: Duration,
    days: u32,
    shutdown: watch::Receiver<bool>,
) {
    every(interval, shutdown, "unused keys report", || async {
        let n = report_unused_keys(&credentials, days).await?;
        tracing::info!(keys = n, days, "Reported SSH keys unused for a while.");
        Ok(())
    })
    .await
}
