//! The collector: claims due servers from the schedule, polls each over its kept SSH session,
//! and records the sample and its changes. One per `unity serve --role collectors` process;
//! several share a fleet through the schedule's claims.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::{
    sync::{watch, Semaphore},
    task::JoinSet,
};
use unity_commands::{
    certificates::X509Commands,
    credentials::CredentialCommands,
    monitoring::{
        schedule::{self, Due, Wanted},
        MonitoringCommands,
    },
    servers::ServerCommands,
};
use unity_domain::{
    monitoring::{Failure, MonitoringCommand, MonitoringState, StorageDevice},
    servers::{ServerData, ServerState},
    Actor, EventMetadata,
};
use uuid::Uuid;

use super::{
    checks,
    collect::{self, CollectError},
    rates::Counters,
    smart::{Context, Reading},
};
use crate::servers::{
    ssh::{SshConfig, SshSession},
    SshReactor,
};

/// How the collector behaves; `Default` is what `unity serve` uses unless configured.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Polls running at once in this process.
    pub concurrency: usize,
    /// One poll, connecting included: a dead server costs this, never the others' time.
    pub poll_timeout: Duration,
    /// How often the schedule is looked at.
    pub tick: Duration,
    pub ssh: SshConfig,
}

impl Default for CollectorConfig {
    fn default() -> CollectorConfig {
        CollectorConfig {
            concurrency: 32,
            poll_timeout: Duration::from_secs(20),
            tick: Duration::from_secs(1),
            ssh: SshConfig::default(),
        }
    }
}

/// Kept sessions, one per server, and when a failed server may be tried again.
#[derive(Default)]
struct Sessions {
    open: HashMap<Uuid, Arc<SshSession>>,
    retry_at: HashMap<Uuid, (Instant, Duration)>,
}

pub struct Collector {
    holder: Uuid,
    config: CollectorConfig,
    monitoring: MonitoringCommands,
    servers: ServerCommands,
    opener: SshReactor,
    sessions: Mutex<Sessions>,
    counters: Mutex<HashMap<Uuid, Counters>>,
    /// Key exchanges made, for `unity bench collect` and the tests.
    pub connects: std::sync::atomic::AtomicU64,
}

fn metadata() -> EventMetadata {
    unity_commands::metadata(Actor::system("collector"), "collectors")
}

