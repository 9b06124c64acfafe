//! The application: connects to PostgreSQL (and NATS), and runs the parts `unity serve` asks for.

use std::{sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use futures::StreamExt;
use sqlx::{postgres::PgPoolOptions, ConnectOptions, PgPool};
use tokio::{sync::watch, task::JoinSet};
use unity_api::{ApiConfig, ApiState};
use unity_commands::identity::IdentityCommandError;
use unity_commands::{
    identity::IdentityCommands,
    integrity,
    relay::{NatsRelay, RelayConfig},
    retention::{self, RetentionPolicy},
    store::{announce_appends, EventStore, GroupCommit},
    vault::{MasterKey, Vault},
    wakeup::{Backoff, Wakeup},
    Commands, MIGRATOR,
};
use unity_domain::{
    identity::{IdentityError, Role as UserRole},
    Actor,
};
use unity_projections::ProjectionEngine;

use crate::{config::Settings, schedule};

/// What one `unity serve` process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything below, in one process.
    All,
    /// The HTTP API: GraphQL, /metrics, /healthz, /readyz.
    Api,
    /// Projection workers, reactors, the sealer and retention.
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
        let group = GroupCommit { max_wait: settings.append_group_wait, ..GroupCommit::default() };
        Ok(App { store: EventStore::new(pool, Wakeup::default()).with_group_commit(group), settings })
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

    /// Every domain's commands, over this store and its vault.
    pub async fn commands(&self) -> Result<Commands> {
        Ok(Commands::open(self.store.clone(), self.vault().await?))
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

    /// Listens on `UNITY_BIND` for the API.
    pub fn bind_api(&self) -> Result<std::net::TcpListener> {
        std::net::TcpListener::bind(self.settings.bind)
            .with_context(|| format!("cannot listen on {} (UNITY_BIND)", self.settings.bind))
    }

    /// On an empty database, creates the user `admin`: with `UNITY_ADMIN_PASSWORD` if set,
    /// otherwise with a generated password, which is returned to be shown once.
    pub async fn ensure_first_admin(&self, identity: &IdentityCommands) -> Result<Option<String>> {
        let any_user: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM event_log_permanent \
                            WHERE stream_type = (SELECT key FROM stream_types WHERE name = 'user'))",
        )
        .fetch_one(self.pool())
        .await?;
        if any_user {
            return Ok(None);
        }
        let (password, generated) = match &self.settings.admin_password {
            Some(p) => (p.clone(), false),
            None => (crate::cli::generate_password(), true),
        };
        let metadata = unity_commands::metadata(Actor::system("first-run"), "serve");
        match identity.create_user("admin", &password, UserRole::Admin, &metadata).await {
            Ok((_, appended)) => {
                tracing::info!("Created the first user, 'admin'.");
                // So that a login the moment the API answers finds the user.
                self.engine().wait_for(appended.last, Duration::from_secs(10)).await?;
                Ok(generated.then_some(password))
            }
            // Another process got there first.
            Err(IdentityCommandError::Rejected(IdentityError::UsernameTaken(_))) => Ok(None),
            Err(IdentityCommandError::Rejected(e)) => Err(anyhow!("UNITY_ADMIN_PASSWORD: {e}")),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the given roles until `shutdown` turns true. The API serves on `api_listener`, or
    /// on `UNITY_BIND` when none is given.
    pub async fn serve(
        self,
        roles: &[Role],
        api_listener: Option<std::net::TcpListener>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        self.require_migrated().await?;
        let wants = |r: Role| roles.contains(&Role::All) || roles.contains(&r);
        let api_listener = match (wants(Role::Api), api_listener) {
            (true, Some(listener)) => Some(listener),
            (true, None) => Some(self.bind_api()?),
            (false, _) => None,
        };
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
            tasks.spawn(remove_expired_periodically(
                app.store.clone(),
                app.settings.retention.clone(),
                app.settings.retention_interval,
                shutdown.clone(),
            ));
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
        if let Some(listener) = api_listener {
            let commands = app.commands().await?;
            if let Some(password) = app.ensure_first_admin(&commands.identity).await? {
                // Printed, not logged: logs are often shipped elsewhere. Shown this once.
                println!("Unity created the user 'admin' with this one-time password: {password}");
                println!("Sign in and change it (mutation changePassword); it will not be shown again.");
            }
            let config = ApiConfig {
                session_lifetime: app.settings.session_lifetime,
                ssh_wait: app.settings.ssh_wait,
                acme_wait: app.settings.acme_wait,
                ws_init_timeout: app.settings.ws_init_timeout,
                ..ApiConfig::default()
            };
            let relay_checkpoint = nats.as_ref().map(|_| format!("nats-relay:{}", app.settings.nats_stream));
            let state = Arc::new(ApiState::new(
                app.store.clone(),
                commands,
                app.engine(),
                config,
                nats.clone(),
                relay_checkpoint,
            ));
            let address = listener.local_addr().ok();
            tracing::info!(address = ?address, "GraphQL API listening (/graphql, /graphiql, /metrics, /healthz, /readyz).");
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Err(e) = unity_api::serve(listener, state, shutdown).await {
                    tracing::error!(error = %e, "The API server failed.");
                }
            });
        }
        if wants(Role::Collectors) {
            // One line per domain: its reactor and its periodic work.
            let (commands, settings) = (app.commands().await?, &app.settings);
            schedule::servers::spawn(&mut tasks, &commands, settings, &shutdown);
            schedule::credentials::spawn(&mut tasks, &commands, settings, &shutdown);
            schedule::certificates::spawn(&mut tasks, &commands, settings, &shutdown);
            schedule::acme::spawn(&mut tasks, &commands, settings, &shutdown);
            schedule::monitoring::spawn(&mut tasks, &commands, settings, &shutdown);
            tracing::info!(
                concurrency = app.settings.ssh_concurrency,
                "SSH and ACME reactors, key checks and certificate renewal started."
            );
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

/// Retention: expired buckets removed (recorded first) at start-up and then every `interval`.
async fn remove_expired_periodically(
    store: EventStore,
    policy: RetentionPolicy,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let metadata = unity_commands::metadata(Actor::system("retention"), "scheduler");
    loop {
        match retention::run(&store, &policy, Utc::now().date_naive(), &metadata).await {
            Ok(removed) if !removed.is_empty() => {
                let events: i64 = removed.iter().map(|r| r.events).sum();
                tracing::info!(buckets = removed.len(), events, "Removed expired events.");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Removing expired events failed; will try again."),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
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
