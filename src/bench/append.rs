//! `unity bench append`: append throughput and commit latency, beside PostgreSQL's own ceiling
//! for the same rows and the closest Rust peer when asked, in rounds whose medians are printed.

use std::{collections::HashMap, sync::Arc, time::Instant};

use anyhow::{bail, Result};
use serde_json::json;
use sqlx::PgPool;
use unity_commands::{
    store::{EventStore, ExpectedVersion, GroupCommit, NewEvent, StreamAppend},
    wakeup::Wakeup,
};
use unity_domain::{
    identity::{username_stream_uuid, LoginEvent, LoginFailure, Role, UserEvent, Username},
    SecretRef, StreamId,
};
use uuid::Uuid;

use super::{bench_database, bench_metadata, ceiling, latency_summary, print};
use crate::config::Settings;

/// How much to append, and how.
pub struct Load {
    pub events: usize,
    pub streams: usize,
    pub writers: usize,
    pub batch: usize,
    pub rounds: usize,
}

/// What to measure beside the append in each round.
pub struct Beside {
    /// PostgreSQL's own `INSERT … SELECT` of the same rows into the log's shape (and others).
    pub ceiling: bool,
    /// cqrs-es with postgres-es.
    pub peer: bool,
}

pub async fn run(
    settings: &Settings,
    load: Load,
    group: GroupCommit,
    beside: Beside,
    keep: bool,
    json: bool,
) -> Result<()> {
    let Load { events, streams, writers, batch, rounds } = load;
    if events == 0 || streams == 0 || writers == 0 || batch == 0 || rounds == 0 {
        bail!("--events, --streams, --writers, --batch and --rounds must all be at least 1");
    }
    if streams < writers {
        bail!("--streams ({streams}) must be at least --writers ({writers}): each writer owns its streams");
    }
    let pool = bench_database(settings, !keep, "").await?.0;
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut result = append(&pool, events, streams, writers, batch, group).await?;
        if beside.ceiling {
            let shapes = ceiling::ceiling(&pool, events, batch, streams, writers).await?;
            let share = result["events_per_second"].as_f64().unwrap_or(0.0)
                / shapes["event_log"]["events_per_second"].as_f64().unwrap_or(f64::INFINITY);
            result["ceiling"] = shapes;
            result["share_of_ceiling"] = json!(share);
        }
        if beside.peer {
            result["peer"] = peer_run(settings, &pool, events, streams, writers, batch).await?;
        }
        if rounds > 1 && !json {
            println!("round {}: {}", measured.len() + 1, append_line(&result));
        }
        measured.push(result);
    }
    let result = if rounds == 1 { measured.remove(0) } else { append_medians(measured) };
    print(&result, json, |r| match r.get("median_of_rounds") {
        Some(n) => format!("median of {n} rounds: {}", append_line(r)),
        None => append_line(r),
    });
    Ok(())
}

