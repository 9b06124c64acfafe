//! The event store: append-only events in PostgreSQL with per-stream hash chains, optimistic
//! concurrency, atomic multi-stream batches, and a read order that never skips a late commit.

mod append;
mod group;
mod names;
mod read;

pub use append::*;
pub use group::GroupCommit;
use names::Names;
pub use read::*;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{postgres::PgRow, AssertSqlSafe, PgPool, Row};
use unity_domain::{schema, DomainEvent, EventMetadata, StreamId};
use uuid::Uuid;

use crate::wakeup::Wakeup;

/// The hash that precedes version 1 of every stream.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// A position in the store's read order: `(transaction_id, global_position)`. Readers only ever
/// see positions below the oldest running transaction, so a cursor never jumps past an event
/// whose transaction has not committed yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor { transaction_id: 0, global_position: 0 };

    /// A cursor from a row whose first two columns are `transaction_id, global_position`.
    pub fn from_leading_columns(row: &PgRow) -> Cursor {
        Cursor { transaction_id: row.get(0), global_position: row.get(1) }
    }
}

/// The one rule every reader of the log follows (DESIGN.md §2): only events from transactions
/// older than the oldest still running, so a transaction that commits late is never passed.
pub const READABLE: &str = "transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there (retried internally on a race).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this.
    Exactly(i64),
}

/// An event about to be appended.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: Value,
    /// Shared by the events of one command, which the store then encodes and sends once.
    pub metadata: Arc<Value>,
}

impl NewEvent {
    /// A domain event at its type's current schema version.
    pub fn from_domain<E: DomainEvent>(event: &E, metadata: &EventMetadata) -> NewEvent {
        NewEvent::with_metadata(event, Arc::new(serde_json::to_value(metadata).expect("metadata serializes")))
    }

    /// The domain events of one command, sharing its metadata.
    pub fn from_domain_events<E: DomainEvent>(events: &[E], metadata: &EventMetadata) -> Vec<NewEvent> {
        let metadata = Arc::new(serde_json::to_value(metadata).expect("metadata serializes"));
        events.iter().map(|e| NewEvent::with_metadata(e, metadata.clone())).collect()
    }

    /// A domain event with metadata already serialized (and shared with others).
    pub fn with_metadata<E: DomainEvent>(event: &E, metadata: Arc<Value>) -> NewEvent {
        let (event_type, payload) = event.to_parts();
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version: schema::current_version(event_type),
            payload,
            metadata,
        }
    }
}

/// Events for one stream within an atomic append.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub global_position: i64,
    pub transaction_id: i64,
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    /// The version the payload was written with; see [`RecordedEvent::decode`].
    pub schema_version: i16,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// The stream's hash chain at this event (the previous event's hash is not stored: it is
    /// the hash of version − 1, or [`GENESIS_HASH`] before version 1).
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor { transaction_id: self.transaction_id, global_position: self.global_position }
    }

    /// The typed domain event, its payload upcast to the current schema version.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        let payload = schema::upcast(&self.event_type, self.schema_version, self.payload.clone())
            .map_err(|e| DecodeError { event_id: self.event_id, reason: e.to_string() })?;
        E::from_parts(&self.event_type, payload)
            .map_err(|e| DecodeError { event_id: self.event_id, reason: e.to_string() })
    }

    /// What the hash chain covers, recomputed from the stored fields and the hash of the event
    /// before it in its stream.
    pub fn compute_hash(&self, prev_hash: &[u8]) -> [u8; 32] {
        let (mut payload, mut metadata) = (String::new(), String::new());
        crate::canonical::write_canonical(&self.payload, &mut payload);
        crate::canonical::write_canonical(&self.metadata, &mut metadata);
        let fields = HashedFields {
            event_id: self.event_id,
            stream_id: &self.stream_id,
            stream_type: &self.stream_type,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
        };
        event_hash(prev_hash, &fields, &payload, &metadata)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("event {event_id} cannot be decoded: {reason}")]
pub struct DecodeError {
    pub event_id: Uuid,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id} is at version {actual}, not the expected {expected:?}")]
    Conflict { stream_id: String, expected: ExpectedVersion, actual: i64 },
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("the event store is unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an append wrote: the cursor of its last event (for read-your-writes) and each stream's
/// new version.
#[derive(Clone, Debug)]
pub struct Appended {
    pub last: Cursor,
    pub versions: Vec<(StreamId, i64)>,
    pub event_ids: Vec<Uuid>,
    /// Each stream's new `(version, hash)`.
    heads: Vec<(StreamId, Head)>,
}

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    wakeup: Wakeup,
    heads: Arc<HeadCache>,
    /// Events this process appended since it started, for /metrics.
    appended_total: Arc<std::sync::atomic::AtomicU64>,
    groups: Arc<group::Groups>,
    group_commit: GroupCommit,
    names: Arc<Names>,
}

