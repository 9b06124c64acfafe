use super::*;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use ring::digest;
use sqlx::{encode::IsNull, error::BoxDynError, postgres::PgArgumentBuffer, AssertSqlSafe, Postgres, Row};
use uuid::Uuid;

use unity_domain::retention::{self, RetentionClass};

use crate::canonical;

/// A stream's last `(version, hash)`.
pub(crate) type Head = (i64, [u8; 32]);

/// [`EventStore::append_in`] with the names already interned and the heads of some streams
/// already known (`None`: look it up).
pub(crate) async fn append_with_heads(
    conn: &mut sqlx::PgConnection,
    names: &Names,
    appends: &[StreamAppend],
    known: Vec<Option<Head>>,
) -> Result<Appended, StoreError> {
    validate(appends)?;
    let unknown: Vec<StreamId> =
        appends.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(a, _)| a.stream_id.clone()).collect();
    let mut looked_up = if unknown.is_empty() { Vec::new() } else { stream_heads(conn, &unknown).await? }.into_iter();
    let heads: Vec<Head> = known
        .into_iter()
        .map(|k| k.unwrap_or_else(|| looked_up.next().expect("one head per unknown stream")))
        .collect();
    let mut rows = Rows::new(Utc::now().trunc_subsecs(6), appends.iter().map(|a| a.events.len()).sum());
    let planned = plan(appends, heads, names, &mut rows)?;
    if rows.is_empty() {
        return Ok(planned.appended(&[]));
    }
    // Every row is this append's: only the last one's cursor is needed back.
    let last = insert(conn, &rows, Returning::Last).await.map_err(|e| conflict_of(e, appends))?;
    Ok(planned.appended_through(last.into_iter().next().map(|(_, c)| c).unwrap_or_default()))
}

/// Refuses what no head could make valid: a stream twice in one append, a stream of an expiring
/// class whose id names no bucket. (A NUL character is found while encoding, in [`plan`].)
pub(crate) fn validate(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for a in appends {
        placement(&a.stream_id)?;
        if !seen.insert(&a.stream_id) {
            return Err(StoreError::InvalidEvent(format!("stream {} appears twice in one append", a.stream_id)));
        }
    }
    Ok(())
}

/// One append checked against its streams' heads and turned into rows (added to `rows`), with
/// the hash chain computed: what it will have written once the rows are in.
pub(crate) struct Planned {
    versions: Vec<(StreamId, i64)>,
    event_ids: Vec<Uuid>,
    heads: Vec<(StreamId, Head)>,
}

impl Planned {
    /// The outcome, given the `(event_id, cursor)` of every inserted row (of this append or more).
    pub(crate) fn appended(self, inserted: &[(Uuid, Cursor)]) -> Appended {
        let last = if self.event_ids.is_empty() {
            Cursor::START
        } else {
            let mine: std::collections::HashSet<&Uuid> = self.event_ids.iter().collect();
            inserted.iter().filter(|(id, _)| mine.contains(id)).map(|(_, c)| *c).max().unwrap_or_default()
        };
        Appended { last, versions: self.versions, event_ids: self.event_ids, heads: self.heads }
    }

    /// The outcome, when this append's last event is at `last`.
    pub(crate) fn appended_through(self, last: Cursor) -> Appended {
        Appended { last, versions: self.versions, event_ids: self.event_ids, heads: self.heads }
    }

    pub(crate) fn heads(&self) -> &[(StreamId, Head)] {
        &self.heads
    }
}

/// Checks each stream's expected version against its head (`heads`, in the order of `appends`)
/// and pushes the events' rows, chained from those heads and stamped with the rows' time. On a
/// refusal nothing of this append stays in `rows`.
pub(crate) fn plan(
    appends: &[StreamAppend],
    heads: Vec<Head>,
    names: &Names,
    rows: &mut Rows,
) -> Result<Planned, StoreError> {
    let start = rows.len();
    let planned = plan_rows(appends, heads, names, rows);
    if planned.is_err() {
        rows.truncate(start);
    }
    planned
}

