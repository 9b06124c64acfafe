//! Retention: expired buckets of samples and summaries leave the log, recorded first.
//!
//! A removal goes in three steps, each safe to repeat after a crash:
//! 1. what the bucket holds (its event count, the digest of its hashes in log order, the last
//!    version and hash of each stream) is recorded as `BucketRemovalRecorded` in the bucket's own
//!    permanent `retention` stream, unless the newest record there already says exactly that;
//! 2. optionally the bucket's events are written to an archive (gzip-compressed JSON Lines with
//!    every hash, which [`verify_archive`] checks offline);
//! 3. the database function `unity_remove_bucket` (the one privileged path) checks the bucket
//!    against the record under a lock and drops its partition; `BucketRemoved` says it is done.
//!
//! `unity audit verify` then expects exactly the recorded streams to be missing (see
//! [`crate::integrity::verify`]).

use std::{
    collections::HashMap,
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use ring::digest;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool, Row};
use unity_domain::{
    retention::{removal_stream, BucketContents, RemovedStream, RetentionClass, RetentionEvent},
    EventMetadata,
};
use uuid::Uuid;

use crate::{
    integrity::Break,
    store::{
        event_from_row, partition_named, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
        StreamAppend, EVENTS_NAMED, EVENT_COLUMNS, GENESIS_HASH,
    },
};

/// How long each expiring class is kept, and where removed events are archived (if anywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub samples_days: u32,
    pub summaries_days: u32,
    pub archive_dir: Option<PathBuf>,
}

impl Default for RetentionPolicy {
    fn default() -> RetentionPolicy {
        RetentionPolicy { samples_days: 30, summaries_days: 730, archive_dir: None }
    }
}

impl RetentionPolicy {
    pub fn keep_days(&self, class: RetentionClass) -> Option<u32> {
        match class {
            RetentionClass::Permanent => None,
            RetentionClass::Samples => Some(self.samples_days),
            RetentionClass::Summaries => Some(self.summaries_days),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write the archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
}

impl From<sqlx::Error> for RetentionError {
    fn from(e: sqlx::Error) -> RetentionError {
        RetentionError::Store(e.into())
    }
}

/// One bucket removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Removal {
    pub class: &'static str,
    pub bucket: NaiveDate,
    pub events: i64,
    pub streams: usize,
    /// The `BucketRemovalRecorded` event it was removed by.
    pub record: Uuid,
    pub archive: Option<PathBuf>,
}

/// The partition that holds one bucket.
pub fn bucket_table(class: RetentionClass, bucket: NaiveDate) -> String {
    format!("event_log_{}_{}", class.name(), bucket.format("%Y%m%d"))
}

/// Every bucket that has a partition now, oldest first within each class.
pub async fn buckets(pool: &PgPool) -> Result<Vec<(RetentionClass, NaiveDate)>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('event_log_samples', 'event_log_summaries') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(names
        .iter()
        .filter_map(|name| {
            let (class, day) = name.strip_prefix("event_log_")?.rsplit_once('_')?;
            Some((RetentionClass::from_name(class)?, NaiveDate::parse_from_str(day, "%Y%m%d").ok()?))
        })
        .collect())
}

/// Removes every bucket whose events are all older than the policy keeps, as of `today`.
pub async fn run(
    store: &EventStore,
    policy: &RetentionPolicy,
    today: NaiveDate,
    metadata: &EventMetadata,
) -> Result<Vec<Removal>, RetentionError> {
    let mut removed = Vec::new();
    for (class, bucket) in buckets(store.pool()).await? {
        let Some(keep) = policy.keep_days(class) else { continue };
        if class.bucket_expired(bucket, today, keep) {
            if let Some(r) = remove_bucket(store, class, bucket, policy.archive_dir.as_deref(), metadata).await? {
                removed.push(r);
            }
        }
    }
    Ok(removed)
}

