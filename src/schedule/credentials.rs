//! Credentials: the periodic report of SSH keys unused for a while.

use std::time::Duration;

use unity_commands::credentials::CredentialCommands;
use unity_domain::credentials::UnusedKey;
use unity_projections::credentials as read;

use super::{every, metadata};
use tokio::{sync::watch, task::JoinSet};
use unity_commands::Commands;

use crate::config::Settings;

pub fn spawn(tasks: &mut JoinSet<()>, commands: &Commands, settings: &Settings, shutdown: &watch::Receiver<bool>) {
    tasks.spawn(report_unused_keys_periodically(
        commands.credentials.clone(),
        settings.unused_keys_report_interval,
        settings.unused_keys_days,
        shutdown.clone(),
    ));
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

async fn report_unused_keys_periodically(
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