impl Collector {
    pub fn new(
        monitoring: MonitoringCommands,
        credentials: CredentialCommands,
        certificates: X509Commands,
        config: CollectorConfig,
    ) -> Collector {
        Collector {
            holder: Uuid::now_v7(),
            opener: SshReactor::new(credentials.clone(), certificates, config.ssh.clone(), 1),
            servers: ServerCommands::new(credentials),
            monitoring,
            config,
            sessions: Mutex::new(Sessions::default()),
            counters: Mutex::new(HashMap::new()),
            connects: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn holder(&self) -> Uuid {
        self.holder
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.monitoring.store().pool()
    }

    /// The schedule made to match the servers monitoring is enabled for (from the read model).
    pub async fn sync(&self) -> Result<(), sqlx::Error> {
        let wanted: Vec<Wanted> = unity_projections::monitoring::enabled_servers(self.pool())
            .await?
            .into_iter()
            .map(|(server_id, interval_secs, smart_secs)| Wanted { server_id, interval_secs, smart_secs })
            .collect();
        schedule::sync(self.pool(), &wanted).await
    }

    /// One round: sync, claim what is due, poll it all (at most `concurrency` at once). Returns
    /// how many servers were polled.
    pub async fn tick(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        self.sync().await?;
        let due = schedule::claim(self.pool(), self.holder, 10 * self.config.concurrency as i64).await?;
        let n = due.len();
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut polls = JoinSet::new();
        for server in due {
            let (me, permits) = (self.clone(), permits.clone());
            polls.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return };
                me.poll_server(server).await;
            });
        }
        while polls.join_next().await.is_some() {}
        Ok(n)
    }

    /// Runs rounds every `tick` until `shutdown`, then gives its servers up for another process.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "The monitoring schedule could not be read.");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.tick) => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Err(e) = schedule::release(self.pool(), self.holder).await {
            tracing::warn!(error = %e, "Could not give the monitored servers up.");
        }
    }

    #[tracing::instrument(name = "poll", skip_all, fields(server = %due.server_id))]
    async fn poll_server(&self, due: Due) {
        let server_id = due.server_id;
        let started = Utc::now();
        let result = tokio::time::timeout(self.config.poll_timeout, self.collect(&due)).await;
        let failure = match result {
            Ok(Ok(Some((server, session)))) => {
                // Checks run after the poll is recorded, each under its own timeout, so a slow
                // plugin never costs the poll.
                self.run_checks(&server, &session).await;
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Err(PollError::Unreachable(error))) => (Failure::Unreachable, error),
            Ok(Err(PollError::Collection(error))) => (Failure::Collection, error),
            Ok(Err(PollError::Store(error))) => {
                tracing::warn!(%server_id, %error, "A poll could not be recorded.");
                return;
            }
            Err(_) => {
                self.forget(server_id);
                (Failure::Unreachable, format!("no answer within {:?}", self.config.poll_timeout))
            }
        };
        tracing::info!(%server_id, error = %failure.1, "Monitoring poll failed.");
        let command = MonitoringCommand::Fail { at: started, failure: failure.0, error: failure.1 };
        if let Err(e) = self.monitoring.command(server_id, command, &metadata()).await {
            tracing::warn!(%server_id, error = %e, "A failed poll could not be recorded.");
        }
    }

    fn forget(&self, server_id: Uuid) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.open.remove(&server_id);
        let backoff = sessions
            .retry_at
            .get(&server_id)
            .map_or(Duration::from_secs(5), |(_, b)| (*b * 2).min(Duration::from_secs(300)));
        sessions.retry_at.insert(server_id, (Instant::now() + backoff, backoff));
    }

    /// The kept session, or a new one (no sooner than the backoff after a failure allows).
    async fn session(&self, server: &ServerData) -> Result<(Arc<SshSession>, bool), PollError> {
        {
            let sessions = self.sessions.lock().expect("not poisoned");
            if let Some(session) = sessions.open.get(&server.server_id) {
                return Ok((session.clone(), true));
            }
            if let Some((at, _)) = sessions.retry_at.get(&server.server_id).filter(|(at, _)| *at > Instant::now()) {
                return Err(PollError::Unreachable(format!(
                    "not retried for another {:?}",
                    at.saturating_duration_since(Instant::now())
                )));
            }
        }
        self.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.opener.open(server, &metadata()).await {
            Ok(session) => {
                let session = Arc::new(session);
                let mut sessions = self.sessions.lock().expect("not poisoned");
                sessions.retry_at.remove(&server.server_id);
                sessions.open.insert(server.server_id, session.clone());
                Ok((session, false))
            }
            Err(e) => {
                self.forget(server.server_id);
                Err(PollError::Unreachable(e.to_string()))
            }
        }
    }

    /// One poll (and SMART when due); the server and its session afterwards (`None`: the
    /// server was deleted since the schedule was read).
    async fn collect(&self, due: &Due) -> Result<Option<(ServerData, Arc<SshSession>)>, PollError> {
        let server_id = due.server_id;
        let ServerState::Active(server) =
            self.servers.server(server_id).await.map_err(|e| PollError::Store(e.to_string()))?
        else {
            return Ok(None);
        };
        let max_gap_ms = 3 * 1000 * i64::from(due.interval_secs);
        let previous = self.counters.lock().expect("not poisoned").get(&server_id).cloned();
        let (mut session, mut reused) = self.session(&server).await?;
        let reading = loop {
            let at = Utc::now();
            match collect::poll(&session, at.timestamp_millis(), previous.as_ref(), max_gap_ms).await {
                Ok(reading) => break (at, reading),
                // A kept session the server closed (restarted, idle timeout): one fresh try.
                Err(CollectError::Ssh(_)) if reused => {
                    self.sessions.lock().expect("not poisoned").open.remove(&server_id);
                    (session, reused) = self.session(&server).await?;
                }
                Err(CollectError::Ssh(e)) => {
                    self.forget(server_id);
                    return Err(PollError::Unreachable(e.to_string()));
                }
                Err(CollectError::Parse(e)) => return Err(PollError::Collection(e.to_string())),
            }
        };
        let (at, reading) = reading;
        self.counters.lock().expect("not poisoned").insert(server_id, reading.counters.clone());
        let observe =
            MonitoringCommand::Observe { at, facts: reading.facts, pools: reading.pools, arrays: reading.arrays };
        self.monitoring
            .record_poll(server_id, at, reading.sample, observe, &metadata())
            .await
            .map_err(|e| PollError::Store(e.to_string()))?;
        if due.smart_due {
            self.read_smart(server_id, &session).await?;
        }
        Ok(Some((*server, session)))
    }

    /// Runs the server's checks that are due (never run, or last run an interval ago or more),
    /// one after the other, and records each result.
    async fn run_checks(&self, server: &ServerData, session: &SshSession) {
        let server_id = server.server_id;
        let checks = match unity_projections::monitoring::server_checks(self.pool(), server_id, &server.spec.tags).await
        {
            Ok(checks) => checks,
            Err(e) => {
                tracing::warn!(%server_id, error = %e, "The server's checks could not be read.");
                return;
            }
        };
        let now = Utc::now();
        for c in checks {
            let due = c.ran_at.is_none_or(|at| now - at >= chrono::Duration::seconds(i64::from(c.check.interval_secs)));
            if !due {
                continue;
            }
            let limit = Duration::from_secs(u64::from(checks::CHECK_TIMEOUT_SECS) + 5);
            let result = match tokio::time::timeout(limit, checks::run(session, &c.check.command)).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => {
                    // The session is gone: the next poll opens another; the check runs then.
                    tracing::info!(%server_id, check = %c.check.name, error = %e, "A check could not be run.");
                    self.sessions.lock().expect("not poisoned").open.remove(&server_id);
                    return;
                }
                Err(_) => checks::result(137, ""),
            };
            let at = Utc::now();
            if let Err(e) = self.monitoring.record_check(server_id, c.check.check_id, at, result, &metadata()).await {
                tracing::warn!(%server_id, check = %c.check.name, error = %e, "A check's result could not be recorded.");
            }
        }
    }

    async fn read_smart(&self, server_id: Uuid, session: &SshSession) -> Result<(), PollError> {
        let state = self.monitoring.state(server_id).await.map_err(|e| PollError::Store(e.to_string()))?;
        let readings = collect::smart(session, |serial| context(&state, serial)).await.map_err(|e| match e {
            CollectError::Ssh(e) => PollError::Unreachable(e.to_string()),
            CollectError::Parse(e) => PollError::Collection(e.to_string()),
        })?;
        let mut devices: Vec<StorageDevice> = Vec::new();
        let mut asleep = Vec::new();
        for (scanned, reading) in readings {
            match reading {
                Reading::Device(device) => {
                    devices.push(*device);
                    continue;
                }
                Reading::Asleep => {}
                Reading::Unreadable(message) => {
                    tracing::info!(%server_id, device = %scanned.name, %message, "A disk could not be read.");
                }
            }
            // Asleep or unread is not removed: the stream keeps what it knows of the disk.
            asleep
                .extend(state.devices.iter().filter(|(_, d)| d.name == scanned.name).map(|(serial, _)| serial.clone()));
        }
        self.monitoring
            .record_devices(server_id, Utc::now(), devices, asleep, &metadata())
            .await
            .map_err(|e| PollError::Store(e.to_string()))?;
        Ok(())
    }
}

/// What the judge needs to know of a disk from its server's stream.
pub fn context(state: &MonitoringState, serial: &str) -> Context {
    match state.devices.get(serial) {
        Some(device) => Context {
            first_seen: device.first_seen.clone(),
            accepted: device.accepted.clone(),
            ignored: device.ignored.clone(),
        },
        None => Context { first_seen: BTreeMap::new(), ..Context::default() },
    }
}

enum PollError {
    Unreachable(String),
    Collection(String),
    Store(String),
}