fn plan_rows(
    appends: &[StreamAppend],
    heads: Vec<Head>,
    names: &Names,
    rows: &mut Rows,
) -> Result<Planned, StoreError> {
    let mut versions = Vec::with_capacity(appends.len());
    let mut new_heads = Vec::with_capacity(appends.len());
    let mut event_ids = Vec::new();
    for (append, (version, head_hash)) in appends.iter().zip(heads) {
        let stream_id = append.stream_id.to_string();
        let (class, bucket) = placement(&append.stream_id)?;
        let ok = match append.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::Exactly(v) => version == v,
        };
        if !ok {
            return Err(StoreError::Conflict { stream_id, expected: append.expected, actual: version });
        }
        let stream_type = names.stream_type(append.stream_id.stream_type());
        let mut prev = head_hash;
        let mut v = version;
        for event in &append.events {
            v += 1;
            let mut payload = String::with_capacity(256);
            canonical::write_canonical(&event.payload, &mut payload);
            let metadata = rows.metadata_index(&event.metadata);
            if canonical::contains_nul(&payload) || canonical::contains_nul(&rows.metadata[metadata].0) {
                return Err(StoreError::InvalidEvent(format!("{} contains a NUL character", event.event_type)));
            }
            let fields = HashedFields {
                event_id: event.event_id,
                stream_id: &stream_id,
                stream_type: append.stream_id.stream_type(),
                stream_version: v,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at: rows.recorded_at,
            };
            let hash = event_hash(&prev, &fields, &payload, &rows.metadata[metadata].0);
            rows.event_ids.push(event.event_id);
            rows.stream_uuids.push(append.stream_id.id());
            rows.stream_types.push(stream_type);
            rows.versions.push(v);
            rows.event_types.push(names.event_type(&event.event_type));
            rows.schema_versions.push(event.schema_version);
            rows.payloads.push(Json(payload));
            rows.metadata_of.push(metadata as i32 + 1);
            rows.hashes.push(hash);
            rows.classes.push(class);
            rows.buckets.push(bucket);
            event_ids.push(event.event_id);
            prev = hash;
        }
        versions.push((append.stream_id.clone(), v));
        new_heads.push((append.stream_id.clone(), (v, prev)));
    }
    Ok(Planned { versions, event_ids, heads: new_heads })
}

/// What [`insert`] tells of the rows it wrote.
pub(crate) enum Returning {
    /// Each row's id and cursor (rows of several appends).
    Each,
    /// The last row's cursor only (its id is nil).
    Last,
}

/// Inserts the rows with one statement (atomic on its own) and returns their ids and cursors, as
/// `returning` asks. The rows go in the order of the arrays, so positions follow versions within
/// a stream.
pub(crate) async fn insert(
    conn: &mut sqlx::PgConnection,
    rows: &Rows,
    returning: Returning,
) -> Result<Vec<(Uuid, Cursor)>, sqlx::Error> {
    ensure_buckets(conn, rows).await?;
    let insert =
        "INSERT INTO event_log (event_id, stream_uuid, stream_type, stream_version, event_type, schema_version, \
                                payload, metadata, recorded_at, hash, retention_class, bucket) \
         SELECT e, s, t, v, et, sv, p, ($8::jsonb[])[m], $9, h, c, coalesce(b, '-infinity') \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int2[], $4::int8[], $5::int2[], $6::int2[], $7::json[], \
                     $10::int4[], $11::bytea[], $12::int2[], $13::date[]) AS u(e, s, t, v, et, sv, p, m, h, c, b) \
         RETURNING transaction_id, global_position, event_id";
    // One statement either way; a thousand rows sent back cost more than the aggregate.
    let query = match returning {
        Returning::Each => insert.to_owned(),
        Returning::Last => format!(
            "WITH inserted AS ({insert}) \
             SELECT transaction_id, global_position, '00000000-0000-0000-0000-000000000000'::uuid FROM inserted \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        ),
    };
    let inserted = sqlx::query(AssertSqlSafe(query))
        .bind(&rows.event_ids)
        .bind(&rows.stream_uuids)
        .bind(&rows.stream_types)
        .bind(&rows.versions)
        .bind(&rows.event_types)
        .bind(&rows.schema_versions)
        .bind(&rows.payloads)
        .bind(&rows.metadata)
        .bind(rows.recorded_at)
        .bind(&rows.metadata_of)
        .bind(&rows.hashes)
        .bind(&rows.classes)
        .bind(&rows.buckets)
        .fetch_all(&mut *conn)
        .await?;
    Ok(inserted.iter().map(|r| (r.get(2), Cursor::from_leading_columns(r))).collect())
}

/// Where a stream's events live: its retention class and (for an expiring class) its bucket.
pub(crate) fn placement(stream_id: &StreamId) -> Result<(i16, Option<NaiveDate>), StoreError> {
    let class = RetentionClass::of(stream_id.stream_type());
    let bucket = class.bucket_of(stream_id).map_err(StoreError::InvalidEvent)?;
    Ok((class.code(), bucket))
}

/// Makes the partition of every bucket these rows go to, if it is not there yet (one round trip,
/// only for appends of an expiring class). Refused for a bucket that retention removed.
async fn ensure_buckets(conn: &mut sqlx::PgConnection, rows: &Rows) -> Result<(), sqlx::Error> {
    let mut buckets: Vec<(i16, NaiveDate)> =
        rows.classes.iter().zip(&rows.buckets).filter_map(|(c, b)| b.map(|b| (*c, b))).collect();
    if buckets.is_empty() {
        return Ok(());
    }
    buckets.sort_unstable();
    buckets.dedup();
    let removal_streams: Vec<String> = buckets
        .iter()
        .map(|(c, b)| {
            let class = RetentionClass::from_code(*c).expect("a class this build wrote");
            retention::removal_stream(class, *b).to_string()
        })
        .collect();
    let (classes, days): (Vec<i16>, Vec<NaiveDate>) = buckets.into_iter().unzip();
    sqlx::query("SELECT unity_events_bucket(c, d, r) FROM UNNEST($1::int2[], $2::date[], $3::text[]) AS u(c, d, r)")
        .bind(&classes)
        .bind(&days)
        .bind(&removal_streams)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A unique violation is another writer's append to one of these streams since their heads were
/// read: a conflict. PostgreSQL names the stream by its UUID: "Key (stream_uuid, stream_type,
/// stream_version, …)=(0193…, 4, 3, …) already exists."
pub(crate) fn conflict_of(e: sqlx::Error, appends: &[StreamAppend]) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let detail =
                db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|e| e.detail()).unwrap_or_default();
            let append = appends.iter().find(|a| detail.contains(&a.stream_id.id().to_string())).unwrap_or(&appends[0]);
            let expected_version = match append.expected {
                ExpectedVersion::Exactly(v) => v,
                _ => 0,
            };
            // At least one past what we expected; the exact head is unknown without a read.
            StoreError::Conflict {
                stream_id: append.stream_id.to_string(),
                expected: append.expected,
                actual: expected_version + 1,
            }
        }
        e => e.into(),
    }
}

