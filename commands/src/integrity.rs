//! Tamper evidence: seals over stream heads, and the verification behind `unity audit verify`.
//!
//! Each event's hash chains to the previous one in its stream, which catches a changed payload
//! or a removed event in the middle. A chain alone cannot notice its own end being cut off, nor a
//! whole stream vanishing, so a seal periodically records the head of every stream changed since
//! the previous seal, and chains to that seal.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use futures::TryStreamExt;
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgPool, Row};
use unity_domain::{
    retention::{RemovedStream, RetentionClass, RetentionEvent},
    StreamId,
};

use crate::{
    canonical,
    store::{event_from_row, Cursor, StoreError, EVENTS_NAMED, EVENT_COLUMNS, GENESIS_HASH, READABLE},
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SealedHead {
    pub stream_id: String,
    pub version: i64,
    pub hash: String,
}

#[derive(Clone, Debug)]
pub struct Seal {
    pub seal_number: i64,
    pub sealed_at: DateTime<Utc>,
    pub through: Cursor,
    pub heads: Vec<SealedHead>,
}

/// Seals every stream changed since the last seal. Returns `None` when nothing changed.
pub async fn seal(pool: &PgPool) -> Result<Option<Seal>, StoreError> {
    let mut tx = pool.begin().await?;
    // One snapshot for every statement, so the heads and the cursor agree.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    // One sealer at a time across processes; the others find nothing to do this round.
    let sealer: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('unity-sealer'))").fetch_one(&mut *tx).await?;
    if !sealer {
        return Ok(None);
    }
    let last = sqlx::query(
        "SELECT seal_number, through_transaction_id, through_position, hash FROM seals ORDER BY seal_number DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (number, after, prev_hash) = match last {
        Some(r) => (
            r.get::<i64, _>(0) + 1,
            Cursor { transaction_id: r.get(1), global_position: r.get(2) },
            r.get::<Vec<u8>, _>(3),
        ),
        None => (1, Cursor::START, GENESIS_HASH.to_vec()),
    };
    let horizon = format!("(transaction_id, global_position) > ($1, $2) AND {READABLE}");
    let through = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position FROM event_log WHERE {horizon} \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(through) = through.map(|r| Cursor::from_leading_columns(&r)) else {
        return Ok(None);
    };
    let heads: Vec<SealedHead> = sqlx::query(AssertSqlSafe(format!(
        "SELECT DISTINCT ON (e.stream_uuid, e.stream_type) st.name || '-' || e.stream_uuid, e.stream_version, e.hash \
         FROM event_log e JOIN stream_types st ON st.key = e.stream_type \
         WHERE {horizon} AND (transaction_id, global_position) <= ($3, $4) \
         ORDER BY e.stream_uuid, e.stream_type, e.stream_version DESC"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(through.transaction_id)
    .bind(through.global_position)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| SealedHead { stream_id: r.get(0), version: r.get(1), hash: hex::encode(r.get::<Vec<u8>, _>(2)) })
    .collect();
    let sealed_at = Utc::now().trunc_subsecs(6);
    let seal = Seal { seal_number: number, sealed_at, through, heads };
    let hash = seal_hash(&prev_hash, &seal);
    sqlx::query(
        "INSERT INTO seals (seal_number, sealed_at, through_transaction_id, through_position, heads, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seal.seal_number)
    .bind(seal.sealed_at)
    .bind(through.transaction_id)
    .bind(through.global_position)
    .bind(serde_json::to_value(&seal.heads).expect("heads serialize"))
    .bind(&prev_hash)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(seal))
}

fn seal_hash(prev_hash: &[u8], seal: &Seal) -> [u8; 32] {
    let mut text = String::new();
    canonical::write_canonical(
        &json!([
            seal.seal_number,
            seal.sealed_at.timestamp_micros(),
            seal.through.transaction_id,
            seal.through.global_position,
            seal.heads
        ]),
        &mut text,
    );
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(text.as_bytes());
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// One place where the log is not what was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Break {
    /// The stream, or `seals` for the seal chain itself.
    pub stream_id: String,
    pub version: i64,
    pub reason: String,
}

/// A removal by retention, as the log records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedRemoval {
    pub class: String,
    pub bucket: NaiveDate,
    pub events: i64,
    pub streams: usize,
    pub recorded_at: DateTime<Utc>,
    /// `None` while the bucket is still there (recorded, not yet removed).
    pub removed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub events_checked: u64,
    pub streams_checked: u64,
    pub seals_checked: u64,
    /// What retention removed, oldest record first: those streams are expected to be missing.
    pub removals: Vec<RecordedRemoval>,
    /// In the order found: seals first, then stream by stream. Capped at [`MAX_BREAKS`].
    pub breaks: Vec<Break>,
}

pub const MAX_BREAKS: usize = 50;

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.breaks.is_empty()
    }

    fn report(&mut self, stream_id: &str, version: i64, reason: String) {
        if self.breaks.len() < MAX_BREAKS {
            self.breaks.push(Break { stream_id: stream_id.to_owned(), version, reason });
        }
    }
}

