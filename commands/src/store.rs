//! The event store: append-only events in PostgreSQL with per-stream hash chains, optimistic
//! concurrency, atomic multi-stream batches, and a read order that never skips a late commit.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, SubsecRound, Utc};
use ring::digest;
use serde_json::Value;
use sqlx::{postgres::PgRow, AssertSqlSafe, PgPool, Row};
use unity_domain::{schema, DomainEvent, EventMetadata, StreamId};
use uuid::Uuid;

use crate::{canonical, wakeup::Wakeup};

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
    pub metadata: Value,
}

impl NewEvent {
    /// A domain event at its type's current schema version.
    pub fn from_domain<E: DomainEvent>(event: &E, metadata: &EventMetadata) -> NewEvent {
        let (event_type, payload) = event.to_parts();
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version: schema::current_version(event_type),
            payload,
            metadata: serde_json::to_value(metadata).expect("metadata serializes"),
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
    pub prev_hash: Vec<u8>,
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

    /// What the hash chain covers, recomputed from the stored fields.
    pub fn compute_hash(&self) -> [u8; 32] {
        event_hash(
            &self.prev_hash,
            &HashedFields {
                event_id: self.event_id,
                stream_id: &self.stream_id,
                stream_type: &self.stream_type,
                stream_version: self.stream_version,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                payload: &self.payload,
                metadata: &self.metadata,
                recorded_at: self.recorded_at,
            },
        )
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
    heads: Vec<(String, (i64, Vec<u8>))>,
}

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    wakeup: Wakeup,
    heads: Arc<HeadCache>,
    /// Events this process appended since it started, for /metrics.
    appended_total: Arc<std::sync::atomic::AtomicU64>,
}

/// The last `(version, hash)` of streams this process appended to, recorded after commit. An
/// entry can only lag behind the truth (versions only grow); a lagging one makes the insert hit
/// the unique `(stream_id, stream_version)` constraint, which is a conflict and a retry with a
/// fresh lookup. So the cache saves the lookup without ever risking a broken chain.
#[derive(Default)]
struct HeadCache {
    entries: Mutex<HashMap<String, (i64, Vec<u8>)>>,
}

impl HeadCache {
    const CAPACITY: usize = 100_000;

    fn get(&self, stream_id: &str) -> Option<(i64, Vec<u8>)> {
        self.entries.lock().expect("head cache lock").get(stream_id).cloned()
    }

    fn record(&self, heads: impl IntoIterator<Item = (String, (i64, Vec<u8>))>) {
        let mut entries = self.entries.lock().expect("head cache lock");
        if entries.len() > Self::CAPACITY {
            entries.clear();
        }
        entries.extend(heads);
    }

    fn forget(&self, stream_ids: &[String]) {
        let mut entries = self.entries.lock().expect("head cache lock");
        for id in stream_ids {
            entries.remove(id);
        }
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "global_position, transaction_id, event_id, stream_id, stream_type, stream_version, \
     event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash";

impl EventStore {
    pub fn new(pool: PgPool, wakeup: Wakeup) -> EventStore {
        EventStore { pool, wakeup, heads: Arc::default(), appended_total: Arc::default() }
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

    /// Appends events to one or more streams in one transaction: all or nothing.
    pub async fn append(&self, appends: Vec<StreamAppend>) -> Result<Appended, StoreError> {
        let retry_races = appends.iter().all(|a| a.expected == ExpectedVersion::Any);
        let mut attempts = 0;
        loop {
            match self.try_append(&appends).await {
                Err(StoreError::Conflict { .. }) if retry_races && attempts < 5 => attempts += 1,
                result => return result,
            }
        }
    }

    async fn try_append(&self, appends: &[StreamAppend]) -> Result<Appended, StoreError> {
        // No explicit transaction: the events go in with one INSERT statement, which is atomic on
        // its own, and the head lookup before it need not share its snapshot because the unique
        // (stream_id, stream_version) constraint is what guards against a racing writer. That
        // saves the BEGIN and COMMIT round trips on every append.
        let mut conn = self.pool.acquire().await?;
        let known: Vec<Option<(i64, Vec<u8>)>> = appends
            .iter()
            .map(|a| match a.expected {
                ExpectedVersion::Any => self.heads.get(&a.stream_id.to_string()),
                // Nothing to look up: a stream that exists makes the insert conflict.
                ExpectedVersion::NoStream => Some((0, GENESIS_HASH.to_vec())),
                ExpectedVersion::Exactly(v) => {
                    self.heads.get(&a.stream_id.to_string()).filter(|(cached, _)| *cached == v)
                }
            })
            .collect();
        let appended = match append_with_heads(&mut conn, appends, known).await {
            Ok(appended) => appended,
            Err(e) => {
                let ids: Vec<String> = appends.iter().map(|a| a.stream_id.to_string()).collect();
                self.heads.forget(&ids);
                return Err(e);
            }
        };
        self.heads.record(appended.heads.iter().cloned());
        self.appended_total.fetch_add(appended.event_ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.wakeup.notify();
        Ok(appended)
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
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
             ORDER BY stream_version"
        )))
        .bind(stream_id)
        .bind(as_of)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(event_from_row).collect())
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
            "SELECT transaction_id, global_position FROM events WHERE {READABLE} \
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
            "SELECT transaction_id, global_position FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Cursor::from_leading_columns(&r)).unwrap_or_default())
    }