/// Each stream's current `(version, hash)`; `(0, GENESIS_HASH)` for a stream with no events.
/// Each lookup goes only to the stream's own partition.
pub(crate) async fn stream_heads(
    conn: &mut sqlx::PgConnection,
    stream_ids: &[StreamId],
) -> Result<Vec<Head>, sqlx::Error> {
    let n = stream_ids.len();
    let (mut uuids, mut types, mut classes, mut buckets) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for id in stream_ids {
        // Validated before any lookup; a stream that names no bucket has no events.
        let (class, bucket) = placement(id).unwrap_or((0, None));
        uuids.push(id.id());
        types.push(id.stream_type());
        classes.push(class);
        buckets.push(bucket);
    }
    let rows = sqlx::query(
        "SELECT s.ord, e.stream_version, e.hash \
         FROM unnest($1::uuid[], $2::text[], $3::int2[], $4::date[]) WITH ORDINALITY AS s(u, t, c, b, ord) \
         LEFT JOIN stream_types st ON st.name = s.t \
         LEFT JOIN LATERAL (SELECT stream_version, hash FROM event_log \
                            WHERE stream_uuid = s.u AND stream_type = st.key AND retention_class = s.c \
                              AND bucket = coalesce(s.b, '-infinity') \
                            ORDER BY stream_version DESC LIMIT 1) e ON true ORDER BY s.ord",
    )
    .bind(&uuids)
    .bind(&types)
    .bind(&classes)
    .bind(&buckets)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| match r.get::<Option<i64>, _>(1) {
            Some(v) => (v, r.get(2)),
            None => (0, GENESIS_HASH),
        })
        .collect())
}

/// What an event's hash covers besides its payload and metadata.
pub(crate) struct HashedFields<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_type: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i16,
    pub recorded_at: DateTime<Utc>,
}