/// Walks every seal and every stream's hash chain. `progress` is called with the number of
/// events checked so far, every 10,000 events.
pub async fn verify(pool: &PgPool, mut progress: impl FnMut(u64)) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    // The newest sealed head of each stream, and which seal recorded it.
    let mut sealed: HashMap<String, (i64, String, i64)> = HashMap::new();
    let mut seals = sqlx::query(
        "SELECT seal_number, sealed_at, through_transaction_id, through_position, heads, prev_hash, hash \
         FROM seals ORDER BY seal_number",
    )
    .fetch(pool);
    let mut prev = GENESIS_HASH.to_vec();
    let mut expected_number = 1;
    while let Some(row) = seals.try_next().await? {
        let number: i64 = row.get(0);
        let heads: Vec<SealedHead> = serde_json::from_value(row.get(4)).unwrap_or_default();
        let seal = Seal {
            seal_number: number,
            sealed_at: row.get(1),
            through: Cursor { transaction_id: row.get(2), global_position: row.get(3) },
            heads,
        };
        let (stored_prev, stored_hash): (Vec<u8>, Vec<u8>) = (row.get(5), row.get(6));
        if number != expected_number {
            report.report("seals", expected_number, format!("seal #{expected_number} is missing (next is #{number})"));
        }
        if stored_prev != prev {
            report.report("seals", number, format!("seal #{number} does not chain to the seal before it"));
        }
        if seal_hash(&stored_prev, &seal).as_slice() != stored_hash {
            report.report("seals", number, format!("seal #{number} was altered (its hash does not match)"));
        }
        for head in seal.heads {
            sealed.insert(head.stream_id, (head.version, head.hash, number));
        }
        prev = stored_hash;
        expected_number = number + 1;
        report.seals_checked += 1;
    }
    drop(seals);
    let removed = recorded_removals(pool, &mut report).await?;

    // Stream by stream, in version order (the stream key's own order, index by index).
    let mut events = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} ORDER BY e.stream_uuid, e.stream_type, e.stream_version"
    )))
    .fetch(pool);
    let mut current: Option<(String, i64, Vec<u8>)> = None; // stream, last version, last hash
    let mut seen_streams: HashSet<String> = HashSet::new();
    let mut broken_stream: Option<String> = None;
    let close_stream = |report: &mut VerifyReport, stream: &str, version: i64, broken: bool| {
        if let Some((sealed_version, _, number)) = sealed.get(stream) {
            if version < *sealed_version && !broken {
                report.report(
                    stream,
                    version + 1,
                    format!(
                        "events after version {version} were removed: seal #{number} recorded version {sealed_version}"
                    ),
                );
            }
        }
    };
    while let Some(row) = events.try_next().await? {
        let event = event_from_row(&row);
        report.events_checked += 1;
        if report.events_checked % 10_000 == 0 {
            progress(report.events_checked);
        }
        // A stream starts at version 1, or right after what retention removed of it.
        let start = || match removed.get(&event.stream_id) {
            Some((v, hash)) if event.stream_version != 1 => (v + 1, hash.clone()),
            _ => (1, GENESIS_HASH.to_vec()),
        };
        let (expected_version, expected_prev) = match &current {
            Some((stream, version, hash)) if *stream == event.stream_id => (version + 1, hash.clone()),
            Some((stream, version, _)) => {
                close_stream(&mut report, stream, *version, broken_stream.as_deref() == Some(stream.as_str()));
                start()
            }
            None => start(),
        };
        if seen_streams.insert(event.stream_id.clone()) {
            report.streams_checked += 1;
        }
        let already_broken = broken_stream.as_deref() == Some(event.stream_id.as_str());
        if !already_broken {
            let problem = if event.stream_version != expected_version {
                Some((
                    expected_version,
                    format!("version {expected_version} is missing (next found is {})", event.stream_version),
                ))
            } else if event.compute_hash(&expected_prev).as_slice() != event.hash {
                // Its contents changed, or the event before it did (with a hash made to match).
                Some((event.stream_version, "was altered: its contents do not match its hash".to_owned()))
            } else if let Some((v, hash, number)) = sealed.get(&event.stream_id) {
                (*v == event.stream_version && hex::encode(&event.hash) != *hash)
                    .then(|| (event.stream_version, format!("differs from what seal #{number} recorded")))
            } else {
                None
            };
            if let Some((version, reason)) = problem {
                report.report(&event.stream_id, version, reason);
                broken_stream = Some(event.stream_id.clone());
            }
        }
        current = Some((event.stream_id, event.stream_version, event.hash));
    }
    if let Some((stream, version, _)) = &current {
        close_stream(&mut report, stream, *version, broken_stream.as_deref() == Some(stream.as_str()));
    }
    let mut missing: Vec<_> = sealed.iter().filter(|(stream, _)| !seen_streams.contains(*stream)).collect();
    missing.sort();
    for (stream, (version, _, number)) in missing {
        match removed.get(stream) {
            Some((through, _)) if through >= version => {}
            Some((through, _)) => report.report(
                stream,
                through + 1,
                format!("events after version {through} were removed without a record: seal #{number} recorded version {version}"),
            ),
            None => report
                .report(stream, 1, format!("the whole stream is missing: seal #{number} recorded version {version}")),
        }
    }
    Ok(report)
}

