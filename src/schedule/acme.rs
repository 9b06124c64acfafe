//! ACME: the reactor that registers accounts and carries out orders (renewals are ordered by
//! `super::certificates`).

use std::time::Duration;

use unity_collectors::acme::{AcmeConfig, AcmeReactor};

use tokio::{sync::watch, task::JoinSet};
use unity_commands::Commands;

use crate::config::Settings;

pub fn spawn(tasks: &mut JoinSet<()>, commands: &Commands, settings: &Settings, shutdown: &watch::Receiver<bool>) {
    let config = AcmeConfig { order_timeout: settings.acme_order_timeout, ..AcmeConfig::default() };
    tasks.spawn(AcmeReactor::new(commands.acme.clone(), config).run(shutdown.clone(), Duration::from_secs(1)));
}
