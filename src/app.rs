//! The application: connects to PostgreSQL (and NATS), and runs the parts `unity serve` asks for.

use std::{sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use sqlx::{postgres::PgPoolOptions, ConnectOptions, PgPool};
use tokio::{sync::watch, task::JoinSet};
use unity_commands::{
    identity::IdentityCommands,
    integrity,
    relay::{NatsRelay, RelayConfig},
    store::{announce_appends, EventStore},
    vault::{MasterKey, Vault},
    wakeup::{Backoff, Wakeup},
    MIGRATOR,
};
use unity_projections::ProjectionEngine;

use crate::config::Settings;

/// What one `unity serve` process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything below, in one process.
    All,
    /// The HTTP API (GraphQL arrives with the API issue; health and metrics now).
    Api,
    /// Projection workers, reactors and the sealer.
    Projections,
    /// The NATS relay (one active per stream; the others stand by).
    Relay,
    /// Collectors and their scheduler (the monitoring and container issues fill this in).
    Collectors,
}

pub struct App {
    pub settings: Settings,
    pub store: EventStore,
}

impl App {
    /// Connects to PostgreSQL, failing with one clear line if it cannot.
    pub async fn connect(settings: Settings) -> Result<App> {
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!("cannot connect to PostgreSQL at {}: {}", settings.database_display, one_line(e))
        };
        // One plain connection first: a pool would only say it timed out, not why.
        match tokio::time::timeout(Duration::from_secs(5), settings.database.connect()).await {
            Ok(Ok(conn)) => drop(conn),
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => return Err(unreachable(&"no answer within 5 s")),
        }
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                settings.database.clone().log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(30)),
            )
            .await
            .map_err(|e| anyhow!("cannot connect to PostgreSQL at {}: {}", settings.database_display, one_line(&e)))?;
        Ok(App { store: EventStore::new(pool, Wakeup::default()), settings })
    }

    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(self.pool()).await.map_err(|e| anyhow!("migrating failed: {}", one_line(&e)))
    }

    /// Refuses to run against a database that lacks migrations this build needs.
    pub async fn require_migrated(&self) -> Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(self.pool())
            .await
            .unwrap_or_default();
        if MIGRATOR.iter().any(|m| !applied.contains(&m.version)) {
            bail!("the database at {} needs migrating: run `unity migrate`", self.settings.database_display);
        }
        Ok(())
    }

    /// The vault, with the master key from `UNITY_MASTER_KEY_FILE`. The file is created on first
    /// use, but never to replace a lost key that this database's secrets were sealed with.
    pub async fn vault(&self) -> Result<Vault> {
        let path = &self.settings.master_key_file;
        let key = match MasterKey::load(path)? {
            Some(key) => key,
            None if Vault::initialised(&self.store).await? => bail!(
                "master key file {} is missing, but this database holds secrets sealed with a master key: restore the file (or point UNITY_MASTER_KEY_FILE at it)",
                path.display()
            ),
            None => MasterKey::create(path)?,
        };
        Ok(Vault::open(key, self.store.clone()).await?)
    }

    pub async fn identity(&self) -> Result<IdentityCommands> {
        Ok(IdentityCommands::new(self.store.clone(), self.vault().await?))
    }

    pub fn engine(&self) -> ProjectionEngine {
        ProjectionEngine::new(self.store.clone(), unity_projections::all_projections())
    }

    async fn nats(&self) -> Result<Option<async_nats::Client>> {
        let Some(url) = &self.settings.nats_url else { return Ok(None) };
        // Keeps trying in the background if NATS is down now: events wait in PostgreSQL.
        let client = async_nats::ConnectOptions::new()
            .name("unity")
            .retry_on_initial_connect()
            .connect(url.as_str())
            .await
            .with_context(|| format!("cannot use NATS at {url}"))?;
        Ok(Some(client))
    }

    /// Runs the given roles until `shutdown` turns true.
    pub async fn serve(self, roles: &[Role], shutdown: watch::Receiver<bool>) -> Result<()> {
        self.require_migrated().await?;
        let wants = |r: Role| roles.contains(&Role::All) || roles.contains(&r);
        let app = Arc::new(self);
        let nats = app.nats().await?;
        let mut tasks = JoinSet::new();

        // Wake-ups across processes: this one's appends announced (coalesced) on NOTIFY, others'
        // heard with LISTEN, and through NATS where configured.
        tasks.spawn(announce_appends(app.store.clone(), Duration::from_millis(10), shutdown.clone()));
        tasks.spawn(listen_for_appends(app.pool().clone(), app.store.wakeup().clone(), shutdown.clone()));
        if let Some(client) = &nats {
            tasks.spawn(nats_wakeups(
                client.clone(),
                format!("{}.>", app.settings.nats_subject_prefix),
                app.store.wakeup().clone(),
                shutdown.clone(),
            ));
        }

        if wants(Role::Projections) {
            let engine = app.engine();
            engine.prepare().await.context("preparing the read models")?;
            tracing::info!(projections = engine.projections().len(), "Projection workers started.");
            tasks.spawn(engine.run(shutdown.clone(), Duration::from_secs(1)));
            tasks.spawn(seal_periodically(app.pool().clone(), app.settings.seal_interval, shutdown.clone()));
        }
        if wants(Role::Relay) {
            match &nats {
                Some(client) => {
                    let config = RelayConfig {
                        stream_name: app.settings.nats_stream.clone(),
                        subject_prefix: app.settings.nats_subject_prefix.clone(),
                        ..RelayConfig::default()
                    };
                    tasks.spawn(run_relay(app.store.clone(), client.clone(), config, shutdown.clone()));
                }
                None => tracing::info!(
                    "NATS_URL is not set: events are not broadcast; projections use in-process wake-ups."
                ),
            }
        }
        if wants(Role::Api) {
            tracing::info!(bind = %app.settings.bind, "The GraphQL API is not part of this build yet.");
        }
        if wants(Role::Collectors) {
            tracing::info!("No collectors are configured in this build yet.");
        }
        tracing::info!(roles = ?roles, "Unity is running.");
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "A worker task failed.");
            }
        }
        tracing::info!("Unity stopped.");
        Ok(())
    }
}

