use super::*;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use ring::digest;
use sqlx::Row;
use uuid::Uuid;

use unity_domain::retention::{self, RetentionClass};

use crate::canonical;

/// Appends inside the caller's transaction (which commits, or not, as the caller decides). On a
/// conflict the transaction is aborted, as any failed statement leaves it.
pub async fn append_in(conn: &mut sqlx::PgConnection, appends: &[StreamAppend]) -> Result<Appended, StoreError> {
    append_with_heads(conn, appends, vec![None; appends.len()]).await
}

/// [`append_in`], with the heads of some streams already known (`None`: look it up).
pub(crate) async fn append_with_heads(
    conn: &mut sqlx::PgConnection,
    appends: &[StreamAppend],
    known: Vec<Option<(i64, Vec<u8>)>>,
) -> Result<Appended, StoreError> {
    validate(appends)?;
    let unknown: Vec<StreamId> =
        appends.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(a, _)| a.stream_id.clone()).collect();
    let mut looked_up = if unknown.is_empty() { Vec::new() } else { stream_heads(conn, &unknown).await? }.into_iter();
    let heads: Vec<(i64, Vec<u8>)> = known
        .into_iter()
        .map(|k| k.unwrap_or_else(|| looked_up.next().expect("one head per unknown stream")))
        .collect();
    let mut rows = Rows::with_capacity(appends.iter().map(|a| a.events.len()).sum());
    let planned = plan(appends, heads, Utc::now().trunc_subsecs(6), &mut rows)?;
    if rows.is_empty() {
        return Ok(planned.appended(&[]));
    }
    let inserted = insert(conn, &rows).await.map_err(|e| conflict_of(e, appends))?;
    Ok(planned.appended(&inserted))
}

/// Refuses what no head could make valid: a stream twice in one append, a NUL character, a
/// stream of an expiring class whose id names no bucket.
pub(crate) fn validate(appends: &[StreamAppend]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for a in appends {
        placement(&a.stream_id)?;
        if !seen.insert(&a.stream_id) {
            return Err(StoreError::InvalidEvent(format!("stream {} appears twice in one append", a.stream_id)));
        }
        for e in &a.events {
            if canonical::find_nul(&e.payload) || canonical::find_nul(&e.metadata) {
                return Err(StoreError::InvalidEvent(format!("{} contains a NUL character", e.event_type)));
            }
        }
    }
    Ok(())
}

/// One append checked against its streams' heads and turned into rows (added to `rows`), with
/// the hash chain computed: what it will have written once the rows are in.
pub(crate) struct Planned {
    versions: Vec<(StreamId, i64)>,
    event_ids: Vec<Uuid>,
    heads: Vec<(String, (i64, Vec<u8>))>,
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

    pub(crate) fn heads(&self) -> &[(String, (i64, Vec<u8>))] {
        &self.heads
    }
}

/// Checks each stream's expected version against its head (`heads`, in the order of `appends`)
/// and pushes the events' rows, chained from those heads and stamped `recorded_at`.
pub(crate) fn plan(
    appends: &[StreamAppend],
    heads: Vec<(i64, Vec<u8>)>,
    recorded_at: DateTime<Utc>,
    rows: &mut Rows,
) -> Result<Planned, StoreError> {
    let mut versions = Vec::with_capacity(appends.len());
    let mut new_heads = Vec::with_capacity(appends.len());
    let mut event_ids = Vec::new();
    let start = rows.len();
    for (append, (version, head_hash)) in appends.iter().zip(heads) {
        let stream_id = append.stream_id.to_string();
        let (class, bucket) = placement(&append.stream_id)?;
        let ok = match append.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::Exactly(v) => version == v,
        };
        if !ok {
            rows.truncate(start);
            return Err(StoreError::Conflict { stream_id, expected: append.expected, actual: version });
        }
        let mut prev = head_hash;
        let mut v = version;
        for event in &append.events {
            v += 1;
            let (mut payload, mut metadata) = (String::with_capacity(256), String::with_capacity(256));
            canonical::write_canonical(&event.payload, &mut payload);
            canonical::write_canonical(&event.metadata, &mut metadata);
            let fields = HashedFields {
                event_id: event.event_id,
                stream_id: &stream_id,
                stream_type: append.stream_id.stream_type(),
                stream_version: v,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at,
            };
            let hash = event_hash(&prev, &fields, &payload, &metadata);
            rows.push(&fields, payload, metadata, prev, hash.to_vec());
            rows.classes.push(class);
            rows.buckets.push(bucket);
            event_ids.push(event.event_id);
            prev = hash.to_vec();
        }
        versions.push((append.stream_id.clone(), v));
        new_heads.push((stream_id, (v, prev)));
    }
    Ok(Planned { versions, event_ids, heads: new_heads })
}