/// SHA-256 over the previous hash and the canonical encoding of the event, with the payload and
/// metadata given in their canonical encoding (which is also what the insert sends, so each is
/// encoded once).
pub(crate) fn event_hash(prev_hash: &[u8], e: &HashedFields<'_>, payload: &str, metadata: &str) -> [u8; 32] {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(160);
    let _ = write!(text, "[\"{}\",", e.event_id);
    for field in [e.stream_id, e.stream_type] {
        canonical::write_string(field, &mut text);
        text.push(',');
    }
    let _ = write!(text, "{},", e.stream_version);
    canonical::write_string(e.event_type, &mut text);
    let _ = write!(text, ",{},{},", e.schema_version, e.recorded_at.timestamp_micros());
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(text.as_bytes());
    ctx.update(payload.as_bytes());
    ctx.update(b",");
    ctx.update(metadata.as_bytes());
    ctx.update(b"]");
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// JSON text sent as `json` (whose binary format is the text itself).
#[derive(Clone, Debug)]
pub(crate) struct Json(pub String);

impl sqlx::Type<Postgres> for Json {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("json")
    }
}

impl sqlx::postgres::PgHasArrayType for Json {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("_json")
    }
}

impl sqlx::Encode<'_, Postgres> for Json {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// JSON text sent as JSONB (binary format: a version byte, then the text), which PostgreSQL
/// parses once, when it binds the array.
#[derive(Clone, Debug)]
pub(crate) struct Jsonb(pub String);

impl sqlx::Type<Postgres> for Jsonb {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("jsonb")
    }
}

impl sqlx::postgres::PgHasArrayType for Jsonb {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("_jsonb")
    }
}

impl sqlx::Encode<'_, Postgres> for Jsonb {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// The columns of the rows one statement inserts, as arrays. Events of one command share their
/// metadata: it is encoded, sent and parsed once, and each row points at it.
pub(crate) struct Rows {
    recorded_at: DateTime<Utc>,
    event_ids: Vec<Uuid>,
    stream_uuids: Vec<Uuid>,
    stream_types: Vec<i16>,
    versions: Vec<i64>,
    event_types: Vec<i16>,
    schema_versions: Vec<i16>,
    /// Canonical JSON text: the encoding the hash covers, made once per event, sent and stored
    /// as it is (a `json` column).
    payloads: Vec<Json>,
    /// Each row's metadata, as a 1-based index into `metadata`.
    metadata_of: Vec<i32>,
    metadata: Vec<Jsonb>,
    /// The metadata value `metadata`'s last entry was encoded from.
    last_metadata: Option<Arc<Value>>,
    hashes: Vec<[u8; 32]>,
    classes: Vec<i16>,
    buckets: Vec<Option<NaiveDate>>,
}

impl Rows {
    /// Empty rows, all to be stamped `recorded_at`.
    pub(crate) fn new(recorded_at: DateTime<Utc>, capacity: usize) -> Rows {
        Rows {
            recorded_at,
            event_ids: Vec::with_capacity(capacity),
            stream_uuids: Vec::with_capacity(capacity),
            stream_types: Vec::with_capacity(capacity),
            versions: Vec::with_capacity(capacity),
            event_types: Vec::with_capacity(capacity),
            schema_versions: Vec::with_capacity(capacity),
            payloads: Vec::with_capacity(capacity),
            metadata_of: Vec::with_capacity(capacity),
            metadata: Vec::new(),
            last_metadata: None,
            hashes: Vec::with_capacity(capacity),
            classes: Vec::with_capacity(capacity),
            buckets: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.event_ids.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.event_ids.is_empty()
    }

    /// The index of `metadata`'s canonical text in `self.metadata`: the last one when it is the
    /// same value (as it is for every event of one command), else a new entry.
    fn metadata_index(&mut self, metadata: &Arc<Value>) -> usize {
        let same = self.last_metadata.as_ref().is_some_and(|last| Arc::ptr_eq(last, metadata) || last == metadata);
        if !same {
            let mut text = String::with_capacity(160);
            canonical::write_canonical(metadata, &mut text);
            self.metadata.push(Jsonb(text));
            self.last_metadata = Some(metadata.clone());
        }
        self.metadata.len() - 1
    }

    fn truncate(&mut self, n: usize) {
        self.event_ids.truncate(n);
        self.stream_uuids.truncate(n);
        self.stream_types.truncate(n);
        self.versions.truncate(n);
        self.event_types.truncate(n);
        self.schema_versions.truncate(n);
        self.payloads.truncate(n);
        self.metadata_of.truncate(n);
        self.hashes.truncate(n);
        self.classes.truncate(n);
        self.buckets.truncate(n);
        // Entries of `metadata` no row points at any more are harmless.
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