/// The last `(version, hash)` of streams this process appended to, recorded after commit. An
/// entry can only lag behind the truth (versions only grow); a lagging one makes the insert hit
/// the unique `(stream, stream_version)` key, which is a conflict and a retry with a
/// fresh lookup. So the cache saves the lookup without ever risking a broken chain.
#[derive(Default)]
struct HeadCache {
    entries: Mutex<HashMap<StreamId, Head, foldhash::fast::RandomState>>,
}

impl HeadCache {
    const CAPACITY: usize = 100_000;

    fn get(&self, stream_id: &StreamId) -> Option<Head> {
        self.entries.lock().expect("head cache lock").get(stream_id).copied()
    }

    fn record(&self, heads: impl IntoIterator<Item = (StreamId, Head)>) {
        let mut entries = self.entries.lock().expect("head cache lock");
        if entries.len() > Self::CAPACITY {
            entries.clear();
        }
        entries.extend(heads);
    }

    fn forget(&self, stream_ids: &[StreamId]) {
        let mut entries = self.entries.lock().expect("head cache lock");
        for id in stream_ids {
            entries.remove(id);
        }
    }
}

/// What [`event_from_row`] reads, from [`EVENTS_NAMED`].
pub(crate) const EVENT_COLUMNS: &str =
    "e.global_position, e.transaction_id, e.event_id, st.name, e.stream_uuid, e.stream_version, \
     et.name, e.schema_version, e.payload, e.metadata, e.recorded_at, e.hash";

/// `event_log` as `e`, with its stream and event types' names (`st.name`, `et.name`).
pub(crate) const EVENTS_NAMED: &str =
    "event_log e JOIN stream_types st ON st.key = e.stream_type JOIN event_types et ON et.key = e.event_type";

/// [`EVENTS_NAMED`] for one partition of `event_log`.
pub(crate) fn partition_named(partition: &str) -> String {
    format!("{partition} e JOIN stream_types st ON st.key = e.stream_type JOIN event_types et ON et.key = e.event_type")
}

impl EventStore {
    pub fn new(pool: PgPool, wakeup: Wakeup) -> EventStore {
        EventStore {
            pool,
            wakeup,
            heads: Arc::default(),
            appended_total: Arc::default(),
            groups: Arc::default(),
            group_commit: GroupCommit::default(),
            names: Arc::default(),
        }
    }

    /// The same store with appends grouped as `config` says (see [`GroupCommit`]).
    pub fn with_group_commit(mut self, config: GroupCommit) -> EventStore {
        self.group_commit = config;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    /// How many events this process has appended since it started.
    pub fn appended_total(&self) -> u64 {
        self.appended_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends events to one or more streams in one transaction: all or nothing. Appends that
    /// arrive while another is being written share the next statement (group commit), each still
    /// checked against its own expected versions and told its own outcome.
    pub async fn append(&self, appends: Vec<StreamAppend>) -> Result<Appended, StoreError> {
        self.names.intern(&self.pool, &appends).await?;
        let retry_races = appends.iter().all(|a| a.expected == ExpectedVersion::Any);
        let appends = Arc::new(appends);
        let mut attempts = 0;
        loop {
            let known = self.known_heads(&appends);
            let events: usize = appends.iter().map(|a| a.events.len()).sum();
            let result = if self.group_commit.enabled && events < self.group_commit.alone_from {
                self.append_grouped(appends.clone(), known).await
            } else {
                self.append_alone(&appends, known).await
            };
            match result {
                Err(StoreError::Conflict { .. }) if retry_races && attempts < 5 => attempts += 1,
                result => return result,
            }
        }
    }

    /// Appends inside the caller's transaction (which commits, or not, as the caller decides). On
    /// a conflict the transaction is aborted, as any failed statement leaves it.
    pub async fn append_in(
        &self,
        conn: &mut sqlx::PgConnection,
        appends: &[StreamAppend],
    ) -> Result<Appended, StoreError> {
        // Names are given their keys outside the caller's transaction, which may roll back.
        self.names.intern(&self.pool, appends).await?;
        append_with_heads(conn, &self.names, appends, vec![None; appends.len()]).await
    }

    /// The heads this process already knows, as far as each expected version lets them be used.
    fn known_heads(&self, appends: &[StreamAppend]) -> Vec<Option<Head>> {
        appends
            .iter()
            .map(|a| match a.expected {
                ExpectedVersion::Any => self.heads.get(&a.stream_id),
                // Nothing to look up: a stream that exists makes the insert conflict.
                ExpectedVersion::NoStream => Some((0, GENESIS_HASH)),
                ExpectedVersion::Exactly(v) => self.heads.get(&a.stream_id).filter(|(cached, _)| *cached == v),
            })
            .collect()
    }

    /// One append with a statement of its own.
    async fn append_alone(&self, appends: &[StreamAppend], known: Vec<Option<Head>>) -> Result<Appended, StoreError> {
        // No explicit transaction: the events go in with one INSERT statement, which is atomic on
        // its own, and the head lookup before it need not share its snapshot because the unique
        // (stream_id, stream_version) constraint is what guards against a racing writer. That
        // saves the BEGIN and COMMIT round trips on every append.
        let mut conn = self.pool.acquire().await?;
        match append_with_heads(&mut conn, &self.names, appends, known).await {
            Ok(appended) => {
                self.committed(std::iter::once(&appended));
                Ok(appended)
            }
            Err(e) => {
                let ids: Vec<StreamId> = appends.iter().map(|a| a.stream_id.clone()).collect();
                self.heads.forget(&ids);
                Err(e)
            }
        }
    }

    /// After a commit: the new heads remembered, the count moved, local readers woken.
    fn committed<'a>(&self, appended: impl Iterator<Item = &'a Appended>) {
        let mut events = 0;
        for a in appended {
            self.heads.record(a.heads.iter().cloned());
            events += a.event_ids.len() as u64;
        }
        self.appended_total.fetch_add(events, std::sync::atomic::Ordering::Relaxed);
        self.wakeup.notify();
    }

    /// Tells other processes listening on `unity_events` that events were appended: a wake-up
    /// hint, sent outside any appending transaction (see [`announce_appends`]).
    pub async fn announce(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify('unity_events', '')").execute(&self.pool).await?;
        Ok(())
    }

    /// Every event of one stream, in version order, optionally only those recorded up to `as_of`.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // An id that is no `<type>-<uuid>` names no stream there could be.
        let Ok(id) = stream_id.parse::<StreamId>() else { return Ok(Vec::new()) };
        self.stream_events(&id, as_of, None).await
    }