    /// How many readable events lie after `after` (for lag and progress).
    pub async fn count_after(&self, after: Cursor) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1, $2) AND {READABLE}"
        )))
        .bind(after.transaction_id)
        .bind(after.global_position)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}

/// Appends inside the caller's transaction (which commits, or not, as the caller decides). On a
/// conflict the transaction is aborted, as any failed statement leaves it.
pub async fn append_in(conn: &mut sqlx::PgConnection, appends: &[StreamAppend]) -> Result<Appended, StoreError> {
    append_with_heads(conn, appends, vec![None; appends.len()]).await
}

/// [`append_in`], with the heads of some streams already known (`None`: look it up).
async fn append_with_heads(
    conn: &mut sqlx::PgConnection,
    appends: &[StreamAppend],
    known: Vec<Option<(i64, Vec<u8>)>>,
) -> Result<Appended, StoreError> {
    let mut seen = std::collections::HashSet::new();
    for a in appends {
        if !seen.insert(&a.stream_id) {
            return Err(StoreError::InvalidEvent(format!("stream {} appears twice in one append", a.stream_id)));
        }
        for e in &a.events {
            if canonical::find_nul(&e.payload) || canonical::find_nul(&e.metadata) {
                return Err(StoreError::InvalidEvent(format!("{} contains a NUL character", e.event_type)));
            }
        }
    }
    let stream_ids: Vec<String> = appends.iter().map(|a| a.stream_id.to_string()).collect();
    let recorded_at = Utc::now().trunc_subsecs(6);
    let unknown: Vec<String> =
        stream_ids.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(id, _)| id.clone()).collect();
    let mut looked_up = if unknown.is_empty() { Vec::new() } else { stream_heads(conn, &unknown).await? }.into_iter();
    let heads: Vec<(i64, Vec<u8>)> = known
        .into_iter()
        .map(|k| k.unwrap_or_else(|| looked_up.next().expect("one head per unknown stream")))
        .collect();

    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    let mut rows = Rows::with_capacity(total);
    let mut versions = Vec::with_capacity(appends.len());
    let mut new_heads = Vec::with_capacity(appends.len());
    for (append, (stream_id, (version, head_hash))) in appends.iter().zip(stream_ids.iter().zip(heads)) {
        let ok = match append.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::Exactly(v) => version == v,
        };
        if !ok {
            return Err(StoreError::Conflict {
                stream_id: stream_id.clone(),
                expected: append.expected,
                actual: version,
            });
        }
        let mut prev = head_hash;
        let mut v = version;
        for event in &append.events {
            v += 1;
            let hash = event_hash(
                &prev,
                &HashedFields {
                    event_id: event.event_id,
                    stream_id,
                    stream_type: append.stream_id.stream_type(),
                    stream_version: v,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    payload: &event.payload,
                    metadata: &event.metadata,
                    recorded_at,
                },
            );
            rows.push(event, stream_id, append.stream_id.stream_type(), v, recorded_at, prev, hash.to_vec());
            prev = hash.to_vec();
        }
        versions.push((append.stream_id.clone(), v));
        new_heads.push((stream_id.clone(), (v, prev)));
    }
    if total == 0 {
        return Ok(Appended { last: Cursor::START, versions, event_ids: vec![], heads: vec![] });
    }

    let inserted = sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type, schema_version, \
                             payload, metadata, recorded_at, prev_hash, hash) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int2[], \
                              $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::bytea[], $11::bytea[]) \
         RETURNING transaction_id, global_position",
    )
    .bind(&rows.event_ids)
    .bind(&rows.stream_ids)
    .bind(&rows.stream_types)
    .bind(&rows.versions)
    .bind(&rows.event_types)
    .bind(&rows.schema_versions)
    .bind(&rows.payloads)
    .bind(&rows.metadata)
    .bind(&rows.recorded_at)
    .bind(&rows.prev_hashes)
    .bind(&rows.hashes)
    .fetch_all(&mut *conn)
    .await;
    let inserted = match inserted {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            // Another writer appended to one of these streams since we read its head. PostgreSQL
            // says which: "Key (stream_id, stream_version)=(user-…, 3) already exists."
            let detail =
                db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|e| e.detail()).unwrap_or_default();
            let append = appends.iter().find(|a| detail.contains(&a.stream_id.to_string())).unwrap_or(&appends[0]);
            let expected_version = match append.expected {
                ExpectedVersion::Exactly(v) => v,
                _ => 0,
            };
            // At least one past what we expected; the exact head is unknown without a read.
            return Err(StoreError::Conflict {
                stream_id: append.stream_id.to_string(),
                expected: append.expected,
                actual: expected_version + 1,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let last = inserted.iter().map(Cursor::from_leading_columns).max().unwrap_or_default();
    Ok(Appended { last, versions, event_ids: rows.event_ids, heads: new_heads })
}

/// [`EventStore::read_after`] on a given connection, so a projection can read inside its own
/// transaction.
pub async fn read_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1, $2) \
           AND {READABLE} \
         ORDER BY transaction_id, global_position LIMIT $3"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

