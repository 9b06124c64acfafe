//! Monitoring: the collector, which polls the servers this process holds in the schedule.

use std::sync::Arc;

use tokio::{sync::watch, task::JoinSet};
use unity_collectors::{
    monitoring::collector::{Collector, CollectorConfig},
    servers::ssh::SshConfig,
};
use unity_commands::Commands;

use crate::config::Settings;

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
}
