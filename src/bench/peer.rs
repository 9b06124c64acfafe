//! The closest Rust peer, measured beside `bench append` in the same run: cqrs-es with
//! postgres-es, through its event repository directly (what a command's commit costs there), on
//! a database of its own with its own table, the same writers, batches and streams, and the same
//! payloads and metadata. Built only with the `peer-bench` feature.

use std::{collections::HashMap, sync::Arc, time::Instant};

use anyhow::{anyhow, Result};
use cqrs_es::{
    event_sink::EventSink,
    persist::{PersistedEventRepository, SerializedEvent},
    Aggregate, DomainEvent,
};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use super::latency_summary;
use crate::config::Settings;

/// The stand-in aggregate: the repository needs one for its type name.
#[derive(Default, Serialize, Deserialize)]
struct Login;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LoginRecorded;

impl DomainEvent for LoginRecorded {
    fn event_type(&self) -> String {
        "LoginSucceeded".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// The stand-in aggregate's error, which never happens.
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl Aggregate for Login {
    const TYPE: &'static str = "login";
    type Command = ();
    type Event = LoginRecorded;
    type Error = Never;
    type Services = ();

    async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Never> {
        Ok(())
    }

    fn apply(&mut self, _: LoginRecorded) {}
}

/// The peer's events table, as its `db/init.sql` has it.
const PEER_TABLE: &str = "CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
    event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence))";

/// `events` one-event-per-row appends by `writers` writers in batches of `batch`, each writer
/// owning its streams, with `payload` and `metadata` as Unity's own rows carry them.
pub async fn peer(
    settings: &Settings,
    events: usize,
    streams: usize,
    writers: usize,
    batch: usize,
    (payload, metadata): (Value, Value),
) -> Result<Value> {
    let name = format!("{}_bench_peer", settings.database.get_database().unwrap_or("unity"));
    let mut admin = settings.database.clone().database("postgres").connect().await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\""))).execute(&mut admin).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    admin.close().await?;
    let mut conn = settings.database.clone().database(&name).connect().await?;
    sqlx::query(PEER_TABLE).execute(&mut conn).await?;
    conn.close().await?;

    // The peer's pool, on its own sqlx: as many connections as Unity's bench has.
    let url = settings.database.clone().database(&name).to_url_lossy().to_string();
    let pool = sqlx08::postgres::PgPoolOptions::new().max_connections(40).connect(&url).await?;
    let repository = Arc::new(PostgresEventRepository::new(pool));

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (repository, payload, metadata) = (repository.clone(), payload.clone(), metadata.clone());
        let quota = events / writers + usize::from(w < events % writers);
        tasks.push(tokio::spawn(async move {
            let owned: Vec<usize> = (w..streams).step_by(writers).collect();
            let mut sequence: HashMap<usize, usize> = HashMap::new();
            let mut latencies = Vec::with_capacity(quota / batch + 1);
            let (mut written, mut next) = (0, 0usize);
            while written < quota {
                let n = batch.min(quota - written);
                let mut rows = Vec::with_capacity(n);
                for _ in 0..n {
                    let stream = owned[next % owned.len()];
                    let seq = sequence.entry(stream).or_insert(0);
                    *seq += 1;
                    rows.push(SerializedEvent {
                        aggregate_id: format!("login-{stream}"),
                        sequence: *seq,
                        aggregate_type: Login::TYPE.into(),
                        event_type: "LoginSucceeded".into(),
                        event_version: "1".into(),
                        payload: payload.clone(),
                        metadata: metadata.clone(),
                    });
                    next += 1;
                }
                let t = Instant::now();
                repository.persist::<Login>(&rows, None).await.map_err(|e| anyhow!("postgres-es: {e}"))?;
                latencies.push(t.elapsed());
                written += n;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "peer": "postgres-es 0.5 (cqrs-es 0.5), its event repository directly",
        "events": events,
        "seconds": seconds,
        "events_per_second": events as f64 / seconds,
        "append_latency_ms": latency_summary(latencies),
    }))
}