/// The positions (and event ids) of up to `limit` readable events after `after`, in store order:
/// an index-only scan that lets a projection work on a range without fetching the events.
pub async fn read_positions_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<(Cursor, Uuid)>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position, event_id FROM events \
         WHERE (transaction_id, global_position) > ($1, $2) AND {READABLE} \
         ORDER BY transaction_id, global_position LIMIT $3"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(|r| (Cursor::from_leading_columns(r), r.get(2))).collect())
}

/// Where a batch of up to `n` readable events after `after` ends, and how many it holds, without
/// fetching them: for rebuilds, whose projections work on ranges.
pub async fn range_end_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    n: i64,
) -> Result<Option<(Cursor, i64)>, StoreError> {
    let after_readable = format!("(transaction_id, global_position) > ($1, $2) AND {READABLE}");
    let nth = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position FROM events WHERE {after_readable} \
         ORDER BY transaction_id, global_position OFFSET $3 LIMIT 1"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(n - 1)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(r) = nth {
        return Ok(Some((Cursor::from_leading_columns(&r), n)));
    }
    // Fewer than n left: the last of them, and their count.
    let rest = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position, count(*) OVER () FROM events WHERE {after_readable} \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(rest.map(|r| (Cursor::from_leading_columns(&r), r.get(2))))
}

/// The events in `(after, through]` of the given stream types (all types for `None`), in store
/// order. The range must end at a cursor a reader has already seen, so it holds only committed
/// events and reads the same every time.
pub async fn read_range(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    through: Cursor,
    stream_types: Option<&[&str]>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1, $2) AND (transaction_id, global_position) <= ($3, $4) \
           AND ($5::text[] IS NULL OR stream_type = ANY($5)) \
         ORDER BY transaction_id, global_position"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(through.transaction_id)
    .bind(through.global_position)
    .bind(stream_types.map(|t| t.to_vec()))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