/// Inserts the rows with one statement (atomic on its own) and returns each one's id and cursor.
pub(crate) async fn insert(conn: &mut sqlx::PgConnection, rows: &Rows) -> Result<Vec<(Uuid, Cursor)>, sqlx::Error> {
    ensure_buckets(conn, rows).await?;
    let inserted = sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type, schema_version, \
                             payload, metadata, recorded_at, prev_hash, hash, retention_class, bucket) \
         SELECT e, s, t, v, et, sv, p::jsonb, m::jsonb, r, ph, h, c, coalesce(b, '-infinity') \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int2[], \
                     $7::text[], $8::text[], $9::timestamptz[], $10::bytea[], $11::bytea[], $12::int2[], $13::date[]) \
                AS u(e, s, t, v, et, sv, p, m, r, ph, h, c, b) \
         RETURNING transaction_id, global_position, event_id",
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
/// read: a conflict. PostgreSQL says which: "Key (stream_id, stream_version)=(user-…, 3) already
/// exists."
pub(crate) fn conflict_of(e: sqlx::Error, appends: &[StreamAppend]) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let detail =
                db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|e| e.detail()).unwrap_or_default();
            let append = appends.iter().find(|a| detail.contains(&a.stream_id.to_string())).unwrap_or(&appends[0]);
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
) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
    let mut ids = Vec::with_capacity(stream_ids.len());
    let (mut classes, mut buckets) = (Vec::with_capacity(stream_ids.len()), Vec::with_capacity(stream_ids.len()));
    for id in stream_ids {
        // Validated before any lookup; a stream that names no bucket has no events.
        let (class, bucket) = placement(id).unwrap_or((0, None));
        ids.push(id.to_string());
        classes.push(class);
        buckets.push(bucket);
    }
    let rows = sqlx::query(
        "SELECT s.ord, e.stream_version, e.hash \
         FROM unnest($1::text[], $2::int2[], $3::date[]) WITH ORDINALITY AS s(id, c, b, ord) \
         LEFT JOIN LATERAL (SELECT stream_version, hash FROM events \
                            WHERE stream_id = s.id AND retention_class = s.c AND bucket = coalesce(s.b, '-infinity') \
                            ORDER BY stream_version DESC LIMIT 1) e ON true ORDER BY s.ord",
    )
    .bind(&ids)
    .bind(&classes)
    .bind(&buckets)
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
    let mut text = String::with_capacity(160);
    text.push_str(&format!("[\"{}\",", e.event_id));
    for field in [e.stream_id, e.stream_type] {
        canonical::write_string(field, &mut text);
        text.push(',');
    }
    text.push_str(&format!("{},", e.stream_version));
    canonical::write_string(e.event_type, &mut text);
    text.push_str(&format!(",{},{},", e.schema_version, e.recorded_at.timestamp_micros()));
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(text.as_bytes());
    ctx.update(payload.as_bytes());
    ctx.update(b",");
    ctx.update(metadata.as_bytes());
    ctx.update(b"]");
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[derive(Default)]
pub(crate) struct Rows {
    event_ids: Vec<Uuid>,
    stream_ids: Vec<String>,
    stream_types: Vec<String>,
    versions: Vec<i64>,
    event_types: Vec<String>,
    schema_versions: Vec<i16>,
    /// Canonical JSON text, which PostgreSQL parses into JSONB: the encoding the hash covers,
    /// made once per event and sent as it is.
    payloads: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    classes: Vec<i16>,
    buckets: Vec<Option<NaiveDate>>,
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        self.event_ids.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.event_ids.is_empty()
    }

    fn truncate(&mut self, n: usize) {
        self.event_ids.truncate(n);
        self.stream_ids.truncate(n);
        self.stream_types.truncate(n);
        self.versions.truncate(n);
        self.event_types.truncate(n);
        self.schema_versions.truncate(n);
        self.payloads.truncate(n);
        self.metadata.truncate(n);
        self.recorded_at.truncate(n);
        self.prev_hashes.truncate(n);
        self.hashes.truncate(n);
        self.classes.truncate(n);
        self.buckets.truncate(n);
    }

    pub(crate) fn with_capacity(n: usize) -> Rows {
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
            classes: Vec::with_capacity(n),
            buckets: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, e: &HashedFields<'_>, payload: String, metadata: String, prev: Vec<u8>, hash: Vec<u8>) {
        self.event_ids.push(e.event_id);
        self.stream_ids.push(e.stream_id.to_owned());
        self.stream_types.push(e.stream_type.to_owned());
        self.versions.push(e.stream_version);
        self.event_types.push(e.event_type.to_owned());
        self.schema_versions.push(e.schema_version);
        self.payloads.push(payload);
        self.metadata.push(metadata);
        self.recorded_at.push(e.recorded_at);
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
