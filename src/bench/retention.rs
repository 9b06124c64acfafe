//! `unity bench retention`: a month of a fleet's samples written, sealed, then removed by
//! retention; the time and the table sizes before and after, and verify after the removal. With
//! `--against-delete`, the same rows removed by DELETE and VACUUM from one unpartitioned table of
//! the same shape, in the same run, for the comparison that chose partitions.

use std::{sync::Arc, time::Instant};

use anyhow::{bail, Result};
use chrono::{Days, NaiveDate, Utc};
use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, PgPool};
use unity_commands::{
    integrity,
    retention::{self, RetentionPolicy},
    store::{EventStore, ExpectedVersion, NewEvent, StreamAppend},
    wakeup::Wakeup,
};
use unity_domain::StreamId;
use uuid::{NoContext, Timestamp, Uuid};

use super::bench_metadata;

pub struct Load {
    pub servers: usize,
    pub days: usize,
    pub interval_secs: u64,
    pub writers: usize,
    pub archive: bool,
    pub against_delete: bool,
}

/// One collection of one server, as monitoring will record it: compact, one event per server
/// per interval.
fn sample(server: usize, minute: u64) -> Value {
    let f = (server as f64 + 1.0) * (minute as f64 + 1.0);
    json!({
        "cpu": {"user": (f * 0.37) % 100.0, "system": (f * 0.11) % 20.0, "iowait": (f * 0.013) % 5.0},
        "load": [(f * 0.01) % 8.0, (f * 0.007) % 8.0, (f * 0.005) % 8.0],
        "memory": {"total": 17_179_869_184u64, "available": 8_000_000_000u64 + (minute * 4096) % 1_000_000_000},
        "disks": [{"mount": "/", "used": 41_000_000_000u64 + minute * 1024, "size": 250_000_000_000u64}],
        "net": [{"iface": "eth0", "rx": minute * 120_000, "tx": minute * 80_000}],
        "uptime": 86_400 * 20 + minute * 60,
    })
}

