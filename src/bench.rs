//! `unity bench`: load generators that print measurements. They run against a database of their
//! own (`<DATABASE_URL's database>_bench`, recreated by `bench append`), never the real one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::{postgres::PgPoolOptions, AssertSqlSafe, ConnectOptions, Connection, PgPool};
use unity_commands::{
    relay::{NatsRelay, RelayConfig},
    store::{EventStore, ExpectedVersion, GroupCommit, NewEvent, StreamAppend},
    wakeup::Wakeup,
    MIGRATOR,
};
use unity_domain::{Actor, EventMetadata, StreamId};
use unity_projections::ProjectionEngine;
use uuid::Uuid;

use crate::{app::one_line, config::Settings};

mod append;
mod ceiling;
#[cfg(feature = "testbeds")]
mod certificates;
#[cfg(feature = "testbeds")]
mod collect;
#[cfg(feature = "testbeds")]
mod distribute;
mod e2e;
#[cfg(feature = "peer-bench")]
mod peer;
mod retention;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Append throughput and commit latency (recreates the bench database unless --keep).
    Append {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        streams: usize,
        #[arg(long, default_value_t = 1)]
        writers: usize,
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Group commit: appends that wait while another is written share its statement (off:
        /// each append commits alone, concurrently).
        #[arg(long, value_enum, default_value_t = Switch::On)]
        group_commit: Switch,
        /// How long a lone committer waits for company, in microseconds (UNITY_APPEND_GROUP_WAIT_US).
        #[arg(long)]
        group_wait_us: Option<u64>,
        /// Then the plain-SQL ceiling of the table's shape for the same rows and batches, in the
        /// same run, and the append's share of it.
        #[arg(long)]
        against_ceiling: bool,
        /// Then the peer (cqrs-es with postgres-es) with the same writers, batches, streams and
        /// payloads, in the same run (needs a build with `--features peer-bench`).
        #[arg(long)]
        peer: bool,
        /// Append to the existing bench database instead of starting afresh.
        #[arg(long)]
        keep: bool,
        /// Rounds of the whole measurement (the append, then the ceiling and the peer), one after
        /// the other, so that the machine's drift touches every figure alike; medians are printed.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the audit-log and users read models from the bench database's log.
    Replay {
        /// Only these read models (comma-separated names; default every one).
        #[arg(long, value_delimiter = ',')]
        projection: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The API end to end: `me` queries/s at full speed and latency at a fixed rate, then
    /// mutation-to-subscription delivery (fresh `<database>_bench_e2e` database).
    E2e {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 500)]
        deliveries: usize,
        #[arg(long)]
        json: bool,
    },
    #[cfg(feature = "testbeds")]
    /// Agentless monitoring of --servers registered servers shared by --hosts real sshd on
    /// loopback (started here; needs /usr/sbin/sshd, root and ../shared/fixtures or
    /// UNITY_FIXTURES): polls per minute, steady-state CPU and RSS, key exchanges per hour,
    /// bytes per sample and a day's chart query (fresh `<database>_bench_collect` database).
    Collect {
        #[arg(long, default_value_t = 100)]
        servers: usize,
        #[arg(long, default_value_t = 10)]
        hosts: usize,
        /// How long every server is polled round after round.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// How long the real schedule runs afterwards, for CPU, RSS and key exchanges.
        #[arg(long, default_value_t = 120)]
        steady_seconds: u64,
        #[arg(long, default_value_t = 60)]
        interval: u32,
        /// Days of every server's samples written for the storage and chart figures.
        #[arg(long, default_value_t = 1)]
        fill_days: u32,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long)]
        json: bool,
    },
    #[cfg(feature = "testbeds")]
    /// One key distributed to --servers real sshd instances on loopback (started here; needs
    /// /usr/sbin/sshd and root), at each --concurrency of the SSH reactor (fresh
    /// `<database>_bench_distribute` database).
    Distribute {
        #[arg(long, default_value_t = 20)]
        servers: usize,
        /// Comma-separated reactor concurrency limits to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,20")]
        concurrency: Vec<usize>,
        /// Distributions per concurrency limit; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    #[cfg(feature = "testbeds")]
    /// Issuing --count internal certificates in a row, with ECDSA P-256 keys and then RSA 2048
    /// keys, each recorded and its key sealed (fresh `<database>_bench_certificates` database);
    /// then --acme certificates in a row from a Pebble started here, through the whole
    /// application with real HTTP-01 validation (fresh `<database>_bench_acme` database).
    Certificates {
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// ACME orders against Pebble (0: skip).
        #[arg(long, default_value_t = 1)]
        acme: usize,
        #[arg(long)]
        json: bool,
    },
    /// A month of a fleet's samples written and sealed, then removed by retention: the time,
    /// the table sizes before and after, and verify after it (fresh `<database>_bench_retention`).
    Retention {
        #[arg(long, default_value_t = 100)]
        servers: usize,
        #[arg(long, default_value_t = 30)]
        days: usize,
        /// Seconds between two collections of one server.
        #[arg(long, default_value_t = 60)]
        interval_secs: u64,
        /// Concurrent writers filling the month.
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// Archive the removed events too (to a temporary directory, removed afterwards).
        #[arg(long)]
        archive: bool,
        /// Then the same rows removed by DELETE and VACUUM from one unpartitioned table.
        #[arg(long)]
        against_delete: bool,
        #[arg(long)]
        json: bool,
    },
    /// Append-to-visible latency at a JetStream consumer, at a fixed rate of one-event commits.
    Nats {
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: BenchCommand, settings: Settings) -> Result<()> {
    match command {
        BenchCommand::Append {
            events,
            streams,
            writers,
            batch,
            group_commit,
            group_wait_us,
            against_ceiling,
            peer,
            keep,
            rounds,
            json,
        } => {
            let load = append::Load { events, streams, writers, batch, rounds };
            let group = GroupCommit {
                enabled: group_commit == Switch::On,
                max_wait: group_wait_us.map_or(settings.append_group_wait, Duration::from_micros),
                ..GroupCommit::default()
            };
            append::run(&settings, load, group, append::Beside { ceiling: against_ceiling, peer }, keep, json).await?;
        }
        BenchCommand::Retention { servers, days, interval_secs, writers, archive, against_delete, json } => {
            let pool = bench_database(&settings, true, "_retention").await?.0;
            let load = retention::Load { servers, days, interval_secs, writers, archive, against_delete };
            let result = retention::run(&pool, load).await?;
            print(&result, json, |r| {
                let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
                let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
                let archive = match r["archive_bytes"].as_f64() {
                    Some(b) => format!(", archived to {:.1} MiB of gzip JSON Lines", b / 1048576.0),
                    None => String::new(),
                };
                let delete = match r.get("delete") {
                    Some(d) => format!(
                        "
the same rows by DELETE from one table, {} days one statement each: {:.2} s, then VACUUM {:.2} s; {:.1} MiB empty, {:.1} MiB filled, {:.1} MiB after",
                        d["buckets"], d["delete_seconds"].as_f64().unwrap_or(0.0), d["vacuum_seconds"].as_f64().unwrap_or(0.0),
                        mib(&d["bytes_empty"]), mib(&d["bytes_filled"]), mib(&d["bytes_after"]),
                    ),
                    None => String::new(),
                };
                format!(
                    "retention: {} samples ({} servers × {} days at {} s) written in {:.1} s ({:.0} events/s); {} buckets, {} events removed in {:.2} s ({:.0} % of the 60 s limit){archive}; events {:.1} MiB before, {:.1} MiB filled, {:.1} MiB after; verify after the removal: {} events in {:.2} s, {}",
                    r["samples"], r["servers"], r["days"], r["interval_secs"], f("fill_seconds"), f("fill_events_per_second"),
                    r["buckets_removed"], r["events_removed"], f("removal_seconds"), 100.0 * f("removal_share_of_limit"),
                    mib(&r["bytes_before"]), mib(&r["bytes_filled"]), mib(&r["bytes_after"]),
                    r["verify_events"], f("verify_seconds"), if r["verify_ok"] == true { "OK" } else { "BROKEN" },
                ) + &delete
            });
        }
        BenchCommand::Replay { projection, json } => {
            let pool = bench_database(&settings, false, "").await?.0;
            let store = EventStore::new(pool.clone(), Wakeup::default());
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM event_log").fetch_one(&pool).await?;
            if total == 0 {
                bail!("the bench database is empty: run `unity bench append` first");
            }
            let engine = ProjectionEngine::new(store, unity_projections::all_projections());
            engine.prepare().await?;
            let started = Instant::now();
            let chosen = if projection.is_empty() {
                engine.projections().to_vec()
            } else {
                projection.iter().map(|name| engine.find(name)).collect::<Result<Vec<_>, _>>()?
            };
            let replayed = engine.rebuild(&chosen, |_, _| {}).await?;
            let seconds = started.elapsed().as_secs_f64();
            let result = json!({
                "benchmark": "replay",
                "projections": chosen.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "events": replayed,
                "seconds": seconds,
                "events_per_second": replayed as f64 / seconds,
            });
            print(&result, json, |r| {
                format!(
                    "replay: {} events into {} in {:.2} s = {:.0} events/s",
                    r["events"],
                    r["projections"],
                    seconds,
                    r["events_per_second"].as_f64().unwrap_or(0.0)
                )
            });
        }
        BenchCommand::E2e { seconds, rate, concurrency, deliveries, json } => {
            if seconds == 0 || rate == 0 || concurrency == 0 || deliveries == 0 {
                bail!("--seconds, --rate, --concurrency and --deliveries must all be at least 1");
            }
            let result = e2e::e2e(&settings, seconds, rate, concurrency, deliveries).await?;
            print(&result, json, |r| {
                let ms = |v: &serde_json::Value, p: &str| v["latency_ms"][p].as_f64().unwrap_or(0.0);
                format!(
                    "e2e: me {:.0} queries/s ({} clients, {} failed); at {}/s p50 {:.2} ms, p99 {:.2} ms; mutation to subscription p50 {:.2} ms, p99 {:.2} ms; \
                     logout to socket closed: subscribed p50 {:.1} ms, max {:.1} ms, idle p50 {:.1} ms, max {:.1} ms",
                    r["me_queries"]["per_second"].as_f64().unwrap_or(0.0), r["me_queries"]["concurrency"], r["me_queries"]["failed"],
                    r["me_at_fixed_rate"]["rate"], ms(&r["me_at_fixed_rate"], "p50"), ms(&r["me_at_fixed_rate"], "p99"),
                    ms(&r["mutation_to_subscription"], "p50"), ms(&r["mutation_to_subscription"], "p99"),
                    r["logout_to_socket_closed"]["with_a_subscription_ms"]["p50"].as_f64().unwrap_or(0.0),
                    r["logout_to_socket_closed"]["with_a_subscription_ms"]["max"].as_f64().unwrap_or(0.0),
                    r["logout_to_socket_closed"]["idle_socket_ms"]["p50"].as_f64().unwrap_or(0.0),
                    r["logout_to_socket_closed"]["idle_socket_ms"]["max"].as_f64().unwrap_or(0.0),
                )
            });
        }
        #[cfg(feature = "testbeds")]
        #[cfg(feature = "testbeds")]
        BenchCommand::Collect { servers, hosts, seconds, steady_seconds, interval, fill_days, queries, json } => {
            if interval < 15 || queries == 0 {
                bail!("--interval must be at least 15 and --queries at least 1");
            }
            let load =
                collect::Load { servers, hosts, seconds, steady_seconds, interval_secs: interval, fill_days, queries };
            let result = collect::run(&settings, load).await?;
            print(&result, json, |r| {
                let (t, s, st, c) = (&r["throughput"], &r["steady"], &r["storage"], &r["chart"]);
                let f = |v: &Value| v.as_f64().unwrap_or(0.0);
                format!(
                    "collect: {} servers on {} sshd\n  throughput: {} polls in {:.1} s = {:.0} polls/min ({} failed); CPU of the machine: Unity {:.0} %, sshd/PostgreSQL/rest {:.0} %\n  steady at {} s: {} polls in {:.0} s; Unity {:.2} % of one core, RSS peak {:.1} MB; {} key exchanges = {:.2} per server per hour\n  storage: {} samples in {:.1} s; {:.0} bytes per sample ({:.0} of it the payload), all indexes included; 30 days × 100 servers at 60 s ≈ {:.2} GB\n  chart: {} samples of one day, p50 {:.2} ms, p99 {:.2} ms ({} queries)",
                    r["servers"], r["sshd"],
                    t["polls"], f(&t["seconds"]), f(&t["polls_per_minute"]), t["failed_polls"], 100.0 * f(&t["unity_cpu_share_of_machine"]), 100.0 * f(&t["others_cpu_share_of_machine"]),
                    s["interval_secs"], s["polls"], f(&s["seconds"]), f(&s["unity_cpu_percent_of_one_core"]), f(&s["rss_peak_bytes"]) / 1e6, s["key_exchanges"], f(&s["key_exchanges_per_server_per_hour"]),
                    st["sample_events"], f(&st["fill_seconds"]), f(&st["bytes_per_sample"]), f(&st["payload_bytes_per_sample"]), f(&st["projected_bytes_30_days_100_servers"]) / 1e9,
                    c["points"], f(&c["p50_ms"]), f(&c["p99_ms"]), c["queries"],
                )
            });
        }
        BenchCommand::Distribute { servers, concurrency, rounds, json } => {
            if servers == 0 || servers > 500 || rounds == 0 || concurrency.is_empty() || concurrency.contains(&0) {
                bail!("--servers must be 1 to 500, --rounds at least 1, and every --concurrency at least 1");
            }
            let result = distribute::distribute(&settings, servers, &concurrency, rounds).await?;
            print(&result, json, |r| {
                let mut lines = vec![format!(
                    "distribute: one key to {} sshd instances (median of {} rounds)",
                    r["servers"], r["rounds"]
                )];
                for run in r["runs"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "  concurrency {:>3}: {:.3} s (min {:.3}, max {:.3}) = {:.1} servers/s",
                        run["concurrency"],
                        run["seconds_median"].as_f64().unwrap_or(0.0),
                        run["seconds_min"].as_f64().unwrap_or(0.0),
                        run["seconds_max"].as_f64().unwrap_or(0.0),
                        run["servers_per_second"].as_f64().unwrap_or(0.0),
                    ));
                }
                lines.join("\n")
            });
        }
        #[cfg(feature = "testbeds")]
        BenchCommand::Certificates { count, acme, json } => {
            if count == 0 || count > 100_000 || acme > 1000 {
                bail!("--count must be between 1 and 100000, --acme between 0 and 1000");
            }
            let result = certificates::certificates(&settings, count, acme).await?;
            print(&result, json, |r| {
                let runs: Vec<String> = r["runs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|run| {
                        format!(
                            "{} {} in {:.2} s = {:.1}/s",
                            run["certificates"],
                            run["key_algorithm"].as_str().unwrap_or("?"),
                            run["seconds"].as_f64().unwrap_or(0.0),
                            run["per_second"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect();
                let acme = &r["acme"];
                let acme = if acme.is_null() {
                    String::new()
                } else {
                    format!(
                        "\nacme: account registered at Pebble in {:.2} s; {} HTTP-01 order(s), request to certificate recorded: median {:.2} s, max {:.2} s",
                        acme["registration_seconds"].as_f64().unwrap_or(0.0),
                        acme["orders"],
                        acme["order_seconds_median"].as_f64().unwrap_or(0.0),
                        acme["order_seconds_max"].as_f64().unwrap_or(0.0),
                    )
                };
                format!("certificates: {}{acme}", runs.join("; "))
            });
        }
        BenchCommand::Nats { rate, seconds, json } => {
            if rate == 0 || seconds == 0 {
                bail!("--rate and --seconds must be at least 1");
            }
            let url = settings.nats_url.clone().ok_or_else(|| anyhow!("set NATS_URL to the nats-server to measure"))?;
            let pool = bench_database(&settings, false, "").await?.0;
            let result = nats(pool, &url, rate, seconds).await?;
            print(&result, json, |r| {
                format!(
                    "nats: {} one-event commits at {}/s; append to JetStream consumer p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    r["events"], r["rate"], r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                    r["latency_ms"]["p99"].as_f64().unwrap_or(0.0), r["latency_ms"]["max"].as_f64().unwrap_or(0.0)
                )
            });
        }
    }
    Ok(())
}

/// The peer beside the append just measured, with the payload and metadata of its last row.
fn print(result: &serde_json::Value, json: bool, text: impl Fn(&serde_json::Value) -> String) {
    if json {
        println!("{result}");
    } else {
        println!("{}", text(result));
    }
}

#[cfg(feature = "testbeds")]
/// A fresh bench database (`suffix`) and a vault on it whose throw-away master key exists only
/// in memory once this returns.
async fn bench_store_and_vault(
    settings: &Settings,
    suffix: &str,
) -> Result<(EventStore, unity_commands::vault::Vault)> {
    use unity_commands::vault::{MasterKey, Vault};
    let (pool, _) = bench_database(settings, true, suffix).await?;
    let store = EventStore::new(pool, Wakeup::default());
    let key_file = std::env::temp_dir().join(format!("unity-bench{suffix}-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&key_file);
    let vault = Vault::open(MasterKey::create(&key_file)?, store.clone()).await;
    let _ = std::fs::remove_file(&key_file);
    Ok((store, vault?))
}

/// The bench database beside the configured one, migrated; recreated empty when `fresh`.
async fn bench_database(settings: &Settings, fresh: bool, suffix: &str) -> Result<(PgPool, String)> {
    let name = format!("{}_bench{suffix}", settings.database.get_database().unwrap_or("unity"));
    let admin_options = settings.database.clone().database("postgres");
    let mut admin = admin_options
        .connect()
        .await
        .map_err(|e| anyhow!("cannot connect to PostgreSQL at {}: {}", settings.database_display, one_line(&e)))?;
    let exists: bool = sqlx::query_scalar("SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if fresh && exists {
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{name}\""))).execute(&mut admin).await?;
    }
    if fresh || !exists {
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .context("creating the bench database")?;
    }
    admin.close().await?;
    let options = settings
        .database
        .clone()
        .database(&name)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(30));
    let pool = PgPoolOptions::new().max_connections(40).connect_with(options).await?;
    MIGRATOR.run(&pool).await?;
    Ok((pool, name))
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn latency_summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort_unstable();
    json!({
        "p50": percentile_ms(&samples, 0.50),
        "p99": percentile_ms(&samples, 0.99),
        "max": percentile_ms(&samples, 1.0),
    })
}

