//! The projection engine: reads the store in order, applies batches to read models, and moves
//! each projection's checkpoint in the same transaction as its changes.
//!
//! Several engines (several `unity serve` processes) may run at once: each batch starts by
//! locking its projection's checkpoint row, so they take turns and never apply an event twice.
//! A poison event (one a projection cannot apply) stops that projection with the reason
//! recorded; an operator retries or skips it. Rebuilds go into a fresh schema and are swapped in
//! under the checkpoint lock, so queries keep being answered throughout.

use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use unity_commands::store::{read_positions_after, read_range, Cursor, EventStore, RecordedEvent, StoreError};
use unity_commands::wakeup::Backoff;
use unity_domain::{DomainEvent, StreamId};
use uuid::Uuid;

mod rebuild;

/// One read model.
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint's key and the CLI's `--projection` argument.
    fn name(&self) -> &'static str;
    /// Bumped whenever the tables change shape; a mismatch triggers a rebuild at start-up.
    fn model_version(&self) -> i32;
    /// The tables this projection owns.
    fn tables(&self) -> &'static [&'static str];
    /// DDL for those tables, with unqualified names: the engine runs it with `search_path` set
    /// to the schema being built.
    fn create_tables(&self) -> &'static [&'static str];
    /// Their secondary indexes, created after a rebuild's bulk load (and at once otherwise).
    fn create_indexes(&self) -> &'static [&'static str];
    /// The stream types whose events [`Batch::events`] carries: `None` for every event,
    /// `Some(&[])` for none (a projection that works on the range in SQL).
    fn stream_types(&self) -> Option<&'static [&'static str]>;
    /// Applies a batch inside the engine's transaction. Must not commit.
    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>>;
}

/// The events in `(after, through]` of the store's order. A projection may read the range from
/// `events` in SQL, or use `events`, which holds those of its [`Projection::stream_types`].
pub struct Batch<'a> {
    pub after: Cursor,
    pub through: Cursor,
    pub events: &'a [RecordedEvent],
}

impl Batch<'_> {
    /// The range as the four SQL parameters `(after.tx, after.pos, through.tx, through.pos)`.
    pub fn bounds(&self) -> [i64; 4] {
        [
            self.after.transaction_id,
            self.after.global_position,
            self.through.transaction_id,
            self.through.global_position,
        ]
    }
}

/// `AND (transaction_id, global_position) > ($1, $2) AND … <= ($3, $4)`: a batch's range, for
/// projections that work in SQL (bind [`Batch::bounds`] first).
pub const IN_BATCH: &str =
    "(transaction_id, global_position) > ($1, $2) AND (transaction_id, global_position) <= ($3, $4)";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("event {event_id} cannot be applied: {reason}")]
    Poison { event_id: Uuid, reason: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<unity_commands::store::DecodeError> for ApplyError {
    fn from(e: unity_commands::store::DecodeError) -> ApplyError {
        ApplyError::Poison { event_id: e.event_id, reason: e.reason }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no projection is called '{0}' (known: {1})")]
    UnknownProjection(String, String),
    /// A rebuild met something it cannot apply; the live tables are untouched.
    #[error("rebuilding {projection} failed: {reason}")]
    RebuildFailed { projection: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> EngineError {
        EngineError::Store(e.into())
    }
}

/// A projection's progress, for `projections` in GraphQL, /metrics and the CLI.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: Cursor,
    pub events_handled: i64,
    /// Readable events not yet applied.
    pub lag: i64,
    /// `running` or `stopped`.
    pub state: String,
    pub error: Option<String>,
    pub error_event_id: Option<Uuid>,
}

/// The outcome of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Applied(usize),
    CaughtUp,
    Stopped,
}

/// Operator actions and engine decisions about projections, recorded in the log.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ProjectionEvent {
    ProjectionStopped { projection: String, event_id: Uuid, reason: String },
    ProjectionRetried { projection: String },
    ProjectionEventSkipped { projection: String, event_id: Uuid },
    ProjectionRebuilt { projection: String, events: i64 },
}