/// Bytes of `event_log` and all its partitions, indexes included.
async fn events_bytes(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::int8 FROM pg_partition_tree('event_log') WHERE isleaf",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn run(pool: &PgPool, load: Load) -> Result<Value> {
    if load.servers == 0 || load.days == 0 || load.interval_secs == 0 || load.writers == 0 {
        bail!("--servers, --days, --interval-secs and --writers must all be at least 1");
    }
    let store = EventStore::new(pool.clone(), Wakeup::default());
    let policy = RetentionPolicy::default();
    let today = Utc::now().date_naive();
    // The newest filled day has just expired under the default retention.
    let newest = today - Days::new(u64::from(policy.samples_days) + 1);
    let first = newest - Days::new(load.days as u64 - 1);
    let per_day = 86_400 / load.interval_secs;

    // Some permanent history beside the samples, which must come through untouched.
    let permanent: Vec<StreamAppend> = (0..100)
        .map(|i| StreamAppend {
            stream_id: StreamId::new("bench_thing", Uuid::now_v7()),
            expected: ExpectedVersion::NoStream,
            events: (0..10)
                .map(|n| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "ThingChanged".into(),
                    schema_version: 1,
                    payload: json!({"i": i, "n": n}),
                    metadata: serde_json::to_value(bench_metadata()).expect("metadata").into(),
                })
                .collect(),
        })
        .collect();
    store.append(permanent).await?;
    let bytes_before = events_bytes(pool).await?;

    let started = Instant::now();
    let days: Vec<NaiveDate> = (0..load.days).map(|d| first + Days::new(d as u64)).collect();
    let work: Vec<(NaiveDate, usize)> = days.iter().flat_map(|d| (0..load.servers).map(move |s| (*d, s))).collect();
    let chunks: Vec<Vec<(NaiveDate, usize)>> =
        work.chunks(work.len().div_ceil(load.writers)).map(<[_]>::to_vec).collect();
    let metadata = Arc::new(serde_json::to_value(bench_metadata()).expect("metadata"));
    let mut writers = tokio::task::JoinSet::new();
    for chunk in chunks {
        let (store, metadata) = (store.clone(), metadata.clone());
        writers.spawn(async move {
            for (day, server) in chunk {
                let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp() as u64;
                let id = Uuid::new_v7(Timestamp::from_unix(NoContext, start + server as u64, 0));
                let events = (0..per_day)
                    .map(|minute| NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: "SamplesCollected".into(),
                        schema_version: 1,
                        payload: sample(server, minute),
                        metadata: metadata.clone(),
                    })
                    .collect();
                let stream_id = StreamId::new("host_samples", id);
                store.append(vec![StreamAppend { stream_id, expected: ExpectedVersion::NoStream, events }]).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let samples = (load.days * load.servers) as u64 * per_day;
    while integrity::seal(pool).await?.is_some() {}
    sqlx::query("VACUUM ANALYZE event_log").execute(pool).await?;
    let bytes_filled = events_bytes(pool).await?;

    // The comparison's copy is made now, from the very rows retention is about to remove.
    let unpartitioned = if load.against_delete { Some(copy_unpartitioned(pool).await?) } else { None };

    let archive_dir =
        load.archive.then(|| std::env::temp_dir().join(format!("unity-bench-archive-{}", Uuid::now_v7().simple())));
    let policy = RetentionPolicy { archive_dir: archive_dir.clone(), ..policy };
    let started = Instant::now();
    let removed = retention::run(&store, &policy, today, &bench_metadata()).await?;
    let removal_seconds = started.elapsed().as_secs_f64();
    let removed_events: i64 = removed.iter().map(|r| r.events).sum();
    let bytes_after = events_bytes(pool).await?;
    let archive_bytes: Option<u64> = match &archive_dir {
        Some(dir) => {
            let total = std::fs::read_dir(dir)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
            std::fs::remove_dir_all(dir)?;
            Some(total)
        }
        None => None,
    };
    let started = Instant::now();
    let report = integrity::verify(pool, |_| {}).await?;
    let verify_seconds = started.elapsed().as_secs_f64();

    let mut result = json!({
        "benchmark": "retention",
        "servers": load.servers,
        "days": load.days,
        "interval_secs": load.interval_secs,
        "samples": samples,
        "fill_seconds": fill_seconds,
        "fill_events_per_second": samples as f64 / fill_seconds,
        "buckets_removed": removed.len(),
        "events_removed": removed_events,
        "removal_seconds": removal_seconds,
        "removal_limit_seconds": 60.0,
        "removal_share_of_limit": removal_seconds / 60.0,
        "archive": load.archive,
        "archive_bytes": archive_bytes,
        "bytes_before": bytes_before,
        "bytes_filled": bytes_filled,
        "bytes_after": bytes_after,
        "verify_ok": report.ok(),
        "verify_events": report.events_checked,
        "verify_seconds": verify_seconds,
    });
    if !report.ok() {
        bail!("verify failed after the removal: {:?}", report.breaks.first());
    }
    if let Some((empty, filled)) = unpartitioned {
        result["delete"] = against_delete(pool, empty, filled).await?;
    }
    Ok(result)
}

const TABLE_SIZE: &str = "SELECT pg_total_relation_size('bench_unpartitioned')";

/// The same month's sample rows, copied from the partitions into one plain table with the log's
/// indexes: the alternative, filled with identical rows. Returns the table's size empty and filled.
async fn copy_unpartitioned(pool: &PgPool) -> Result<(i64, i64)> {
    sqlx::query("DROP TABLE IF EXISTS bench_unpartitioned").execute(pool).await?;
    sqlx::query("CREATE TABLE bench_unpartitioned (LIKE event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        .execute(pool)
        .await?;
    for ddl in [
        "ALTER TABLE bench_unpartitioned ADD UNIQUE (stream_uuid, stream_type, stream_version)",
        "CREATE INDEX ON bench_unpartitioned (transaction_id, global_position)",
        "CREATE INDEX ON bench_unpartitioned USING brin (event_id)",
        // Without partitions, removal by day needs its own index to find a day's rows.
        "CREATE INDEX ON bench_unpartitioned (bucket)",
    ] {
        sqlx::query(AssertSqlSafe(ddl)).execute(pool).await?;
    }
    let empty: i64 = sqlx::query_scalar(TABLE_SIZE).fetch_one(pool).await?;
    sqlx::query("INSERT INTO bench_unpartitioned SELECT * FROM event_log_samples ORDER BY global_position")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE bench_unpartitioned").execute(pool).await?;
    let filled: i64 = sqlx::query_scalar(TABLE_SIZE).fetch_one(pool).await?;
    Ok((empty, filled))
}

/// Retention without partitions: each expired day's rows removed by DELETE, one statement per
/// day as a removal would run, then VACUUM to make the space reusable.
async fn against_delete(pool: &PgPool, empty: i64, filled: i64) -> Result<Value> {
    let days: Vec<NaiveDate> =
        sqlx::query_scalar("SELECT DISTINCT bucket FROM bench_unpartitioned ORDER BY 1").fetch_all(pool).await?;
    let started = Instant::now();
    let mut deleted = 0;
    for day in &days {
        deleted += sqlx::query("DELETE FROM bench_unpartitioned WHERE bucket = $1")
            .bind(day)
            .execute(pool)
            .await?
            .rows_affected();
    }
    let delete_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::query("VACUUM bench_unpartitioned").execute(pool).await?;
    let vacuum_seconds = started.elapsed().as_secs_f64();
    let after: i64 = sqlx::query_scalar(TABLE_SIZE).fetch_one(pool).await?;
    sqlx::query("DROP TABLE bench_unpartitioned").execute(pool).await?;
    Ok(json!({
        "events": deleted,
        "buckets": days.len(),
        "delete_seconds": delete_seconds,
        "vacuum_seconds": vacuum_seconds,
        "bytes_empty": empty,
        "bytes_filled": filled,
        "bytes_after": after,
    }))
}