/// What the bucket holds now, as a removal record states it.
pub async fn describe(pool: &PgPool, class: RetentionClass, bucket: NaiveDate) -> Result<BucketContents, sqlx::Error> {
    let table = bucket_table(class, bucket);
    let (events, digest): (i64, Vec<u8>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT count(*), sha256(coalesce(string_agg(hash, ''::bytea ORDER BY global_position), ''::bytea)) FROM {table}"
    )))
    .fetch_one(pool)
    .await?;
    let mut streams: Vec<RemovedStream> = sqlx::query(AssertSqlSafe(format!(
        "SELECT DISTINCT ON (e.stream_uuid, e.stream_type) st.name || '-' || e.stream_uuid, e.stream_version, e.hash \
         FROM {table} e JOIN stream_types st ON st.key = e.stream_type \
         ORDER BY e.stream_uuid, e.stream_type, e.stream_version DESC"
    )))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| RemovedStream { stream_id: r.get(0), version: r.get(1), hash: hex::encode(r.get::<Vec<u8>, _>(2)) })
    .collect();
    // Bytewise, as the database function compares them (COLLATE "C").
    streams.sort_by(|a, b| a.stream_id.as_bytes().cmp(b.stream_id.as_bytes()));
    Ok(BucketContents { class: class.name().to_owned(), bucket, streams, events, digest: hex::encode(digest) })
}

/// Records, archives and removes one bucket. `None` if it was already removed.
pub async fn remove_bucket(
    store: &EventStore,
    class: RetentionClass,
    bucket: NaiveDate,
    archive_dir: Option<&Path>,
    metadata: &EventMetadata,
) -> Result<Option<Removal>, RetentionError> {
    let stream = removal_stream(class, bucket);
    let history = store.read_stream(&stream.to_string(), None).await?;
    let mut latest: Option<(Uuid, BucketContents)> = None;
    for event in &history {
        match event.decode::<RetentionEvent>().map_err(|e| StoreError::InvalidEvent(e.to_string()))? {
            RetentionEvent::BucketRemovalRecorded(contents) => latest = Some((event.event_id, contents)),
            RetentionEvent::BucketRemoved { .. } => return Ok(None),
        }
    }
    let mut version = history.len() as i64;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(bucket_table(class, bucket))
        .fetch_one(store.pool())
        .await?;
    if table.is_none() {
        // Removed by a run that stopped before saying so, or never there.
        let Some((record, contents)) = latest else { return Ok(None) };
        finished(store, &stream, version, record, contents.events, None, metadata).await?;
        return Ok(Some(Removal {
            class: class.name(),
            bucket,
            events: contents.events,
            streams: contents.streams.len(),
            record,
            archive: None,
        }));
    }
    let contents = describe(store.pool(), class, bucket).await?;
    let record = match latest {
        Some((id, recorded)) if recorded == contents => id,
        _ => {
            let event = NewEvent::from_domain(&RetentionEvent::BucketRemovalRecorded(contents.clone()), metadata);
            let id = event.event_id;
            let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version) };
            store.append(vec![StreamAppend { stream_id: stream.clone(), expected, events: vec![event] }]).await?;
            version += 1;
            id
        }
    };
    let archive = match archive_dir {
        Some(dir) => Some(write_archive(store.pool(), class, bucket, record, dir).await?),
        None => None,
    };
    let mut tx = store.pool().begin().await?;
    // Detaching waits for readers of the log that are running; give up rather than stall the
    // writers queued behind it, and try again on the next run.
    sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
    let events: i64 = sqlx::query_scalar("SELECT unity_remove_bucket($1)").bind(record).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    finished(store, &stream, version, record, events, archive.as_deref(), metadata).await?;
    tracing::info!(class = class.name(), %bucket, events, streams = contents.streams.len(), "Removed an expired bucket.");
    Ok(Some(Removal {
        class: class.name(),
        bucket,
        events: contents.events,
        streams: contents.streams.len(),
        record,
        archive,
    }))
}

/// Appends `BucketRemoved` after the stream's `version` events.
async fn finished(
    store: &EventStore,
    stream: &unity_domain::StreamId,
    version: i64,
    record: Uuid,
    events: i64,
    archive: Option<&Path>,
    metadata: &EventMetadata,
) -> Result<(), StoreError> {
    let done = RetentionEvent::BucketRemoved { record, events, archive: archive.map(|p| p.display().to_string()) };
    store
        .append(vec![StreamAppend {
            stream_id: stream.clone(),
            expected: ExpectedVersion::Exactly(version),
            events: vec![NewEvent::from_domain(&done, metadata)],
        }])
        .await?;
    Ok(())
}

/// One event as an archive line: every stored field, hashes in hex.
#[derive(Debug, Serialize, Deserialize)]
struct ArchivedEvent {
    global_position: i64,
    transaction_id: i64,
    event_id: Uuid,
    stream_id: String,
    stream_type: String,
    stream_version: i64,
    event_type: String,
    schema_version: i16,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
    prev_hash: String,
    hash: String,
}