#[cfg(feature = "peer-bench")]
async fn peer_run(
    settings: &Settings,
    pool: &PgPool,
    events: usize,
    streams: usize,
    writers: usize,
    batch: usize,
) -> Result<serde_json::Value> {
    let sample: (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT payload, metadata FROM event_log_permanent \
         WHERE stream_type = (SELECT key FROM stream_types WHERE name = 'login') \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    super::peer::peer(settings, events, streams, writers, batch, sample).await
}

#[cfg(not(feature = "peer-bench"))]
async fn peer_run(_: &Settings, _: &PgPool, _: usize, _: usize, _: usize, _: usize) -> Result<serde_json::Value> {
    bail!("this build has no peer: build with `cargo build --release --features peer-bench`")
}

/// `unity bench append`'s report of one measurement (or of the medians of several).
fn append_line(r: &serde_json::Value) -> String {
    let ceiling = match r.get("ceiling") {
                    Some(c) => format!(
                        "\nceiling (the same rows by INSERT … SELECT in batches of {}, {} writer(s)): {:.0} events/s into event_log's shape, {:.0} into the shape before it, {:.0} with no indexes; this append reached {:.0} % of event_log's",
                        r["batch"], r["writers"], c["event_log"]["events_per_second"].as_f64().unwrap_or(0.0),
                        c["before_lean"]["events_per_second"].as_f64().unwrap_or(0.0),
                        c["no_indexes"]["events_per_second"].as_f64().unwrap_or(0.0),
                        100.0 * r["share_of_ceiling"].as_f64().unwrap_or(0.0),
                    ),
                    None => String::new(),
                };
    let peer = match r.get("peer") {
        Some(p) => format!(
            "\npeer {}: {:.0} events/s, commit p50 {:.2} ms, p99 {:.2} ms; Unity/peer = {:.2}",
            p["peer"].as_str().unwrap_or("?"),
            p["events_per_second"].as_f64().unwrap_or(0.0),
            p["append_latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            p["append_latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            r["events_per_second"].as_f64().unwrap_or(0.0) / p["events_per_second"].as_f64().unwrap_or(f64::INFINITY),
        ),
        None => String::new(),
    };
    format!(
                    "append: {} events in {:.2} s = {:.0} events/s; commit latency p50 {:.2} ms, p99 {:.2} ms ({} writer(s), batches of {}, {} streams, group commit {} (wait {} µs), fsync={}, synchronous_commit={})",
                    r["events"], r["seconds"].as_f64().unwrap_or(0.0), r["events_per_second"].as_f64().unwrap_or(0.0),
                    r["append_latency_ms"]["p50"].as_f64().unwrap_or(0.0), r["append_latency_ms"]["p99"].as_f64().unwrap_or(0.0),
                    r["writers"], r["batch"], r["streams"], if r["group_commit"] == true { "on" } else { "off" }, r["group_wait_us"],
                    r["fsync"].as_str().unwrap_or("?"), r["synchronous_commit"].as_str().unwrap_or("?"),
                ) + &ceiling + &peer
}

/// The median of every figure of several rounds of `unity bench append`, with each round's own.
fn append_medians(rounds: Vec<serde_json::Value>) -> serde_json::Value {
    fn median(rounds: &[serde_json::Value], path: &[&str]) -> Option<f64> {
        let mut values: Vec<f64> = rounds
            .iter()
            .filter_map(|r| path.iter().try_fold(r, |v, key| v.get(*key)).and_then(serde_json::Value::as_f64))
            .collect();
        values.sort_by(f64::total_cmp);
        (!values.is_empty()).then(|| values[values.len() / 2])
    }
    let mut result = rounds[0].clone();
    for path in [
        &["seconds"][..],
        &["events_per_second"],
        &["append_latency_ms", "p50"],
        &["append_latency_ms", "p99"],
        &["share_of_ceiling"],
        &["ceiling", "event_log", "events_per_second"],
        &["ceiling", "before_lean", "events_per_second"],
        &["ceiling", "no_indexes", "events_per_second"],
        &["peer", "events_per_second"],
        &["peer", "append_latency_ms", "p50"],
        &["peer", "append_latency_ms", "p99"],
    ] {
        if let Some(m) = median(&rounds, path) {
            if let Some(slot) = path.iter().try_fold(&mut result, |v, key| v.get_mut(*key)) {
                *slot = json!(m);
            }
        }
    }
    result["median_of_rounds"] = json!(rounds.len());
    result["rounds"] = serde_json::Value::Array(rounds);
    result
}

/// A bench user: a `UserCreated` event (with a stand-in sealed hash: no projection opens it) and
/// the stream its logins go to.
fn bench_user(run: &str, i: usize) -> (StreamAppend, Uuid, Username, StreamId) {
    let user_id = Uuid::now_v7();
    // Unique across runs: `--keep` appends more users to the same log.
    let username = Username::parse(&format!("bench-{run}-{i}")).expect("valid username");
    let created = UserEvent::UserCreated {
        user_id,
        username: username.clone(),
        role: Role::Viewer,
        password_hash: SecretRef { secret_id: Uuid::now_v7(), ciphertext: "YmVuY2g=".into() },
    };
    let append = StreamAppend {
        stream_id: StreamId::new("user", user_id),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent::from_domain(&created, &bench_metadata())],
    };
    let logins = StreamId::new("login", username_stream_uuid(&username));
    (append, user_id, username, logins)
}

async fn append(
    pool: &PgPool,
    events: usize,
    streams: usize,
    writers: usize,
    batch: usize,
    group: GroupCommit,
) -> Result<serde_json::Value> {
    let store = EventStore::new(pool.clone(), Wakeup::default()).with_group_commit(group);
    let mut users = Vec::with_capacity(streams);
    let mut setup = Vec::new();
    let run = Uuid::now_v7().simple().to_string();
    for i in 0..streams {
        let (append, user_id, username, logins) = bench_user(&run[run.len() - 8..], i);
        setup.push(append);
        users.push((user_id, username, logins));
        if setup.len() == 1000 || i + 1 == streams {
            store.append(std::mem::take(&mut setup)).await?;
        }
    }
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(pool).await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(pool).await?;

    let users = Arc::new(users);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, users) = (store.clone(), users.clone());
        let quota = events / writers + usize::from(w < events % writers);
        tasks.push(tokio::spawn(async move {
            // Writer w owns the streams w, w + writers, w + 2·writers, …: no two writers race.
            let owned: Vec<usize> = (w..users.len()).step_by(writers).collect();
            let mut latencies = Vec::with_capacity(quota / batch + 1);
            let mut written = 0;
            let mut next = 0usize;
            while written < quota {
                let n = batch.min(quota - written);
                // One batch is one command's: its events share its metadata.
                let metadata = Arc::new(serde_json::to_value(bench_metadata()).expect("metadata serializes"));
                let mut by_stream: HashMap<usize, Vec<NewEvent>> = HashMap::new();
                for _ in 0..n {
                    let u = owned[next % owned.len()];
                    let (user_id, username, _) = &users[u];
                    let event = if next % 10 == 9 {
                        LoginEvent::LoginFailed {
                            username: username.clone(),
                            user_id: Some(*user_id),
                            source: "192.0.2.7".into(),
                            reason: LoginFailure::WrongPassword,
                        }
                    } else {
                        LoginEvent::LoginSucceeded {
                            username: username.clone(),
                            user_id: *user_id,
                            source: "192.0.2.7".into(),
                        }
                    };
                    by_stream.entry(u).or_default().push(NewEvent::with_metadata(&event, metadata.clone()));
                    next += 1;
                }
                let appends = by_stream
                    .into_iter()
                    .map(|(u, events)| StreamAppend {
                        stream_id: users[u].2.clone(),
                        expected: ExpectedVersion::Any,
                        events,
                    })
                    .collect();
                let t = Instant::now();
                store.append(appends).await?;
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
        "benchmark": "append",
        "events": events,
        "streams": streams,
        "writers": writers,
        "batch": batch,
        "seconds": seconds,
        "events_per_second": events as f64 / seconds,
        "appends": latencies.len(),
        "group_commit": group.enabled,
        "group_wait_us": group.max_wait.as_micros() as u64,
        "append_latency_ms": latency_summary(latencies),
        "fsync": fsync,
        "synchronous_commit": synchronous_commit,
    }))
}