/// The streams retention recorded as removed, each with the last version and hash it took
/// (from the newest record of each bucket), and the removals for the report. A record that
/// names a stream outside its bucket, or a class that never expires, is itself a break and
/// excuses nothing.
async fn recorded_removals(
    pool: &PgPool,
    report: &mut VerifyReport,
) -> Result<HashMap<String, (i64, Vec<u8>)>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} WHERE e.retention_class = 0 AND st.name = 'retention' \
         ORDER BY e.transaction_id, e.global_position"
    )))
    .fetch_all(pool)
    .await?;
    // Per retention stream: the newest record's streams, and its place in the report.
    let mut newest: HashMap<String, (Vec<RemovedStream>, usize)> = HashMap::new();
    for row in &rows {
        let event = event_from_row(row);
        match event.decode::<RetentionEvent>() {
            Ok(RetentionEvent::BucketRemovalRecorded(contents)) => {
                let class = RetentionClass::from_name(&contents.class).filter(|c| c.expires());
                let Some(class) = class else {
                    report.report(
                        &event.stream_id,
                        event.stream_version,
                        format!("a removal record names class {}, which never expires", contents.class),
                    );
                    continue;
                };
                let strays: Vec<&RemovedStream> = contents
                    .streams
                    .iter()
                    .filter(|s| {
                        let id = s.stream_id.parse::<StreamId>().ok();
                        let placed = id.as_ref().map(|id| (RetentionClass::of(id.stream_type()), class.bucket_of(id)));
                        placed != Some((class, Ok(Some(contents.bucket))))
                    })
                    .collect();
                if let Some(stray) = strays.first() {
                    report.report(
                        &event.stream_id,
                        event.stream_version,
                        format!(
                            "a removal record names {}, which is not in bucket {} of {}",
                            stray.stream_id, contents.bucket, contents.class
                        ),
                    );
                    continue;
                }
                let removal = RecordedRemoval {
                    class: contents.class.clone(),
                    bucket: contents.bucket,
                    events: contents.events,
                    streams: contents.streams.len(),
                    recorded_at: event.recorded_at,
                    removed_at: None,
                };
                // A newer record of the same bucket replaces the older (which it was made for).
                let at = match newest.get(&event.stream_id) {
                    Some((_, at)) => {
                        report.removals[*at] = removal;
                        *at
                    }
                    None => {
                        report.removals.push(removal);
                        report.removals.len() - 1
                    }
                };
                newest.insert(event.stream_id.clone(), (contents.streams, at));
            }
            Ok(RetentionEvent::BucketRemoved { .. }) => {
                if let Some((_, at)) = newest.get(&event.stream_id) {
                    report.removals[*at].removed_at = Some(event.recorded_at);
                }
            }
            // The chain walk names an undecodable event if it was altered; an honest one of a
            // newer build is no excuse for anything either.
            Err(_) => {}
        }
    }
    let mut removed = HashMap::new();
    for (streams, _) in newest.into_values() {
        for s in streams {
            removed.insert(s.stream_id, (s.version, hex::decode(&s.hash).unwrap_or_default()));
        }
    }
    Ok(removed)
}
