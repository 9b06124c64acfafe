//! The plain-SQL ceiling of the events table's shape: rows like the append benchmark's, inserted
//! server-side (`INSERT … SELECT`, nothing to parse or send) in batches of the same size, into a
//! copy of `events` with its constraints and indexes and into one with none. The store's own
//! cost then reads as a ratio, measured on the same machine in the same run.

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgPool};

const SHAPES: &[(&str, &str)] = &[
    (
        "events",
        "CREATE TABLE bench_ceiling \
         (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)",
    ),
    // What the readers need, without the event-id key: stream reads and concurrency, read order.
    (
        "without_event_id_key",
        "CREATE TABLE bench_ceiling (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY, \
         UNIQUE (stream_id, stream_version)); \
         CREATE UNIQUE INDEX ON bench_ceiling (transaction_id, global_position)",
    ),
    ("no_indexes", "CREATE TABLE bench_ceiling (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY)"),
];

/// Events per second for each shape; the append benchmark's rows must be there to copy from.
pub async fn ceiling(pool: &PgPool, events: usize, batch: usize, streams: usize) -> Result<serde_json::Value> {
    let sample: Option<(String, String, serde_json::Value, serde_json::Value, Vec<u8>)> = sqlx::query_as(
        "SELECT stream_type, event_type, payload, metadata, hash FROM events WHERE stream_type = 'login' \
         ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((stream_type, event_type, payload, metadata, hash)) = sample else {
        bail!("the bench database has no appended events to copy: run the append benchmark first");
    };
    let mut shapes = serde_json::Map::new();
    for (name, create) in SHAPES {
        sqlx::query("DROP TABLE IF EXISTS bench_ceiling").execute(pool).await?;
        sqlx::raw_sql(AssertSqlSafe(*create)).execute(pool).await?;
        let started = Instant::now();
        let mut done = 0usize;
        while done < events {
            let n = batch.min(events - done);
            // Row g goes to stream g mod streams at version g div streams + 1: never twice.
            sqlx::query(
                "INSERT INTO bench_ceiling (event_id, stream_id, stream_type, stream_version, event_type, \
                                            schema_version, payload, metadata, recorded_at, prev_hash, hash) \
                 SELECT gen_random_uuid(), $3 || '-' || (g % $5), $3, g / $5 + 1, $4, 1, $6, $7, now(), $8, $8 \
                 FROM generate_series($1::int8, $2::int8) AS g",
            )
            .bind(done as i64)
            .bind((done + n - 1) as i64)
            .bind(&stream_type)
            .bind(&event_type)
            .bind(streams as i64)
            .bind(&payload)
            .bind(&metadata)
            .bind(&hash)
            .execute(pool)
            .await?;
            done += n;
        }
        let seconds = started.elapsed().as_secs_f64();
        shapes.insert((*name).into(), json!({ "seconds": seconds, "events_per_second": events as f64 / seconds }));
    }
    sqlx::query("DROP TABLE IF EXISTS bench_ceiling").execute(pool).await?;
    Ok(serde_json::Value::Object(shapes))
}
