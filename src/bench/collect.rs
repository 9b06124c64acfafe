//! `unity bench collect`: agentless monitoring against real sshd on loopback standing for the
//! fleet (several registered servers share one sshd whose /proc and tools serve the fixtures).
//!
//! 1. Throughput: every server made due at once, round after round, for `--seconds`: polls per
//!    minute, and where the machine's CPU went (Unity, everything else: sshd, PostgreSQL).
//! 2. Steady state: the real schedule at `--interval` for `--steady-seconds`: Unity's CPU (percent
//!    of one core), its peak RSS, and key exchanges per server per hour.
//! 3. Storage: `--fill-days` of every server's samples written as a collector writes them, then
//!    bytes per sample (the samples partitions with their indexes) and the projection to 30 days.
//! 4. A 24-hour chart of one server at raw resolution (1,440 samples), p50/p99 of `--queries` reads.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Result};
use chrono::{Days, Utc};
use serde_json::{json, Value};
use unity_collectors::{
    monitoring::{
        collector::{Collector, CollectorConfig},
        poll,
    },
    testing::host::{HostView, MonitoredHost},
};
use unity_commands::{credentials::CredentialCommands, monitoring::schedule, Commands};
use unity_domain::{
    credentials::{KeyAlgorithm, SshKeyState},
    monitoring::{MonitoringCommand, MonitoringConfig},
    servers::{ServerAuth, ServerSpec},
    Actor,
};
use unity_projections::{engine::ProjectionEngine, monitoring as read};
use uuid::Uuid;

use crate::config::Settings;

pub struct Load {
    pub servers: usize,
    pub hosts: usize,
    pub seconds: u64,
    pub steady_seconds: u64,
    pub interval_secs: u32,
    pub fill_days: u32,
    pub queries: usize,
}