    /// The last event of one stream (`None`: the stream has none).
    pub async fn last_event(&self, stream_id: &StreamId) -> Result<Option<RecordedEvent>, StoreError> {
        Ok(self.stream_events(stream_id, None, Some(1)).await?.pop())
    }

    /// A stream's events in version order: all of them up to `as_of`, or the `last` few.
    async fn stream_events(
        &self,
        id: &StreamId,
        as_of: Option<DateTime<Utc>>,
        last: Option<i64>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Only the stream's own partition, which its id says.
        let Ok((class, bucket)) = placement(id) else { return Ok(Vec::new()) };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} \
             WHERE e.stream_uuid = $1 AND st.name = $2 AND e.retention_class = $3 \
               AND e.bucket = coalesce($4, '-infinity'::date) AND ($5::timestamptz IS NULL OR e.recorded_at <= $5) \
             ORDER BY e.stream_version DESC LIMIT $6"
        )))
        .bind(id.id())
        .bind(id.stream_type())
        .bind(class)
        .bind(bucket)
        .bind(as_of)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().rev().map(event_from_row).collect())
    }

    /// Where the event `event_id`, version `version` of `stream_id`, stands in the log (`None`:
    /// the log does not hold it).
    pub async fn cursor_of(
        &self,
        stream_id: &StreamId,
        version: i64,
        event_id: Uuid,
    ) -> Result<Option<Cursor>, StoreError> {
        let Ok((class, bucket)) = placement(stream_id) else { return Ok(None) };
        let row = sqlx::query(
            "SELECT e.transaction_id, e.global_position FROM event_log e JOIN stream_types st ON st.key = e.stream_type \
             WHERE e.stream_uuid = $1 AND st.name = $2 AND e.retention_class = $3 \
               AND e.bucket = coalesce($4, '-infinity'::date) AND e.stream_version = $5 AND e.event_id = $6",
        )
        .bind(stream_id.id())
        .bind(stream_id.stream_type())
        .bind(class)
        .bind(bucket)
        .bind(version)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Cursor::from_leading_columns(&r)))
    }

    /// Up to `limit` events after `after`, in store order, none from a transaction that might
    /// still commit below them. Optionally only `stream_types`.
    pub async fn read_after(&self, after: Cursor, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_after(&mut conn, after, limit).await
    }

    /// The newest cursor a reader may reach now, and how many events lie beyond `from` up to it.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT transaction_id, global_position FROM event_log WHERE {READABLE} \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Cursor::from_leading_columns(&r)).unwrap_or_default())
    }

    /// The newest event committed now, whether or not a reader may pass it yet (an older
    /// transaction may still be open): where "everything written so far" ends.
    pub async fn last_committed(&self) -> Result<Cursor, StoreError> {
        let row = sqlx::query(
            "SELECT transaction_id, global_position FROM event_log ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Cursor::from_leading_columns(&r)).unwrap_or_default())
    }

    /// How many readable events lie after `after` (for lag and progress).
    pub async fn count_after(&self, after: Cursor) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM event_log WHERE (transaction_id, global_position) > ($1, $2) AND {READABLE}"
        )))
        .bind(after.transaction_id)
        .bind(after.global_position)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