pub(crate) fn event_from_row(row: &PgRow) -> RecordedEvent {
    RecordedEvent {
        global_position: row.get(0),
        transaction_id: row.get(1),
        event_id: row.get(2),
        stream_id: row.get(3),
        stream_type: row.get(4),
        stream_version: row.get(5),
        event_type: row.get(6),
        schema_version: row.get(7),
        payload: row.get(8),
        metadata: row.get(9),
        recorded_at: row.get(10),
        prev_hash: row.get(11),
        hash: row.get(12),
    }
}

/// Each stream's current `(version, hash)`; `(0, GENESIS_HASH)` for a stream with no events.
async fn stream_heads(
    conn: &mut sqlx::PgConnection,
    stream_ids: &[String],
) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.ord, e.stream_version, e.hash FROM unnest($1::text[]) WITH ORDINALITY AS s(id, ord) \
         LEFT JOIN LATERAL (SELECT stream_version, hash FROM events WHERE stream_id = s.id \
                            ORDER BY stream_version DESC LIMIT 1) e ON true ORDER BY s.ord",
    )
    .bind(stream_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| match r.get::<Option<i64>, _>(1) {
            Some(v) => (v, r.get(2)),
            None => (0, GENESIS_HASH.to_vec()),
        })
        .collect())
}

pub(crate) struct HashedFields<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_type: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i16,
    pub payload: &'a Value,
    pub metadata: &'a Value,
    pub recorded_at: DateTime<Utc>,
}

/// SHA-256 over the previous hash and the canonical encoding of the event.
pub(crate) fn event_hash(prev_hash: &[u8], e: &HashedFields<'_>) -> [u8; 32] {
    let mut text = String::with_capacity(512);
    text.push_str(&format!("[\"{}\",", e.event_id));
    for field in [e.stream_id, e.stream_type] {
        canonical::write_string(field, &mut text);
        text.push(',');
    }
    text.push_str(&format!("{},", e.stream_version));
    canonical::write_string(e.event_type, &mut text);
    text.push_str(&format!(",{},{},", e.schema_version, e.recorded_at.timestamp_micros()));
    canonical::write_canonical(e.payload, &mut text);
    text.push(',');
    canonical::write_canonical(e.metadata, &mut text);
    text.push(']');
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(text.as_bytes());
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[derive(Default)]
struct Rows {
    event_ids: Vec<Uuid>,
    stream_ids: Vec<String>,
    stream_types: Vec<String>,
    versions: Vec<i64>,
    event_types: Vec<String>,
    schema_versions: Vec<i16>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

impl Rows {
    fn with_capacity(n: usize) -> Rows {
        Rows {
            event_ids: Vec::with_capacity(n),
            stream_ids: Vec::with_capacity(n),
            stream_types: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
            prev_hashes: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        e: &NewEvent,
        stream_id: &str,
        stream_type: &str,
        version: i64,
        at: DateTime<Utc>,
        prev: Vec<u8>,
        hash: Vec<u8>,
    ) {
        self.event_ids.push(e.event_id);
        self.stream_ids.push(stream_id.to_owned());
        self.stream_types.push(stream_type.to_owned());
        self.versions.push(version);
        self.event_types.push(e.event_type.clone());
        self.schema_versions.push(e.schema_version);
        self.payloads.push(e.payload.clone());
        self.metadata.push(e.metadata.clone());
        self.recorded_at.push(at);
        self.prev_hashes.push(prev);
        self.hashes.push(hash);
    }
}

/// Turns this process's appends into `unity_events` notifications for other processes: at most
/// one per `interval`, however many appends happen in it. Runs until `shutdown` turns true.
pub async fn announce_appends(
    store: EventStore,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut appends = store.wakeup().subscribe_appends();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = appends.changed() => {}
        }
        if let Err(e) = store.announce().await {
            tracing::debug!(error = %e, "Could not announce appends; other processes poll.");
        }
        tokio::time::sleep(interval).await;
    }
}