impl ArchivedEvent {
    /// An event as archived, with the hash of the event before it in its stream.
    fn new(e: &RecordedEvent, prev_hash: &[u8]) -> ArchivedEvent {
        ArchivedEvent {
            global_position: e.global_position,
            transaction_id: e.transaction_id,
            event_id: e.event_id,
            stream_id: e.stream_id.clone(),
            stream_type: e.stream_type.clone(),
            stream_version: e.stream_version,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            payload: e.payload.clone(),
            metadata: e.metadata.clone(),
            recorded_at: e.recorded_at,
            prev_hash: hex::encode(prev_hash),
            hash: hex::encode(&e.hash),
        }
    }

    /// The event, and the hash of the one before it.
    fn into_recorded(self) -> Result<(RecordedEvent, Vec<u8>), String> {
        let hex = |s: &str| hex::decode(s).map_err(|_| format!("event {}: a hash is not hex", self.event_id));
        let prev_hash = hex(&self.prev_hash)?;
        let event = RecordedEvent {
            hash: hex(&self.hash)?,
            global_position: self.global_position,
            transaction_id: self.transaction_id,
            event_id: self.event_id,
            stream_id: self.stream_id,
            stream_type: self.stream_type,
            stream_version: self.stream_version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        };
        Ok((event, prev_hash))
    }
}

/// The first line of an archive: the removal record itself, as stored (so its own hash can be
/// checked, and matched against the log's `retention` stream).
#[derive(Debug, Serialize, Deserialize)]
struct ArchiveHeader {
    unity_archive: u32,
    record: ArchivedEvent,
}

/// Writes the bucket's events, in log order, to `<dir>/<class>-<bucket>-<record>.jsonl.gz`
/// (through a temporary name, renamed once complete and synced).
async fn write_archive(
    pool: &PgPool,
    class: RetentionClass,
    bucket: NaiveDate,
    record: Uuid,
    dir: &Path,
) -> Result<PathBuf, RetentionError> {
    let path = dir.join(format!("{}-{}-{record}.jsonl.gz", class.name(), bucket.format("%Y-%m-%d")));
    let failed = |reason: String| RetentionError::Archive { path: path.clone(), reason };
    let record = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} \
         WHERE e.retention_class = 0 AND e.bucket = '-infinity' AND e.event_id = $1"
    )))
    .bind(record)
    .fetch_one(pool)
    .await?;
    let record = event_from_row(&record);
    let record_prev: Vec<u8> = sqlx::query_scalar(
        "SELECT coalesce((SELECT e.hash FROM event_log e JOIN stream_types st ON st.key = e.stream_type \
                          WHERE e.retention_class = 0 AND e.bucket = '-infinity' AND e.stream_uuid = $1 \
                            AND st.name = $2 AND e.stream_version = $3), $4)",
    )
    .bind(removal_stream(class, bucket).id())
    .bind(removal_stream(class, bucket).stream_type())
    .bind(record.stream_version - 1)
    .bind(GENESIS_HASH.as_slice())
    .fetch_one(pool)
    .await?;
    let header = ArchiveHeader { unity_archive: 1, record: ArchivedEvent::new(&record, &record_prev) };
    let (lines, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let partial = path.with_extension("gz.partial");
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    let file = std::fs::File::create(&partial).map_err(|e| failed(e.to_string()))?;
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
        while let Some(chunk) = rx.blocking_recv() {
            gz.write_all(&chunk)?;
        }
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    });
    let mut chunk = serde_json::to_vec(&header).expect("header serializes");
    chunk.push(b'\n');
    let table = bucket_table(class, bucket);
    let mut rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {} ORDER BY e.global_position",
        partition_named(&table)
    )))
    .fetch(pool);
    let mut sent = Ok(());
    // Each stream of an expiring class lives wholly in its bucket, from version 1.
    let mut prev: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some(row) = rows.try_next().await? {
        let event = event_from_row(&row);
        let before = prev.insert(event.stream_id.clone(), event.hash.clone()).unwrap_or(GENESIS_HASH.to_vec());
        serde_json::to_writer(&mut chunk, &ArchivedEvent::new(&event, &before)).expect("event serializes");
        chunk.push(b'\n');
        if chunk.len() > 1 << 20 {
            sent = lines.send(std::mem::take(&mut chunk)).await;
            if sent.is_err() {
                break;
            }
        }
    }
    if sent.is_ok() && !chunk.is_empty() {
        let _ = lines.send(chunk).await;
    }
    drop(lines);
    writer.await.map_err(|e| failed(e.to_string()))?.map_err(|e| failed(e.to_string()))?;
    std::fs::rename(&partial, &path).map_err(|e| failed(e.to_string()))?;
    Ok(path)
}