fn bench_metadata() -> EventMetadata {
    unity_commands::metadata(Actor::system("bench"), "bench")
}

async fn nats(pool: PgPool, url: &str, rate: u32, seconds: u32) -> Result<serde_json::Value> {
    let store = EventStore::new(pool, Wakeup::default());
    let client = async_nats::connect(url).await.map_err(|e| anyhow!("cannot connect to NATS at {url}: {e}"))?;
    let tag = Uuid::now_v7().simple().to_string();
    let config = RelayConfig {
        stream_name: format!("UNITY_BENCH_{tag}"),
        subject_prefix: format!("unitybench{tag}.events"),
        poll_interval: Duration::from_millis(100),
        ..RelayConfig::default()
    };
    let relay = NatsRelay::new(store.clone(), client.clone(), config.clone()).await?;
    // Start after what the bench database already holds.
    let head = store.head().await?;
    relay.skip_to(head).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay_task = tokio::spawn(relay.run(stopped));

    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(&config.stream_name).await.map_err(|e| anyhow!("{e}"))?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| anyhow!("{e}"))?;

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = (rate * seconds) as usize;
    let appender = {
        let (store, sent) = (store.clone(), sent.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let metadata = bench_metadata();
            let stream_id = StreamId::new("bench", Uuid::now_v7());
            for i in 0..total {
                ticker.tick().await;
                let event = NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "BenchTicked".into(),
                    schema_version: 1,
                    payload: json!({"i": i}),
                    metadata: serde_json::to_value(&metadata).expect("metadata serializes").into(),
                };
                sent.lock().expect("not poisoned").insert(event.event_id.to_string(), Instant::now());
                let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(i as i64) };
                store
                    .append(vec![StreamAppend { stream_id: stream_id.clone(), expected, events: vec![event] }])
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds as u64 + 60);
    while latencies.len() < total && Instant::now() < deadline {
        let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await else { continue };
        let message = message.map_err(|e| anyhow!("{e}"))?;
        let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned());
        if let Some(at) = id.and_then(|id| sent.lock().expect("not poisoned").remove(&id)) {
            latencies.push(at.elapsed());
        }
    }
    appender.await??;
    let _ = stop.send(true);
    let _ = relay_task.await;
    let _ = js.delete_stream(&config.stream_name).await;
    if latencies.len() < total {
        bail!("only {} of {total} events reached the consumer within the deadline", latencies.len());
    }
    Ok(json!({
        "benchmark": "nats",
        "rate": rate,
        "seconds": seconds,
        "events": total,
        "latency_ms": latency_summary(latencies),
    }))
}