/// A host with realistic output: the fixtures' /proc, a root filesystem, md and ZFS, two disks.
fn view(fixtures: &std::path::Path) -> Result<HostView> {
    let read = |p: &str| {
        std::fs::read_to_string(fixtures.join(p))
            .map_err(|e| anyhow!("{}: {e} (set UNITY_FIXTURES)", fixtures.join(p).display()))
    };
    Ok(HostView::default()
        .proc_file("stat", read("proc/procfs_proc_stat_8cpu")?)
        .proc_file("meminfo", read("proc/jc_proc_meminfo_with_memavailable")?)
        .proc_file("loadavg", read("proc/procfs_proc_loadavg")?)
        .proc_file("uptime", read("proc/jc_proc_uptime")?)
        .proc_file("net/dev", read("proc/procfs_proc_net_dev_docker")?)
        .proc_file("mounts", "/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 /srv ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n")
        .proc_file("sys/kernel/random/boot_id", "6b0e6a0c-1d2e-4f5a-9b8c-7d6e5f4a3b2c\n")
        .proc_file("sys/kernel/hostname", "nas-1\n")
        .proc_file("mdstat", read("mdstat/telegraf_mdstat_raid10_check_in_progress")?)
        .command("df", "-P", "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda2 20508240 5748028 13695408 30% /\n/dev/sdb1 976284628 512345678 463938950 53% /srv\ntmpfs 201732 1204 200528 1% /run\n", 0)
        .command("df", "-Pi", "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sda2 1310720 200000 1110720 16% /\n/dev/sdb1 61038592 1200000 59838592 2% /srv\ntmpfs 252166 800 251366 1% /run\n", 0)
        .command("zpool", "status -p", read("zfs/zpoolstatusexporter_zpool_status_scrub_in_progress.txt")?, 0)
        .command("zpool", "list -Hp *", read("zfs/telegraf_zpool_list_Hp_freebsd14_online.tsv")?.replace("zroot", "neptune"), 0)
        .command("zfs", "list -Hp *", "neptune\t1000\t2000\t0\t2000\n", 0)
        .command("smartctl", "--scan-open --json", r#"{"devices":[{"name":"/dev/sda","type":"sat"},{"name":"/dev/nvme0","type":"nvme"}]}"#, 0)
        .command("smartctl", "*/dev/sda", read("smartctl/scrutiny_ata_hdd_wd140edfz_healthy_a.json")?, 0)
        .command("smartctl", "*/dev/nvme0", read("smartctl/scrutiny_nvme_corsair_mp510_healthy_a.json")?, 0))
}

/// CPU ticks (USER_HZ) this process has used, and the machine's busy and total ticks.
fn cpu_ticks() -> (u64, u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = own.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let own = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    let machine = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> =
        machine.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (own, total - idle, total)
}

fn rss_bytes(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub async fn run(settings: &Settings, load: Load) -> Result<Value> {
    if load.servers == 0 || load.hosts == 0 || load.hosts > load.servers {
        bail!("--servers must be at least 1 and --hosts between 1 and --servers");
    }
    let fixtures =
        std::env::var_os("UNITY_FIXTURES").map(std::path::PathBuf::from).unwrap_or_else(|| "../shared/fixtures".into());
    let (store, vault) = super::bench_store_and_vault(settings, "_collect").await?;
    let commands = Commands::open(store.clone(), vault);
    let credentials: &CredentialCommands = &commands.credentials;
    let metadata = unity_commands::metadata(Actor::system("bench"), "bench");
    let login =
        credentials.generate_ssh_key("bench-login", KeyAlgorithm::Ed25519, None, "bench", vec![], &metadata).await?;
    let SshKeyState::Active(login_key) = credentials.ssh_key(login.id).await? else { bail!("the login key vanished") };

    let root = std::env::temp_dir().join(format!("unity-bench-collect-{}", Uuid::now_v7().simple()));
    let view = view(&fixtures)?;
    let mut hosts = Vec::with_capacity(load.hosts);
    for n in 0..load.hosts {
        let host = MonitoredHost::start(&root.join(format!("h{n}")), &view).map_err(|e| anyhow!(e))?;
        let mut authorized = std::fs::read_to_string(host.sshd.authorized_keys())?;
        authorized.push_str(&format!("{}\n", login_key.key.public_key));
        std::fs::write(host.sshd.authorized_keys(), authorized)?;
        hosts.push(host);
    }
    let mut servers = Vec::with_capacity(load.servers);
    for n in 0..load.servers {
        let host = &hosts[n % load.hosts];
        let spec = ServerSpec {
            name: format!("bench-{n}"),
            address: "127.0.0.1".into(),
            port: host.sshd.port,
            username: "root".into(),
            authentication: ServerAuth::SshKey { key_id: login.id },
            authorized_keys_file: host.sshd.authorized_keys().display().to_string(),
            tags: vec![],
        };
        let host_key = host.sshd.host_key_fingerprint().map_err(|e| anyhow!(e))?;
        let server_id = commands.servers.register_server(spec, Some(host_key), &metadata).await?.id;
        let config =
            MonitoringConfig { enabled: true, interval_secs: load.interval_secs, ..MonitoringConfig::default() };
        commands.monitoring.command(server_id, MonitoringCommand::Configure(config), &metadata).await?;
        servers.push(server_id);
    }
    let engine = ProjectionEngine::new(store.clone(), unity_projections::all_projections());
    engine.prepare().await?;
    engine.catch_up().await?;
    let pool = store.pool().clone();
    let collector = Arc::new(Collector::new(
        commands.monitoring.clone(),
        commands.credentials.clone(),
        commands.certificates.clone(),
        CollectorConfig { concurrency: 32, ..CollectorConfig::default() },
    ));
    collector.sync().await?;

    // 1. Throughput: every server due, round after round.
    let all_due = || async {
        sqlx::query("UPDATE monitoring_schedule SET next_poll_at = now()").execute(&pool).await.map(|_| ())
    };
    all_due().await?;
    collector.tick().await?; // the first round connects and reads SMART
    let (own0, busy0, total0) = cpu_ticks();
    let started = Instant::now();
    let mut polls = 0usize;
    let mut rounds = 0usize;
    while started.elapsed() < Duration::from_secs(load.seconds) {
        all_due().await?;
        polls += collector.tick().await?;
        rounds += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (own1, busy1, total1) = cpu_ticks();
    let total_ticks = (total1 - total0).max(1) as f64;
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_log WHERE event_type = (SELECT key FROM event_types WHERE name = 'CollectionFailed')",
    )
        .fetch_one(&pool)
        .await?;

    // 2. Steady state on the real schedule.
    sqlx::query("UPDATE monitoring_schedule SET next_poll_at = now() + make_interval(secs => abs(hashtext(server_id::text)) % interval_secs)")
        .execute(&pool)
        .await?;
    let connects_before = collector.connects.load(Ordering::Relaxed);
    let (own_s0, _, _) = cpu_ticks();
    let steady_started = Instant::now();
    let mut steady_polls = 0usize;
    let mut rss_peak = 0u64;
    while steady_started.elapsed() < Duration::from_secs(load.steady_seconds) {
        steady_polls += collector.tick().await?;
        rss_peak = rss_peak.max(rss_bytes("VmRSS:"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let steady_elapsed = steady_started.elapsed().as_secs_f64();
    let (own_s1, _, _) = cpu_ticks();
    let steady_connects = collector.connects.load(Ordering::Relaxed) - connects_before;
    let ticks_per_second = 100.0;

    // 3. Storage: a full day (or more) of every server's samples, written as the collector does.
    let reading = {
        let session =
            unity_collectors::servers::ssh::connect(&hosts[0].target().map_err(|e| anyhow!(e))?, &Default::default())
                .await
                .result?;
        let output = session.exec(&poll::script(), None).await?;
        poll::parse(&String::from_utf8_lossy(&output.stdout), 0, None, 1)?
    };
    let today = Utc::now().date_naive();
    let first_day = today - Days::new(u64::from(load.fill_days.max(1)));
    let fill_started = Instant::now();
    let per_day = 86_400 / i64::from(load.interval_secs);
    let mut writers = tokio::task::JoinSet::new();
    for chunk in servers.chunks(servers.len().div_ceil(8)) {
        let (chunk, monitoring, reading, metadata) =
            (chunk.to_vec(), commands.monitoring.clone(), reading.clone(), metadata.clone());
        let days = load.fill_days.max(1);
        let interval = i64::from(load.interval_secs);
        writers.spawn(async move {
            for day in 0..days {
                let midnight =
                    (first_day + Days::new(u64::from(day))).and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
                for n in 0..per_day {
                    for &server in &chunk {
                        let at = midnight + chrono::Duration::seconds(n * interval);
                        let observe = MonitoringCommand::Observe {
                            at,
                            facts: reading.facts.clone(),
                            pools: reading.pools.clone(),
                            arrays: reading.arrays.clone(),
                        };
                        monitoring.record_poll(server, at, reading.sample.clone(), observe, &metadata).await?;
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = writers.join_next().await {
        result??;
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE event_log").execute(&pool).await?;
    let (sample_events, sample_bytes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM event_log_samples), \
                (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree('event_log_samples') WHERE isleaf)",
    )
    .fetch_one(&pool)
    .await?;
    let payload_bytes: f64 = sqlx::query_scalar(
        "SELECT avg(pg_column_size(payload))::float8 FROM event_log_samples \
         WHERE event_type = (SELECT key FROM event_types WHERE name = 'ServerSampled')",
    )
    .fetch_one(&pool)
    .await?;
    let per_sample = sample_bytes as f64 / sample_events.max(1) as f64;

    // 4. A day's chart for one server.
    let (from, to) = (
        first_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        first_day.and_hms_opt(23, 59, 59).unwrap_or_default().and_utc(),
    );
    let mut latencies = Vec::with_capacity(load.queries);
    let mut points = 0;
    for _ in 0..load.queries {
        let started = Instant::now();
        points = read::samples(&pool, servers[0], from, to).await?.len();
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    drop(hosts);
    let _ = std::fs::remove_dir_all(&root);
    let _ = schedule::release(&pool, collector.holder()).await;
    Ok(json!({
        "benchmark": "collect",
        "servers": load.servers,
        "sshd": load.hosts,
        "throughput": {
            "seconds": elapsed,
            "rounds": rounds,
            "polls": polls,
            "polls_per_minute": polls as f64 / elapsed * 60.0,
            "failed_polls": failed,
            "unity_cpu_share_of_machine": (own1 - own0) as f64 / total_ticks,
            "others_cpu_share_of_machine": ((busy1 - busy0) as f64 - (own1 - own0) as f64).max(0.0) / total_ticks,
        },
        "steady": {
            "seconds": steady_elapsed,
            "interval_secs": load.interval_secs,
            "polls": steady_polls,
            "unity_cpu_percent_of_one_core": (own_s1 - own_s0) as f64 / ticks_per_second / steady_elapsed * 100.0,
            "rss_peak_bytes": rss_peak,
            "key_exchanges": steady_connects,
            "key_exchanges_per_server_per_hour": steady_connects as f64 / load.servers as f64 / (steady_elapsed / 3600.0),
        },
        "storage": {
            "fill_days": load.fill_days.max(1),
            "fill_seconds": fill_seconds,
            "sample_events": sample_events,
            "sample_partition_bytes": sample_bytes,
            "bytes_per_sample": per_sample,
            "payload_bytes_per_sample": payload_bytes,
            "projected_bytes_30_days_100_servers": per_sample * 30.0 * 100.0 * 86_400.0 / f64::from(load.interval_secs),
        },
        "chart": {
            "points": points,
            "queries": load.queries,
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
        },
    }))
}