/// What [`verify_archive`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArchiveReport {
    pub record: Option<Uuid>,
    /// The record's hash: the same event, with this hash, is in the log's `retention` stream.
    pub record_hash: String,
    pub class: String,
    pub bucket: Option<NaiveDate>,
    pub events_checked: u64,
    pub streams_checked: u64,
    pub breaks: Vec<Break>,
}

impl ArchiveReport {
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }

    fn report(&mut self, stream_id: &str, version: i64, reason: impl Into<String>) {
        if self.breaks.len() < crate::integrity::MAX_BREAKS {
            self.breaks.push(Break { stream_id: stream_id.to_owned(), version, reason: reason.into() });
        }
    }
}

/// Checks an archive offline: the record's own hash, every event's hash and chain, and that the
/// events are exactly what the record says was removed (count, digest, each stream's head).
/// `Err` only for a file that cannot be read as an archive at all.
pub fn verify_archive(path: &Path) -> Result<ArchiveReport, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let not_archive = |why: &str| format!("{} is not a Unity retention archive: {why}", path.display());
    let first = lines.next().ok_or_else(|| not_archive("it is empty"))?.map_err(|e| not_archive(&e.to_string()))?;
    let header: ArchiveHeader = serde_json::from_str(&first).map_err(|_| not_archive("its first line is no header"))?;
    let (record, record_prev) = header.record.into_recorded().map_err(|e| not_archive(&e))?;
    let mut report =
        ArchiveReport { record: Some(record.event_id), record_hash: hex::encode(&record.hash), ..Default::default() };
    if record.compute_hash(&record_prev).as_slice() != record.hash {
        report.report(
            &record.stream_id,
            record.stream_version,
            "the removal record was altered: its contents do not match its hash",
        );
    }
    let contents = match record.decode::<RetentionEvent>() {
        Ok(RetentionEvent::BucketRemovalRecorded(c)) => c,
        _ => return Err(not_archive("its header is not a removal record")),
    };
    report.class = contents.class.clone();
    report.bucket = Some(contents.bucket);
    let mut digest = digest::Context::new(&digest::SHA256);
    let mut heads: HashMap<String, (i64, Vec<u8>)> = HashMap::new();
    let mut last_position = i64::MIN;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| not_archive(&e.to_string()))?;
        let (event, prev_hash) = serde_json::from_str::<ArchivedEvent>(&line)
            .map_err(|_| not_archive(&format!("line {} is not an event", n + 2)))?
            .into_recorded()
            .map_err(|e| not_archive(&e))?;
        report.events_checked += 1;
        if event.global_position <= last_position {
            report.report(&event.stream_id, event.stream_version, "is out of log order");
        }
        last_position = event.global_position;
        digest.update(&event.hash);
        let (expected_version, expected_prev) = match heads.get(&event.stream_id) {
            Some((v, h)) => (v + 1, h.clone()),
            None => {
                report.streams_checked += 1;
                (1, GENESIS_HASH.to_vec())
            }
        };
        if event.stream_version != expected_version {
            report.report(
                &event.stream_id,
                expected_version,
                format!("version {expected_version} is missing (next found is {})", event.stream_version),
            );
        } else if prev_hash != expected_prev {
            report.report(&event.stream_id, event.stream_version, "does not chain to the event before it");
        } else if event.compute_hash(&prev_hash).as_slice() != event.hash {
            report.report(&event.stream_id, event.stream_version, "was altered: its contents do not match its hash");
        }
        heads.insert(event.stream_id, (event.stream_version, event.hash));
    }
    if report.events_checked as i64 != contents.events {
        report.report(
            "archive",
            0,
            format!("holds {} events; the record says {} were removed", report.events_checked, contents.events),
        );
    }
    if hex::encode(digest.finish()) != contents.digest {
        report.report("archive", 0, "its events' hashes do not match the record's digest");
    }
    for s in &contents.streams {
        match heads.get(&s.stream_id) {
            Some((v, h)) if *v == s.version && hex::encode(h) == s.hash => {}
            Some((v, _)) => {
                report.report(&s.stream_id, *v, format!("ends otherwise than the record's version {}", s.version))
            }
            None => report.report(&s.stream_id, 1, "is in the record but not in the archive"),
        }
    }
    if heads.len() != contents.streams.len() {
        report.report("archive", 0, "holds streams the record does not name");
    }
    Ok(report)
}
