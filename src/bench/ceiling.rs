//! The plain-SQL ceiling of the log's shape: rows like the append benchmark's, inserted
//! server-side (`INSERT … SELECT`, nothing to parse or send) in batches of the same size, by as
//! many concurrent writers as the benchmark has (each on a connection of its own), into a
//! copy of `event_log` with its constraints and indexes, into the shape the log had before it
//! (text stream ids, a unique event-id key, `prev_hash`), and into one with no indexes. The
//! store's own cost then reads as a ratio, measured on the same machine in the same run.
//!
//! Event ids are time-ordered like the UUIDv7 ids Unity makes (random ones would make any index
//! on them look dearer than it is).

use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgPool};

/// The ids: a millisecond clock, then digits of the row number's hash, as hex.
const TIME_ORDERED_ID: &str =
    "(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::int8), 12, '0') || '7' || substr(md5(g::text), 1, 19))::uuid";
/// Row g's stream: g mod streams, at version g div streams + 1 (never twice).
const STREAM_UUID: &str = "('00000000-0000-4000-8000-' || lpad(to_hex(g % $5), 12, '0'))::uuid";

struct Shape {
    name: &'static str,
    create: &'static str,
    insert: &'static str,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "event_log",
        create: "CREATE TABLE bench_ceiling \
                 (LIKE event_log INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)",
        insert: "INSERT INTO bench_ceiling (event_id, stream_uuid, stream_type, stream_version, event_type, schema_version, \
                                            payload, metadata, recorded_at, hash) \
                 SELECT {id}, {stream}, $3, g / $5 + 1, $4, 1, $6::json, $7, now(), $8 FROM generate_series($1::int8, $2::int8) AS g",
    },
    // The log before its lean shape (migration 20261208000001): what the change bought.
    Shape {
        name: "before_lean",
        create: "CREATE TABLE bench_ceiling ( \
                    global_position bigint GENERATED ALWAYS AS IDENTITY, \
                    transaction_id bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), \
                    event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, stream_type text NOT NULL, \
                    stream_version bigint NOT NULL, event_type text NOT NULL, schema_version smallint NOT NULL, \
                    payload jsonb NOT NULL, metadata jsonb NOT NULL, recorded_at timestamptz NOT NULL, \
                    prev_hash bytea NOT NULL, hash bytea NOT NULL, retention_class smallint NOT NULL DEFAULT 0, \
                    bucket date NOT NULL DEFAULT '-infinity', UNIQUE (stream_id, stream_version)); \
                 CREATE INDEX ON bench_ceiling (transaction_id, global_position)",
        insert: "INSERT INTO bench_ceiling (event_id, stream_id, stream_type, stream_version, event_type, schema_version, \
                                            payload, metadata, recorded_at, prev_hash, hash) \
                 SELECT {id}, $9 || '-' || {stream}, $9, g / $5 + 1, $10, 1, $6, $7, now(), $8, $8 \
                 FROM generate_series($1::int8, $2::int8) AS g",
    },
    Shape {
        name: "no_indexes",
        create: "CREATE TABLE bench_ceiling (LIKE event_log INCLUDING DEFAULTS INCLUDING IDENTITY)",
        insert: "INSERT INTO bench_ceiling (event_id, stream_uuid, stream_type, stream_version, event_type, schema_version, \
                                            payload, metadata, recorded_at, hash) \
                 SELECT {id}, {stream}, $3, g / $5 + 1, $4, 1, $6::json, $7, now(), $8 FROM generate_series($1::int8, $2::int8) AS g",
    },
];

/// Events per second for each shape, `writers` writing at once; the append benchmark's rows must
/// be there to copy from.
pub async fn ceiling(
    pool: &PgPool,
    events: usize,
    batch: usize,
    streams: usize,
    writers: usize,
) -> Result<serde_json::Value> {
    type Sample = (i16, String, i16, String, serde_json::Value, serde_json::Value, Vec<u8>);
    let sample: Option<Sample> = sqlx::query_as(
        "SELECT e.stream_type, st.name, e.event_type, et.name, e.payload, e.metadata, e.hash \
         FROM event_log_permanent e JOIN stream_types st ON st.key = e.stream_type \
         JOIN event_types et ON et.key = e.event_type \
         WHERE e.stream_type = (SELECT key FROM stream_types WHERE name = 'login') \
         ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((stream_type, stream_type_name, event_type, event_type_name, payload, metadata, hash)) = sample else {
        bail!("the bench database has no appended events to copy: run the append benchmark first");
    };
    let mut shapes = serde_json::Map::new();
    for shape in SHAPES {
        sqlx::query("DROP TABLE IF EXISTS bench_ceiling").execute(pool).await?;
        sqlx::raw_sql(AssertSqlSafe(shape.create)).execute(pool).await?;
        let insert = shape.insert.replace("{id}", TIME_ORDERED_ID).replace("{stream}", STREAM_UUID);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            // Writer w takes batches w, w + writers, …: rows numbered apart, never the same key.
            let (pool, insert) = (pool.clone(), insert.clone());
            let (payload, metadata, hash) = (payload.clone(), metadata.clone(), hash.clone());
            let names = (shape.name == "before_lean").then(|| (stream_type_name.clone(), event_type_name.clone()));
            tasks.spawn(async move {
                let mut start = w * batch;
                while start < events {
                    let n = batch.min(events - start);
                    let mut query = sqlx::query(AssertSqlSafe(insert.as_str()))
                        .bind(start as i64)
                        .bind((start + n - 1) as i64)
                        .bind(stream_type)
                        .bind(event_type)
                        .bind(streams as i64)
                        .bind(&payload)
                        .bind(&metadata)
                        .bind(&hash);
                    if let Some((stream_type_name, event_type_name)) = &names {
                        query = query.bind(stream_type_name).bind(event_type_name);
                    }
                    query.execute(&pool).await?;
                    start += writers * batch;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let seconds = started.elapsed().as_secs_f64();
        shapes.insert(shape.name.into(), json!({ "seconds": seconds, "events_per_second": events as f64 / seconds }));
    }
    sqlx::query("DROP TABLE IF EXISTS bench_ceiling").execute(pool).await?;
    Ok(serde_json::Value::Object(shapes))
}