unity_domain::domain_event!(
    ProjectionEvent,
    "projection",
    [ProjectionStopped, ProjectionRetried, ProjectionEventSkipped, ProjectionRebuilt,]
);

fn projection_stream(name: &str) -> StreamId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x2b9e_71c4_0f3d_4e8a_b6c5_1d7f_9a20_4e63);
    StreamId::new(ProjectionEvent::STREAM_TYPE, Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

#[derive(Clone)]
pub struct ProjectionEngine {
    store: EventStore,
    projections: Vec<Arc<dyn Projection>>,
    batch_size: i64,
}

impl ProjectionEngine {
    pub fn new(store: EventStore, projections: Vec<Arc<dyn Projection>>) -> ProjectionEngine {
        ProjectionEngine { store, projections, batch_size: 500 }
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> ProjectionEngine {
        self.batch_size = batch_size;
        self
    }

    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    pub fn find(&self, name: &str) -> Result<Arc<dyn Projection>, EngineError> {
        self.projections.iter().find(|p| p.name() == name).cloned().ok_or_else(|| {
            EngineError::UnknownProjection(
                name.into(),
                self.projections.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
            )
        })
    }

    /// Creates missing tables and checkpoints, and rebuilds projections whose model version
    /// changed since their tables were built.
    pub async fn prepare(&self) -> Result<(), EngineError> {
        let mut conn = self.store.pool().acquire().await?;
        for p in &self.projections {
            let mut tx = conn.begin().await?;
            // Serialise preparation across processes starting at once.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('unity-projection-prepare'))").execute(&mut *tx).await?;
            let stored: Option<i32> = sqlx::query_scalar("SELECT model_version FROM checkpoints WHERE name = $1")
                .bind(p.name())
                .fetch_optional(&mut *tx)
                .await?;
            match stored {
                None => {
                    for ddl in p.create_tables().iter().chain(p.create_indexes()) {
                        sqlx::query(AssertSqlSafe(*ddl)).execute(&mut *tx).await?;
                    }
                    sqlx::query("INSERT INTO checkpoints (name, model_version) VALUES ($1, $2)")
                        .bind(p.name())
                        .bind(p.model_version())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Some(v) if v != p.model_version() => {
                    tx.commit().await?;
                    tracing::info!(
                        projection = p.name(),
                        from = v,
                        to = p.model_version(),
                        "Read model changed shape; rebuilding it."
                    );
                    self.rebuild_with(std::slice::from_ref(p), true, |_, _| {}).await?;
                }
                Some(_) => tx.commit().await?,
            }
        }
        Ok(())
    }

    /// Applies at most one batch to one projection.
    #[tracing::instrument(
        name = "projection_batch",
        skip_all,
        fields(projection = projection.name(), after = tracing::field::Empty, through = tracing::field::Empty)
    )]
    pub async fn run_once(&self, projection: &dyn Projection) -> Result<Step, EngineError> {
        let mut conn = self.store.pool().acquire().await?;
        let mut tx = conn.begin().await?;
        let (cursor, state) = lock_checkpoint(&mut tx, projection.name()).await?;
        if state != "running" {
            return Ok(Step::Stopped);
        }
        let positions = read_positions_after(&mut tx, cursor, self.batch_size).await?;
        let Some(&(through, _)) = positions.last() else {
            return Ok(Step::CaughtUp);
        };
        // The range, as the log's positions, so a slow or failing batch can be found by it.
        let span = tracing::Span::current();
        span.record("after", cursor.global_position);
        span.record("through", through.global_position);
        let events = events_for(&mut tx, projection, cursor, through).await?;
        match projection.apply(&mut tx, &Batch { after: cursor, through, events: &events }).await {
            Ok(()) => {
                save_checkpoint(&mut tx, projection.name(), through, positions.len()).await?;
                tx.commit().await?;
                self.store.wakeup().notify_progress();
                Ok(Step::Applied(positions.len()))
            }
            Err(ApplyError::Database(e)) if is_transient(&e) => Err(e.into()),
            Err(_) => {
                tx.rollback().await?;
                // Find the culprit: apply one event at a time until one fails.
                self.isolate_poison(&mut conn, projection, cursor, &positions, &events).await
            }
        }
    }

    async fn isolate_poison(
        &self,
        conn: &mut PgConnection,
        projection: &dyn Projection,
        start: Cursor,
        positions: &[(Cursor, Uuid)],
        events: &[RecordedEvent],
    ) -> Result<Step, EngineError> {
        let mut after = start;
        for (i, &(through, event_id)) in positions.iter().enumerate() {
            let mut tx = conn.begin().await?;
            let (cursor, state) = lock_checkpoint(&mut tx, projection.name()).await?;
            if state != "running" {
                return Ok(Step::Stopped);
            }
            if cursor >= through {
                after = through;
                continue; // another engine got here first
            }
            let single: Vec<RecordedEvent> = events.iter().filter(|e| e.cursor() == through).cloned().collect();
            match projection.apply(&mut tx, &Batch { after, through, events: &single }).await {
                Ok(()) => {
                    save_checkpoint(&mut tx, projection.name(), through, 1).await?;
                    tx.commit().await?;
                    after = through;
                }
                Err(ApplyError::Database(e)) if is_transient(&e) => return Err(e.into()),
                Err(e) => {
                    tx.rollback().await?;
                    let reason = match e {
                        ApplyError::Poison { reason, .. } => reason,
                        ApplyError::Database(e) => e.to_string(),
                    };
                    // Under the checkpoint lock, and only if no other engine has applied it meanwhile.
                    let mut tx = conn.begin().await?;
                    let (cursor, _) = lock_checkpoint(&mut tx, projection.name()).await?;
                    if cursor >= through {
                        return Ok(Step::Applied(i));
                    }
                    tracing::error!(projection = projection.name(), event_id = %event_id, %reason, "Projection stopped on an event it cannot apply.");
                    sqlx::query(
                        "UPDATE checkpoints SET state = 'stopped', error = $2, error_event_id = $3, error_at = now(), updated_at = now() \
                         WHERE name = $1",
                    )
                    .bind(projection.name())
                    .bind(&reason)
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    let stopped =
                        ProjectionEvent::ProjectionStopped { projection: projection.name().into(), event_id, reason };
                    self.record(
                        projection.name(),
                        stopped,
                        &unity_commands::metadata(unity_domain::Actor::system("projections"), "projections"),
                    )
                    .await?;
                    return Ok(if i == 0 { Step::Stopped } else { Step::Applied(i) });
                }
            }
        }
        Ok(Step::Applied(positions.len()))
    }

    /// Applies batches to one projection until it has passed `target` (or stopped), waiting up to
    /// `timeout` for transactions still open below it. Returns whether it got there.
    pub async fn run_until(&self, name: &str, target: Cursor, timeout: Duration) -> Result<bool, EngineError> {
        let projection = self.find(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.run_once(projection.as_ref()).await? {
                Step::Applied(_) => continue,
                Step::Stopped => return Ok(false),
                Step::CaughtUp => {}
            }
            let (position, _) = lock_checkpoint(&mut *self.store.pool().acquire().await?, name).await?;
            if position >= target {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Applies batches to every projection until all have caught up (or stopped).
    pub async fn catch_up(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        loop {
            let mut progressed = false;
            for p in &self.projections {
                if let Step::Applied(n) = self.run_once(p.as_ref()).await? {
                    total += n;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` turns true, woken by appends (or NATS / LISTEN) and polling as a fallback.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, poll_interval: Duration) {
        let mut wakeups = self.store.wakeup().subscribe();
        let mut backoff = Backoff::default();
        while !*shutdown.borrow() {
            let pause = match self.catch_up().await {
                Ok(_) => {
                    backoff.reset();
                    // A hint can come before its event is readable (a transaction elsewhere in
                    // the cluster holds the horizon back): look again shortly instead of waiting
                    // for the next hint or the poll.
                    match self.store.last_committed().await {
                        Ok(head) if self.behind(head).await.unwrap_or(0) > 0 => Some(Duration::from_millis(50)),
                        _ => None,
                    }
                }
                Err(e) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = %e, retry_in = ?pause, "Projections could not read the event store.");
                    Some(pause)
                }
            };
            wakeups.idle(&mut shutdown, pause, poll_interval).await;
        }
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, EngineError> {
        let mut out = Vec::new();
        for p in &self.projections {
            let row = sqlx::query(
                "SELECT transaction_id, global_position, events_handled, state, error, error_event_id FROM checkpoints WHERE name = $1",
            )
            .bind(p.name())
            .fetch_optional(self.store.pool())
            .await?;
            let status = match row {
                Some(r) => {
                    let position = Cursor::from_leading_columns(&r);
                    ProjectionStatus {
                        name: p.name().into(),
                        position,
                        events_handled: r.get(2),
                        lag: self.store.count_after(position).await?,
                        state: r.get(3),
                        error: r.get(4),
                        error_event_id: r.get(5),
                    }
                }
                None => ProjectionStatus {
                    name: p.name().into(),
                    position: Cursor::START,
                    events_handled: 0,
                    lag: self.store.count_after(Cursor::START).await?,
                    state: "running".into(),
                    error: None,
                    error_event_id: None,
                },
            };
            out.push(status);
        }
        Ok(out)
    }

    /// How many running projections have not yet passed `cursor`.
    async fn behind(&self, cursor: Cursor) -> Result<i64, EngineError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM checkpoints WHERE name = ANY($1) AND state = 'running' \
             AND (transaction_id, global_position) < ($2, $3)",
        )
        .bind(self.projections.iter().map(|p| p.name()).collect::<Vec<_>>())
        .bind(cursor.transaction_id)
        .bind(cursor.global_position)
        .fetch_one(self.store.pool())
        .await?)
    }

    /// Waits (bounded) until every running projection has passed `cursor`: read-your-writes.
    pub async fn wait_for(&self, cursor: Cursor, timeout: Duration) -> Result<bool, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Projections in this process say when they move; those elsewhere are polled.
        let mut wakeups = self.store.wakeup().subscribe_progress();
        loop {
            if self.behind(cursor).await? == 0 {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            wakeups.wait((deadline - now).min(Duration::from_millis(20))).await;
        }
    }
}

async fn lock_checkpoint(conn: &mut PgConnection, name: &str) -> Result<(Cursor, String), EngineError> {
    sqlx::query("INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query("SELECT transaction_id, global_position, state FROM checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok((Cursor::from_leading_columns(&row), row.get(2)))
}

async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    cursor: Cursor,
    handled: usize,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE checkpoints SET transaction_id = $2, global_position = $3, events_handled = events_handled + $4, updated_at = now() \
         WHERE name = $1",
    )
    .bind(name)
    .bind(cursor.transaction_id)
    .bind(cursor.global_position)
    .bind(handled as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Errors worth waiting out rather than blaming on an event.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // connection exceptions, serialization failures and deadlocks, shutdowns, resources
            code.starts_with("08") || code.starts_with("40") || code.starts_with("57") || code.starts_with("53")
        }
        _ => false,
    }
}

/// The events of `(after, through]` that `projection` wants in Rust.
async fn events_for(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    after: Cursor,
    through: Cursor,
) -> Result<Vec<RecordedEvent>, EngineError> {
    Ok(match projection.stream_types() {
        Some([]) => Vec::new(),
        types => read_range(conn, after, through, types).await?,
    })
}
