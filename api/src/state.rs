//! What every request handler shares: the store, the write side (one field per domain), the
//! read side's engine, the configuration, and the waits that give read-your-writes.

use std::time::Duration;

use unity_commands::{
    store::{Appended, EventStore},
    Commands,
};
use unity_projections::ProjectionEngine;

use crate::{
    auth,
    errors::{ApiError, Code},
    metrics, operation, tail, ApiConfig,
};

/// Everything a request handler needs, shared by all workers.
pub struct ApiState {
    pub store: EventStore,
    /// The write side, one field per domain.
    pub commands: Commands,
    /// Used for read-your-writes waits and status; the projections themselves run elsewhere
    /// (the projections role).
    pub engine: ProjectionEngine,
    pub config: ApiConfig,
    pub metrics: metrics::Metrics,
    pub throttle: auth::LoginThrottle,
    pub tail: tail::EventTail,
    pub nats: Option<async_nats::Client>,
    /// The relay's checkpoint name, when NATS is configured, for its lag on /metrics.
    pub relay_checkpoint: Option<String>,
    pub schemas: operation::Schemas,
}

impl ApiState {
    pub fn new(
        store: EventStore,
        commands: Commands,
        engine: ProjectionEngine,
        config: ApiConfig,
        nats: Option<async_nats::Client>,
        relay_checkpoint: Option<String>,
    ) -> ApiState {
        ApiState {
            tail: tail::EventTail::new(store.clone()),
            throttle: auth::LoginThrottle::new(config.throttle),
            schemas: operation::Schemas::new(&config.limits),
            metrics: metrics::Metrics::default(),
            store,
            commands,
            engine,
            config,
            nats,
            relay_checkpoint,
        }
    }

    /// Read-your-writes: returns once every projection has applied `appended` (bounded).
    pub async fn settle(&self, appended: Option<&Appended>) -> Result<(), ApiError> {
        let Some(appended) = appended else { return Ok(()) };
        if !self.engine.wait_for(appended.last, self.config.read_your_writes_timeout).await? {
            tracing::warn!(
                position = appended.last.global_position,
                "Read models did not reach this write in time; a following read may not show it yet."
            );
        }
        Ok(())
    }

    /// Read-your-writes for writes that do not report where they landed (the vault's records):
    /// waits until the projections have applied everything committed so far.
    pub async fn settle_head(&self) -> Result<(), ApiError> {
        let head = self.store.last_committed().await?;
        self.engine.wait_for(head, self.config.read_your_writes_timeout).await?;
        Ok(())
    }

    /// Reads the read model until `done` holds or `limit` is over, and returns the last read:
    /// woken by this process's projections, polled for projections running elsewhere.
    pub async fn wait_until<T, F, Fut>(
        &self,
        limit: Duration,
        mut read: F,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let mut progress = self.store.wakeup().subscribe_progress();
        loop {
            let value = read().await?;
            if done(&value) || tokio::time::Instant::now() >= deadline {
                return Ok(value);
            }
            let pause = deadline.saturating_duration_since(tokio::time::Instant::now()).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(pause, progress.changed()).await;
        }
    }

    /// Refuses at once, instead of after the whole wait, when no process runs the reactor that
    /// would carry out a request (one starting up gets two seconds to take its lease).
    pub async fn require_reactor(&self, lease: &str, what: &str) -> Result<(), ApiError> {
        let held = || async { Ok::<_, ApiError>(unity_commands::lease::is_held(self.store.pool(), lease).await?) };
        if self.wait_until(Duration::from_secs(2), held, |held| *held).await? {
            return Ok(());
        }
        Err(ApiError::new(
            Code::Unavailable,
            format!("no process runs the collectors role, which carries out {what}: start `unity serve` (or `unity serve --role collectors`)"),
        ))
    }
}
