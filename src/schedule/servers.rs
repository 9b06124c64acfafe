//! Servers: the SSH reactor, which carries out requests on servers, and the periodic drift check
//! of every server's managed blocks.

use std::time::Duration;

use unity_collectors::servers::{ssh::SshConfig, SshReactor};
use unity_commands::{credentials::CredentialCommands, servers::ServerCommands};
use unity_domain::servers::ServerRequest;
use unity_projections::servers as read;

use super::{every, metadata};
use tokio::{sync::watch, task::JoinSet};
use unity_commands::Commands;

use crate::config::Settings;

pub fn spawn(tasks: &mut JoinSet<()>, commands: &Commands, settings: &Settings, shutdown: &watch::Receiver<bool>) {
    let ssh = SshConfig { connect_timeout: settings.ssh_connect_timeout, ..SshConfig::default() };
    let reactor =
        SshReactor::new(commands.credentials.clone(), commands.certificates.clone(), ssh, settings.ssh_concurrency);
    tasks.spawn(reactor.run(shutdown.clone(), Duration::from_secs(1)));
    tasks.spawn(check_keys_periodically(commands.credentials.clone(), settings.key_check_interval, shutdown.clone()));
}

/// Asks the SSH reactor to read back every server's managed blocks.
pub async fn check_all_servers(credentials: &CredentialCommands) -> anyhow::Result<usize> {
    let pool = credentials.store().pool();
    let servers = ServerCommands::new(credentials.clone());
    let mut after = None;
    let mut requested = 0;
    loop {
        let page = read::servers(pool, after, 200).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.server_id);
        for server in &page {
            servers.request(server.server_id, ServerRequest::Check, &metadata()).await?;
            requested += 1;
        }
    }
    Ok(requested)
}

async fn check_keys_periodically(credentials: CredentialCommands, interval: Duration, shutdown: watch::Receiver<bool>) {
    every(interval, shutdown, "key drift check", || async {
        let n = check_all_servers(&credentials).await?;
        tracing::debug!(servers = n, "Asked for a key drift check of every server.");
        Ok(())
    })
    .await
}
