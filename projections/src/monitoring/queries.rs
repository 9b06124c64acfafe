//! The reads the API and the collectors use.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use unity_domain::{
    monitoring::{samples_stream, summaries_stream, HostSample, HourSummary},
    retention::RetentionClass,
};
use uuid::Uuid;

#[derive(Clone, Debug, FromRow)]
pub struct MonitoredServer {
    pub server_id: Uuid,
    pub config: Option<Value>,
    pub status: String,
    pub last_error: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub facts: Option<Value>,
    pub last_sample_at: Option<DateTime<Utc>>,
    pub last_sample: Option<Value>,
}

pub async fn monitored_server(pool: &PgPool, server_id: Uuid) -> Result<Option<MonitoredServer>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitored_servers WHERE server_id = $1").bind(server_id).fetch_optional(pool).await
}

pub async fn monitored_servers(pool: &PgPool) -> Result<Vec<MonitoredServer>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitored_servers ORDER BY server_id").fetch_all(pool).await
}

/// The servers monitoring is enabled for, with their cadences (SMART's `None` when it is off),
/// as the collectors' schedule wants them.
pub async fn enabled_servers(pool: &PgPool) -> Result<Vec<(Uuid, i32, Option<i32>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT server_id, (config->>'interval_secs')::int, \
                CASE WHEN (config->>'smart_enabled')::boolean THEN (config->>'smart_interval_secs')::int END \
         FROM monitored_servers WHERE (config->>'enabled')::boolean ORDER BY server_id",
    )
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, FromRow)]
pub struct MonitoredDevice {
    pub server_id: Uuid,
    pub serial: String,
    pub device: Value,
    pub verdict: String,
    pub reasons: Value,
    pub first_seen: Value,
    pub overrides: Value,
    pub read_at: DateTime<Utc>,
}

pub async fn monitored_devices(pool: &PgPool, server_id: Uuid) -> Result<Vec<MonitoredDevice>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitored_devices WHERE server_id = $1 ORDER BY device->>'name', serial")
        .bind(server_id)
        .fetch_all(pool)
        .await
}

#[derive(Clone, Debug, FromRow)]
pub struct MonitoredPool {
    pub server_id: Uuid,
    pub kind: String,
    pub name: String,
    pub pool: Value,
    pub verdict: String,
    pub changed_at: DateTime<Utc>,
}

pub async fn monitored_pools(pool: &PgPool, server_id: Uuid) -> Result<Vec<MonitoredPool>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitored_pools WHERE server_id = $1 ORDER BY kind, name")
        .bind(server_id)
        .fetch_all(pool)
        .await
}

#[derive(Clone, Debug, FromRow)]
pub struct MonitoredArray {
    pub server_id: Uuid,
    pub name: String,
    pub array_state: Value,
    pub verdict: String,
    pub changed_at: DateTime<Utc>,
}

pub async fn monitored_arrays(pool: &PgPool, server_id: Uuid) -> Result<Vec<MonitoredArray>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitored_arrays WHERE server_id = $1 ORDER BY name")
        .bind(server_id)
        .fetch_all(pool)
        .await
}

#[derive(Clone, Debug, FromRow)]
pub struct MonitoringChange {
    pub global_position: i64,
    pub server_id: Uuid,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub subject: String,
    pub verdict: Option<String>,
    pub summary: String,
}

/// The latest `limit` changes of a server, newest first.
pub async fn monitoring_changes(
    pool: &PgPool,
    server_id: Uuid,
    limit: i64,
) -> Result<Vec<MonitoringChange>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM monitoring_changes WHERE server_id = $1 ORDER BY at DESC, global_position DESC LIMIT $2",
    )
    .bind(server_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A server's hourly summaries of the hours starting in `[from, to]`, oldest first, read from
/// its monthly summaries streams (each one index range of its month's partition).
pub async fn summaries(
    pool: &PgPool,
    server_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, HourSummary)>, sqlx::Error> {
    let mut months: Vec<NaiveDate> = Vec::new();
    let mut month = from.date_naive().with_day(1).unwrap_or(from.date_naive());
    while month <= to.date_naive() && months.len() < 1200 {
        months.push(month);
        month = month.checked_add_months(chrono::Months::new(1)).unwrap_or(month);
    }
    let streams: Vec<Uuid> = months.iter().map(|m| summaries_stream(server_id, *m).id()).collect();
    let rows = payloads(pool, RetentionClass::Summaries, &months, &streams, "host_summaries", "HourSummarized").await?;
    /// What a chart reads of an `HourSummarized` (v1) payload.
    #[derive(serde::Deserialize)]
    struct Summarized {
        hour: DateTime<Utc>,
        summary: HourSummary,
    }
    Ok(rows
        .iter()
        .filter_map(|text| serde_json::from_str::<Summarized>(text).ok())
        .filter(|s| s.hour >= from && s.hour <= to)
        .map(|s| (s.hour, s.summary))
        .collect())
}

/// A server's raw samples in `[from, to]`, oldest first, read from its daily samples streams
/// (each one index range of its day's partition). Days already removed by retention give none.
pub async fn samples(
    pool: &PgPool,
    server_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, HostSample)>, sqlx::Error> {
    let mut days: Vec<NaiveDate> = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() && days.len() < 3660 {
        days.push(day);
        day = day.succ_opt().unwrap_or(day);
    }
    let streams: Vec<Uuid> = days.iter().map(|d| samples_stream(server_id, *d).id()).collect();
    let rows = payloads(pool, RetentionClass::Samples, &days, &streams, "host_samples", "ServerSampled").await?;
    /// What the chart reads of a `ServerSampled` (v1) payload.
    #[derive(serde::Deserialize)]
    struct Sampled {
        at: DateTime<Utc>,
        sample: HostSample,
    }
    let mut samples = Vec::with_capacity(rows.len());
    for text in rows {
        // A payload this build cannot read is skipped, not a failed chart.
        let Ok(Sampled { at, sample }) = serde_json::from_str::<Sampled>(&text) else { continue };
        if at >= from && at <= to {
            samples.push((at, sample));
        }
    }
    Ok(samples)
}

/// The payloads of the events of one type in some streams (by UUID) of one type, in their
/// buckets, in bucket and version order: as stored (`json`: its text), so that each is parsed
/// straight into its type in one pass (no intermediate JSON tree, no field extraction in SQL,
/// which would parse each text again).
async fn payloads(
    pool: &PgPool,
    class: RetentionClass,
    buckets: &[NaiveDate],
    streams: &[Uuid],
    stream_type: &str,
    event_type: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT payload::text FROM event_log \
         WHERE retention_class = $1 AND bucket = ANY($2) AND stream_uuid = ANY($3) \
           AND stream_type = (SELECT key FROM stream_types WHERE name = $4) \
           AND event_type = (SELECT key FROM event_types WHERE name = $5) \
         ORDER BY bucket, stream_version",
    )
    .bind(class.code())
    .bind(buckets)
    .bind(streams)
    .bind(stream_type)
    .bind(event_type)
    .fetch_all(pool)
    .await
}