/// sqlx errors can span lines; CLI messages must not.
pub fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn listen_for_appends(pool: PgPool, wakeup: Wakeup, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen("unity_events").await?;
            loop {
                listener.recv().await?;
                wakeup.notify_external();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            result = listener => if let Err(e) = result {
                tracing::warn!(error = %e, "Lost the LISTEN connection; polling covers the gap.");
                tokio::time::sleep(Duration::from_secs(2)).await;
            },
        }
    }
}

async fn nats_wakeups(
    client: async_nats::Client,
    subject: String,
    wakeup: Wakeup,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut subscription = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "Cannot subscribe to NATS for wake-ups; polling covers it."),
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            message = subscription.next() => match message {
                Some(_) => wakeup.notify_external(),
                None => return,
            },
        }
    }
}

async fn run_relay(
    store: EventStore,
    client: async_nats::Client,
    config: RelayConfig,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    let relay = loop {
        match NatsRelay::new(store.clone(), client.clone(), config.clone()).await {
            Ok(relay) => break relay,
            Err(e) => {
                let pause = backoff.next_pause();
                tracing::warn!(error = %e, retry_in = ?pause, "JetStream is not reachable yet; events wait in PostgreSQL.");
                let mut shutdown = shutdown.clone();
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    };
    relay.run(shutdown).await;
}

async fn seal_periodically(pool: PgPool, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match integrity::seal(&pool).await {
            Ok(Some(seal)) => {
                tracing::debug!(seal = seal.seal_number, streams = seal.heads.len(), "Sealed stream heads.")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Sealing failed; will try again."),
        }
    }
}
