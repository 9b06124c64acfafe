//! Monitoring: the collector, which polls the servers this process holds in the schedule, and
//! the hourly summaries of every monitored server's samples.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::{sync::watch, task::JoinSet};
use unity_collectors::{
    monitoring::collector::{Collector, CollectorConfig},
    servers::ssh::SshConfig,
};
use unity_commands::{
    monitoring::{schedule, MonitoringCommands},
    Commands,
};

use super::{every, metadata};
use crate::config::Settings;

/// How often finished hours are looked for (an hour is summarized within this long of
/// `unity_commands::monitoring::SETTLE` after its end).
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);

pub fn spawn(tasks: &mut JoinSet<()>, commands: &Commands, settings: &Settings, shutdown: &watch::Receiver<bool>) {
    let config = CollectorConfig {
        concurrency: settings.monitoring_concurrency,
        poll_timeout: settings.monitoring_poll_timeout,
        ssh: SshConfig { connect_timeout: settings.ssh_connect_timeout, ..SshConfig::default() },
        ..CollectorConfig::default()
    };
    let collector = Collector::new(
        commands.monitoring.clone(),
        commands.credentials.clone(),
        commands.certificates.clone(),
        config,
    );
    tasks.spawn(Arc::new(collector).run(shutdown.clone()));
    let (monitoring, lookback) = (commands.monitoring.clone(), settings.retention.samples_days);
    tasks.spawn(every(SUMMARY_INTERVAL, shutdown.clone(), "hourly summaries", move || {
        let monitoring = monitoring.clone();
        async move {
            let hours = summarize_all(&monitoring, Utc::now(), lookback).await?;
            if hours > 0 {
                tracing::info!(hours, "Summarized finished hours of samples.");
            }
            Ok(())
        }
    }));
}

/// Summarizes the finished hours of every monitored server (looking back `lookback_days` for a
/// server never summarized, the samples' retention). Returns how many hours it summarized.
pub async fn summarize_all(
    monitoring: &MonitoringCommands,
    now: DateTime<Utc>,
    lookback_days: u32,
) -> anyhow::Result<usize> {
    let lookback = chrono::Duration::days(i64::from(lookback_days));
    let mut hours = 0;
    for server_id in schedule::servers(monitoring.store().pool()).await? {
        match monitoring.summarize(server_id, now, lookback, &metadata()).await {
            Ok(n) => hours += n,
            // One server's trouble is no other's: it is tried again at the next interval.
            Err(e) => tracing::warn!(%server_id, error = %e, "Could not summarize a server's samples."),
        }
    }
    Ok(hours)
}
