//! Monitoring end to end through real sshd: hosts whose /proc and storage tools serve the
//! fixtures in ../shared/fixtures (`UNITY_FIXTURES`), polled and read exactly as a real server
//! would be.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use unity::app::Role;
use unity_collectors::{
    monitoring::{
        collect::{self, CollectError},
        collector::{Collector, CollectorConfig},
        smart::{Context, Reading},
    },
    servers::ssh::{self, SshConfig, SshError, SshSession},
    testing::host::{HostView, MonitoredHost},
};
use unity_commands::{monitoring::schedule, testing::eventually};
use unity_domain::monitoring::{DeviceKind, PoolKind, Verdict};
use unity_projections::monitoring as read;
use uuid::Uuid;

use crate::api::{code, spawn_app_roles};

fn fixture(path: &str) -> String {
    let root = std::env::var_os("UNITY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("unity-monitoring-{name}-{}", uuid::Uuid::now_v7().simple()))
}

const SCAN: &str = r#"{"smartctl":{"exit_status":0},"devices":[
  {"name":"/dev/sda","info_name":"/dev/sda [SAT]","type":"sat","protocol":"ATA"},
  {"name":"/dev/sdb","info_name":"/dev/sdb [SAT]","type":"sat","protocol":"ATA"},
  {"name":"/dev/nvme0","info_name":"/dev/nvme0","type":"nvme","protocol":"NVMe"}]}"#;

const STANDBY: &str = r#"{"smartctl":{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)","severity":"information"}]},"device":{"name":"/dev/sdb","type":"sat","protocol":"ATA"}}"#;

/// The project's own samples of LVM and btrfs output.
macro_rules! own_sample {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/collectors/src/monitoring/samples/", $name))
    };
}

/// /proc/mounts for the df fixture: the root is ext4, the snaps squashfs, the rest tmpfs; and
/// two btrfs filesystems, one mounted twice (a subvolume), one at a path with a space.
fn mounts() -> String {
    let df = fixture("proc/jc_df_ubuntu1804_snaps_100pct.txt");
    let rows = df.lines().skip(1).filter_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let (device, mount) = (fields.first()?, fields.last()?);
        let fstype = match *mount {
            "/" => "ext4",
            m if m.starts_with("/snap/") => "squashfs",
            _ => "tmpfs",
        };
        Some(format!("{device} {mount} {fstype} rw 0 0\n"))
    });
    let btrfs = "/dev/sdc1 /srv/data btrfs rw 0 0\n/dev/sdc1 /srv/data/snapshots btrfs rw,subvol=/snapshots 0 0\n\
                 /dev/sdd /mnt/my\\040disk btrfs rw 0 0\n";
    rows.collect::<String>() + btrfs
}

/// A host with a degraded md array, a degraded ZFS pool, a partial LVM volume group, a degraded
/// btrfs filesystem beside a healthy one, and three disks: one failing, one asleep, one NVMe with
/// old media errors.
fn storage_host() -> HostView {
    HostView::default()
        .proc_file("stat", fixture("proc/jc_proc_stat_2cpu"))
        .proc_file("meminfo", fixture("proc/jc_proc_meminfo_with_memavailable"))
        .proc_file("loadavg", fixture("proc/jc_proc_loadavg"))
        .proc_file("uptime", fixture("proc/jc_proc_uptime"))
        .proc_file("net/dev", fixture("proc/jc_proc_net_dev"))
        .proc_file("mounts", mounts())
        .proc_file("sys/kernel/random/boot_id", "0b7c1f5e-4d53-4bb4-9a59-2a3a6f1b7c11\n")
        .proc_file("sys/kernel/hostname", "nas-1\n")
        .proc_file("mdstat", fixture("mdstat/telegraf_mdstat_raid5_degraded_missing_disk"))
        .command("df", "-P", fixture("proc/jc_df_ubuntu1804_snaps_100pct.txt"), 0)
        .command("df", "-Pi", "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sda2 1310720 200000 1110720 16% /\n", 0)
        .command("mdadm", "--detail /dev/md0", fixture("mdadm/jc_mdadm_detail_raid1_degraded_removed.txt"), 0)
        .command("zpool", "status -p", fixture("zfs/zpoolstatusexporter_zpool_status_degraded_unavail_cksum_errors.txt"), 0)
        .command("zpool", "list -Hp *", "mypool\tDEGRADED\t8001563222016\t5001563222016\t3000000000000\t10\t62\t1.00\n", 0)
        .command("zfs", "list -Hp *", "mypool\t3000000000000\t5001563222016\t0\t98304\nmypool/data\t3000000000000\t5001500000000\t1024\t5001499998976\n", 0)
        .command("vgs", "*", own_sample!("vgs-partial.json"), 0)
        .command("lvs", "*", own_sample!("lvs.json"), 0)
        .command("btrfs", "filesystem usage -b /srv/data", own_sample!("btrfs-usage-degraded.txt"), 0)
        .command("btrfs", "device stats /srv/data", own_sample!("btrfs-stats-errors.txt"), 0)
        .command("btrfs", "filesystem usage -b /mnt/my disk", own_sample!("btrfs-usage.txt"), 0)
        .command("btrfs", "device stats /mnt/my disk", own_sample!("btrfs-stats.txt"), 0)
        .command("smartctl", "--scan-open --json", SCAN, 0)
        .command("smartctl", "*/dev/sda", fixture("smartctl/scrutiny_ata_hdd_hitachi_FAILED_reallocated.json"), 216)
        .command("smartctl", "*/dev/sdb", STANDBY, 2)
        .command("smartctl", "*/dev/nvme0", fixture("smartctl/scrutiny_nvme_samsung970evo_media_errors_x.json"), 0)
}

async fn connect(host: &MonitoredHost, config: &SshConfig) -> SshSession {
    ssh::connect(&host.target().unwrap(), config).await.result.expect("logged in")
}

#[tokio::test]
async fn a_host_is_polled_and_its_storage_read_over_one_ssh_session() {
    let dir = temp_dir("storage");
    let view = storage_host();
    let host = MonitoredHost::start(&dir, &view).unwrap();
    let session = connect(&host, &SshConfig::default()).await;

    let first = collect::poll(&session, 0, None, 180_000).await.unwrap();
    assert_eq!(first.sample.uptime_secs, 46901);
    assert_eq!(first.facts.cpus, 2);
    assert_eq!(first.facts.boot_id, "0b7c1f5e-4d53-4bb4-9a59-2a3a6f1b7c11");
    assert!(!first.facts.kernel.is_empty() && !first.facts.hostname.is_empty());
    assert_eq!(first.sample.load, [0, 1, 3]);
    let root = first.sample.filesystems.iter().find(|f| f.mount == "/").expect("the root filesystem");
    assert_eq!((root.fstype.as_str(), root.size, root.inodes_used), ("ext4", 20508240 * 1024, Some(200000)));
    assert!(first.sample.filesystems.iter().all(|f| !f.mount.starts_with("/snap/")), "snaps are left out");
    assert_eq!(first.sample.cpu, None);

    let md = &first.arrays[0];
    assert_eq!((md.name.as_str(), md.verdict), ("md0", Verdict::Failed));
    assert!(md.members.iter().any(|m| m.state == "removed"), "mdadm --detail ran on the server: {:?}", md.members);
    let pool = &first.pools[0];
    assert_eq!((pool.name.as_str(), pool.state.as_str(), pool.verdict), ("mypool", "DEGRADED", Verdict::Failed));
    assert_eq!(pool.size_bytes, Some(8001563222016));
    assert_eq!(pool.volumes.len(), 2);
    assert_eq!(pool.members.iter().map(|m| m.checksum_errors).sum::<u64>(), 100980);
    let kinds: Vec<(PoolKind, &str, Verdict)> =
        first.pools.iter().map(|p| (p.kind, p.name.as_str(), p.verdict)).collect();
    assert_eq!(
        kinds,
        [
            (PoolKind::Zfs, "mypool", Verdict::Failed),
            (PoolKind::Lvm, "vgtest", Verdict::Failed),
            (PoolKind::Btrfs, "/mnt/my disk", Verdict::Passed),
            (PoolKind::Btrfs, "/srv/data", Verdict::Failed),
        ],
        "vgs and lvs ran, and btrfs once per filesystem, a mount's escaped space read back"
    );

    // A minute later the CPU did 1,000 user ticks of 12,000: the second poll has shares.
    let later =
        fixture("proc/jc_proc_stat_2cpu").replacen("cpu  6002 152 8398 3444436", "cpu  7002 152 8398 3455436", 1);
    host.show(&view.clone().proc_file("stat", later)).unwrap();
    let second = collect::poll(&session, 60_000, Some(&first.counters), 180_000).await.unwrap();
    assert_eq!(second.sample.cpu.map(|c| (c.user, c.idle)), Some((833, 9167)));

    let disks = collect::smart(&session, |_| Context::default()).await.unwrap();
    assert_eq!(disks.len(), 3);
    let Reading::Device(sda) = &disks[0].1 else { panic!("{:?}", disks[0]) };
    assert_eq!((sda.kind, sda.verdict, sda.exit_status), (DeviceKind::Ata, Verdict::Failed, 216));
    assert_eq!(disks[1].1, Reading::Asleep, "a sleeping disk is not woken or failed");
    let Reading::Device(nvme) = &disks[2].1 else { panic!("{:?}", disks[2]) };
    assert_eq!((nvme.kind, nvme.verdict), (DeviceKind::Nvme, Verdict::Warning));
    // The same disk with its media errors accepted by serial number.
    let serial = nvme.serial.clone();
    let accepted = collect::smart(&session, |s| {
        let mut context = Context::default();
        if s == serial {
            context.accepted.insert("media_errors".into(), 7);
        }
        context
    })
    .await
    .unwrap();
    let Reading::Device(nvme) = &accepted[2].1 else { panic!() };
    assert_eq!(nvme.verdict, Verdict::Passed);
    session.close().await;
}

#[tokio::test]
async fn a_stuck_mount_costs_its_section_and_a_silent_server_its_timeout() {
    let dir = temp_dir("stuck");
    // `df -P` hangs as it would on a dead NFS server; the script's timeout kills it.
    let view = storage_host().script("df", "case \"$*\" in -P) exec sleep 60;; *) exit 1;; esac");
    let host = MonitoredHost::start(&dir, &view).unwrap();
    let session = connect(&host, &SshConfig::default()).await;
    let reading = collect::poll(&session, 0, None, 180_000).await.unwrap();
    assert!(reading.sample.filesystems.is_empty());
    assert_eq!(reading.missing, ["df", "df_inodes"]);
    assert_eq!(reading.sample.uptime_secs, 46901, "the rest of the poll is there");

    // A server that stops answering mid-poll: the command timeout ends the wait.
    host.show(&storage_host().script("uname", "exec sleep 60")).unwrap();
    let impatient = SshConfig { command_timeout: Duration::from_secs(2), ..SshConfig::default() };
    let session = connect(&host, &impatient).await;
    let error = collect::poll(&session, 0, None, 180_000).await.unwrap_err();
    assert!(matches!(error, CollectError::Ssh(SshError::Timeout(..))), "{error:?}");
}

#[tokio::test]
async fn garbage_from_a_host_is_a_clear_error_not_a_panic() {
    let dir = temp_dir("garbage");
    let view = storage_host().proc_file("stat", "cpu  this is not a counter\n");
    let host = MonitoredHost::start(&dir, &view).unwrap();
    let session = connect(&host, &SshConfig::default()).await;
    let error = collect::poll(&session, 0, None, 180_000).await.unwrap_err();
    assert_eq!(error.to_string(), "the server's output could not be read: /proc/stat: `this` is not a count");
    // smartctl printing something that is not JSON: that device is unreadable, the others read.
    host.show(&storage_host().command("smartctl", "*/dev/sda", "Segmentation fault", 139)).unwrap();
    let disks = collect::smart(&session, |_| Context::default()).await.unwrap();
    assert!(matches!(&disks[0].1, Reading::Unreadable(m) if m.contains("not JSON")), "{:?}", disks[0].1);
    assert!(matches!(&disks[2].1, Reading::Device(_)));
}

/// Registers `host` as a server logging in with the Unity key `login` (its public line added to
/// the host's authorized_keys), and returns the server id.
async fn register_host(
    app: &crate::api::TestApp,
    token: &str,
    name: &str,
    host: &MonitoredHost,
    login: &serde_json::Value,
) -> Uuid {
    let authorized = host.sshd.authorized_keys();
    let mut lines = std::fs::read_to_string(&authorized).unwrap();
    lines.push_str(&format!("{}\n", login["publicKey"].as_str().unwrap()));
    std::fs::write(&authorized, lines).unwrap();
    let data = app
        .ok(
            Some(token),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id } }",
            serde_json::json!({ "i": {
                "name": name, "address": "127.0.0.1", "port": host.sshd.port, "username": "root",
                "authentication": { "sshKeyId": login["id"] }, "tags": ["monitored"],
            } }),
        )
        .await;
    data["registerServer"]["id"].as_str().unwrap().parse().unwrap()
}

#[actix_rt::test]
async fn two_collectors_share_a_fleet_keep_their_sessions_and_take_over_from_each_other() {
    let app = spawn_app_roles(&[Role::Api, Role::Projections], &[]).await;
    let admin = app.admin().await;
    let login = app
        .ok(
            Some(&admin),
            "mutation($i: GenerateSshKeyInput!) { generateSshKey(input: $i) { id publicKey } }",
            serde_json::json!({ "i": { "name": "unity-monitoring", "algorithm": "ED25519" } }),
        )
        .await["generateSshKey"]
        .clone();
    let dir = temp_dir("fleet");
    let mut hosts = Vec::new();
    let mut servers = Vec::new();
    for n in 0..3 {
        let host = MonitoredHost::start(&dir.join(format!("h{n}")), &storage_host()).unwrap();
        servers.push(register_host(&app, &admin, &format!("h{n}"), &host, &login).await);
        hosts.push(host);
    }
    let commands = app.commands().await;
    let configure = "mutation($i: ConfigureMonitoringInput!) { configureMonitoring(input: $i) { enabled interval smart { enabled intervalSeconds } status } }";
    for &server in &servers {
        let data =
            app.ok(Some(&admin), configure, serde_json::json!({ "i": { "serverId": server, "enabled": true } })).await;
        let monitoring = &data["configureMonitoring"];
        assert_eq!(
            (monitoring["enabled"].as_bool(), monitoring["interval"].as_i64(), monitoring["status"].as_str()),
            (Some(true), Some(60), Some("UNKNOWN"))
        );
        assert_eq!(monitoring["smart"]["intervalSeconds"], 3600);
    }
    let too_often = app
        .graphql(
            Some(&admin),
            configure,
            serde_json::json!({ "i": { "serverId": servers[0], "enabled": true, "intervalSeconds": 5 } }),
        )
        .await;
    assert_eq!(code(&too_often), Some("BAD_USER_INPUT"), "{too_often}");
    app.create_user(&admin, "watcher", "VIEWER").await;
    let viewer = app.login("watcher", crate::api::ADMIN_PASSWORD).await;
    let forbidden = app
        .graphql(Some(&viewer), configure, serde_json::json!({ "i": { "serverId": servers[0], "enabled": false } }))
        .await;
    assert_eq!(code(&forbidden), Some("FORBIDDEN"));
    let pool = app.db.store().pool().clone();
    eventually(Duration::from_secs(20), "monitoring enabled in the read model", || async {
        (read::enabled_servers(&pool).await.unwrap().len() == 3).then_some(())
    })
    .await;

    let collector = || {
        Arc::new(Collector::new(
            commands.monitoring.clone(),
            commands.credentials.clone(),
            commands.certificates.clone(),
            CollectorConfig::default(),
        ))
    };
    let (a, b) = (collector(), collector());
    let all_due = || async {
        for &server in &servers {
            schedule::due_now(&pool, server, false).await.unwrap();
        }
    };
    a.sync().await.unwrap();
    all_due().await;
    let (na, nb) = tokio::join!(a.tick(), b.tick());
    let (na, nb) = (na.unwrap(), nb.unwrap());
    assert_eq!(na + nb, 3, "every server polled once between them");
    let connects = |c: &Collector| c.connects.load(Ordering::Relaxed) as usize;
    assert_eq!((connects(&a), connects(&b)), (na, nb), "one key exchange per server");
    assert_eq!(a.tick().await.unwrap() + b.tick().await.unwrap(), 0, "nothing is due twice in a cycle");

    let first: Vec<_> = eventually(Duration::from_secs(20), "every server's first sample", || async {
        let states = read::monitored_servers(&pool).await.unwrap();
        (states.iter().filter(|s| s.last_sample_at.is_some()).count() == 3).then_some(states)
    })
    .await;
    assert!(first.iter().all(|s| s.facts.as_ref().unwrap()["cpus"] == 2), "{first:?}");
    // The first round read SMART too: the failing disk and the NVMe one; the sleeping one is unknown yet.
    let devices = eventually(Duration::from_secs(20), "the disks in the read model", || async {
        Some(read::monitored_devices(&pool, servers[0]).await.unwrap()).filter(|d| !d.is_empty())
    })
    .await;
    let verdicts: Vec<&str> = devices.iter().map(|d| d.verdict.as_str()).collect();
    assert_eq!(verdicts.len(), 2, "{devices:?}");
    assert!(verdicts.contains(&"failed") && verdicts.contains(&"warning"), "{verdicts:?}");

    // The next cycle reuses every session: no new key exchange.
    all_due().await;
    let (ra, rb) = tokio::join!(a.tick(), b.tick());
    assert_eq!((ra.unwrap(), rb.unwrap()), (na, nb), "each keeps its own servers");
    assert_eq!(connects(&a) + connects(&b), 3);

    // a stops without a word (killed): once its hold lapses, b polls a's servers too.
    drop(a);
    sqlx::query(
        "UPDATE monitoring_schedule SET held_until = now() - interval '1 second' WHERE holder IS DISTINCT FROM $1",
    )
    .bind(b.holder())
    .execute(&pool)
    .await
    .unwrap();
    all_due().await;
    assert_eq!(b.tick().await.unwrap(), 3);
    assert_eq!(connects(&b), nb + na, "b connected to the servers it took over");
    let series = read::samples(&pool, servers[0], chrono::Utc::now() - chrono::Duration::hours(1), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(series.len(), 3, "three polls of one server, one sample each");

    // What a GraphQL client sees of it.
    let query = "query($id: ID!, $from: DateTime!, $to: DateTime!) { server(id: $id) { monitoring { \
        status lastSampleAt facts { cpus hostname } latest { load1 memory { usedBytes totalBytes } filesystems { mount usedBytes } } \
        metrics(from: $from, to: $to) { at load1 } \
        storageDevices { id kind verdict temperature attributes { id raw verdict } } \
        pools { name state verdict members { name checksumErrors } } arrays { name verdict degraded } changes { kind subject } } } }";
    let now = chrono::Utc::now();
    let vars = serde_json::json!({ "id": servers[0], "from": now - chrono::Duration::hours(1), "to": now });
    let monitoring = app.ok(Some(&viewer), query, vars.clone()).await["server"]["monitoring"].clone();
    assert_eq!(monitoring["status"], "OK", "{monitoring}");
    assert_eq!(monitoring["facts"]["cpus"], 2);
    assert_eq!(monitoring["latest"]["load1"], 0.0);
    assert!(monitoring["latest"]["filesystems"].as_array().unwrap().iter().any(|f| f["mount"] == "/"));
    assert_eq!(monitoring["metrics"].as_array().unwrap().len(), 3, "{}", monitoring["metrics"]);
    let pools = monitoring["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 4, "ZFS, LVM and two btrfs: {pools:?}");
    assert_eq!(pools.iter().find(|p| p["name"] == "mypool").unwrap()["verdict"], "failed");
    assert_eq!(monitoring["arrays"][0]["verdict"], "failed");
    let nvme = monitoring["storageDevices"].as_array().unwrap().iter().find(|d| d["kind"] == "NVME").unwrap().clone();
    assert_eq!(nvme["verdict"], "warning");
    let kinds: Vec<&str> =
        monitoring["changes"].as_array().unwrap().iter().filter_map(|c| c["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "POOL").count(), 4, "each pool's change once, not per poll: {kinds:?}");

    // The same for Prometheus: the fleet's latest samples, for a bearer token only.
    let fleet = app.client.get(app.url("/metrics/fleet")).send().await.unwrap();
    assert_eq!(fleet.status().as_u16(), 401);
    let mut fleet = app
        .client
        .get(app.url("/metrics/fleet"))
        .insert_header(("Authorization", format!("Bearer {viewer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.status().as_u16(), 200);
    let text = String::from_utf8(fleet.body().await.unwrap().to_vec()).unwrap();
    let up = format!("unity_host_up{{server_id=\"{}\",server=\"h0\"}} 1", servers[0]);
    assert!(text.contains(&up), "{text}");
    assert!(
        text.contains("# TYPE unity_host_filesystem_bytes gauge")
            && text.contains("mount=\"/\",kind=\"size\"} 21000437760"),
        "{text}"
    );

    // Accept the NVMe's old media errors: the next SMART round judges it passed.
    let accept = "mutation($i: OverrideSmartAttributeInput!) { overrideSmartAttribute(input: $i) { id verdict } }";
    let input = serde_json::json!({ "i": { "deviceId": nvme["id"], "attributeId": "media_errors", "action": "ACCEPT_CURRENT" } });
    assert_eq!(code(&app.graphql(Some(&viewer), accept, input.clone()).await), Some("FORBIDDEN"));
    app.ok(Some(&admin), accept, input).await;
    let unknown = serde_json::json!({ "i": { "deviceId": nvme["id"], "attributeId": "999", "action": "IGNORE" } });
    assert_eq!(code(&app.graphql(Some(&admin), accept, unknown).await), Some("NOT_FOUND"));
    schedule::due_now(&pool, servers[0], true).await.unwrap();
    assert_eq!(b.tick().await.unwrap(), 1);
    eventually(Duration::from_secs(20), "the accepted disk passing", || async {
        let monitoring = app.ok(Some(&viewer), query, vars.clone()).await["server"]["monitoring"].clone();
        let devices = monitoring["storageDevices"].as_array().cloned().unwrap_or_default();
        devices.iter().any(|d| d["kind"] == "NVME" && d["verdict"] == "passed").then_some(())
    })
    .await;

    // A reinstalled server (new host key) is refused as before, and recorded once.
    hosts[1].sshd.kill_sessions().unwrap();
    hosts[1].sshd.new_host_key().unwrap();
    all_due().await;
    b.tick().await.unwrap();
    let state = eventually(Duration::from_secs(20), "the refusal in the read model", || async {
        read::monitored_server(&pool, servers[1]).await.unwrap().filter(|s| s.status == "UNREACHABLE")
    })
    .await;
    assert!(state.last_error.as_deref().unwrap().contains("not the pinned"), "{state:?}");
}

#[actix_rt::test]
async fn history_outlives_the_raw_samples_as_hourly_summaries_and_new_samples_reach_subscribers() {
    use chrono::{Duration as Span, Utc};
    use unity_commands::retention::{self, RetentionPolicy};
    use unity_domain::monitoring::{HostSample, MonitoringCommand};

    // No collectors role: the polls are recorded here, as a collector would record them.
    let app = spawn_app_roles(&[Role::Api, Role::Projections], &[]).await;
    let admin = app.admin().await;
    let login = app
        .ok(
            Some(&admin),
            "mutation($i: GenerateSshKeyInput!) { generateSshKey(input: $i) { id } }",
            serde_json::json!({ "i": { "name": "unity-monitoring", "algorithm": "ED25519" } }),
        )
        .await["generateSshKey"]
        .clone();
    let server: Uuid = app
        .ok(
            Some(&admin),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id } }",
            serde_json::json!({ "i": {
                "name": "old-timer", "address": "127.0.0.1", "port": 9, "username": "root",
                "authentication": { "sshKeyId": login["id"] },
            } }),
        )
        .await["registerServer"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let commands = app.commands().await;
    let meta = unity_commands::metadata(unity_domain::Actor::system("collector"), "test");
    let poll = |load: u32| HostSample { uptime_secs: 600, load: [load, 0, 0], ..HostSample::default() };
    let observe = |at| MonitoringCommand::Observe { at, facts: Default::default(), pools: vec![], arrays: vec![] };
    // Polls every ten minutes from 02:00 to 03:50 forty days ago (load 0, 0.1, … 1.1), and now.
    let now = Utc::now();
    let old = (now - Span::days(40)).date_naive().and_hms_opt(2, 0, 0).unwrap().and_utc();
    for n in 0..12 {
        let at = old + Span::minutes(10 * n);
        commands.monitoring.record_poll(server, at, poll(10 * n as u32), observe(at), &meta).await.unwrap();
    }
    commands.monitoring.record_poll(server, now, poll(500), observe(now), &meta).await.unwrap();

    // The old hours are summarized; then retention removes their day's raw samples.
    let summarized = commands.monitoring.summarize(server, now, Span::days(60), &meta).await.unwrap();
    assert_eq!(summarized, 2, "the two old hours (now's hour is not finished)");
    let removed = retention::run(commands.monitoring.store(), &RetentionPolicy::default(), now.date_naive(), &meta)
        .await
        .unwrap();
    assert!(removed.iter().any(|r| r.bucket == old.date_naive()), "{removed:?}");
    let raw = read::samples(&app.db.pool, server, old, old + Span::hours(2)).await.unwrap();
    assert!(raw.is_empty(), "the raw samples are gone");

    // A chart over 41 days at an hourly step: the old hours' means from their summaries, then now.
    app.create_user(&admin, "watcher", "VIEWER").await;
    let viewer = app.login("watcher", crate::api::ADMIN_PASSWORD).await;
    let query = "query($id: ID!, $from: DateTime!, $to: DateTime!, $step: Int) { server(id: $id) { monitoring { \
        metrics(from: $from, to: $to, step: $step) { at load1 } \
        hourly(from: $from, to: $to) { hour polls load1 { min mean max } } } } }";
    let vars = |step: Option<i32>| serde_json::json!({ "id": server, "from": now - Span::days(41), "to": now + Span::minutes(1), "step": step });
    let monitoring = app.ok(Some(&viewer), query, vars(Some(3600))).await["server"]["monitoring"].clone();
    let loads: Vec<f64> =
        monitoring["metrics"].as_array().unwrap().iter().map(|s| s["load1"].as_f64().unwrap()).collect();
    assert_eq!(loads, [0.25, 0.85, 5.0], "{monitoring}");
    let hourly = monitoring["hourly"].as_array().unwrap();
    assert_eq!(hourly.len(), 2, "{hourly:?}");
    assert_eq!(hourly[0]["hour"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().unwrap(), old);
    assert_eq!(hourly[1]["polls"], 6);
    assert_eq!(hourly[1]["load1"], serde_json::json!({ "min": 0.6, "mean": 0.85, "max": 1.1 }));

    // Every poll of so long a range is too much; an hourly step or the summaries are not.
    let refused = app.graphql(Some(&viewer), query, vars(None)).await;
    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");

    // A subscriber sees each new sample of the servers it follows as its poll is recorded, and
    // no other server's.
    let mut ws = crate::api::connect_ws(&app, Some(&viewer)).await;
    let subscribe = "subscription($ids: [ID!]!) { serverSamples(serverIds: $ids) { serverId sample { at load1 } } }";
    crate::websocket::send(
        &mut ws,
        serde_json::json!({ "id": "1", "type": "subscribe", "payload": { "query": subscribe, "variables": { "ids": [server] } } }),
    )
    .await;
    let other = Uuid::now_v7();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let received = loop {
        assert!(std::time::Instant::now() < deadline, "no sample came on the subscription");
        // A poll recorded before the subscription started is not delivered: poll until one is.
        let at = Utc::now();
        commands.monitoring.record_poll(other, at, poll(900), observe(at), &meta).await.unwrap();
        commands.monitoring.record_poll(server, at, poll(700), observe(at), &meta).await.unwrap();
        if let Some(crate::websocket::Received::Message(m)) =
            crate::websocket::next(&mut ws, Duration::from_millis(500)).await
        {
            if m["type"] == "next" {
                break m;
            }
        }
    };
    let delivered = &received["payload"]["data"]["serverSamples"];
    assert_eq!(delivered["serverId"], server.to_string(), "{received}");
    assert_eq!(delivered["sample"]["load1"], 7.0, "{received}");
}

const PLUGINS: &str = "/usr/lib/nagios/plugins";

#[actix_rt::test]
async fn checks_run_real_plugins_over_ssh_and_a_change_of_status_is_recorded_once() {
    use unity_collectors::testing::sshd::Sshd;

    let app = spawn_app_roles(&[Role::Api, Role::Projections], &[]).await;
    let admin = app.admin().await;
    let login = app
        .ok(
            Some(&admin),
            "mutation($i: GenerateSshKeyInput!) { generateSshKey(input: $i) { id publicKey } }",
            serde_json::json!({ "i": { "name": "unity-checks", "algorithm": "ED25519" } }),
        )
        .await["generateSshKey"]
        .clone();
    let sshd = Sshd::start(&temp_dir("checks")).unwrap();
    std::fs::write(sshd.authorized_keys(), format!("{}\n", login["publicKey"].as_str().unwrap())).unwrap();
    let server: Uuid = app
        .ok(
            Some(&admin),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id } }",
            serde_json::json!({ "i": {
                "name": "web-1", "address": "127.0.0.1", "port": sshd.port, "username": "root",
                "authentication": { "sshKeyId": login["id"] }, "tags": ["web"],
            } }),
        )
        .await["registerServer"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.ok(
        Some(&admin),
        "mutation($i: ConfigureMonitoringInput!) { configureMonitoring(input: $i) { enabled } }",
        serde_json::json!({ "i": { "serverId": server, "enabled": true, "smart": { "enabled": false } } }),
    )
    .await;
    let create = "mutation($i: CreateCheckInput!) { createCheck(input: $i) { id name serverId tag intervalSeconds } }";
    let mut ids = Vec::new();
    for input in [
        serde_json::json!({ "name": "root disk", "tag": "web", "command": format!("{PLUGINS}/check_disk -w 10% -c 5% -p /") }),
        serde_json::json!({ "name": "broken", "serverId": server, "command": format!("{PLUGINS}/check_dummy 2 'something broke'") }),
        serde_json::json!({ "name": "missing", "serverId": server, "command": format!("{PLUGINS}/check_nothing_here") }),
        serde_json::json!({ "name": "db only", "tag": "db", "command": "true" }),
    ] {
        let check = app.ok(Some(&admin), create, serde_json::json!({ "i": input })).await["createCheck"].clone();
        assert_eq!(check["intervalSeconds"], 300, "{check}");
        ids.push(check["id"].as_str().unwrap().to_owned());
    }
    let refused = app
        .graphql(
            Some(&admin),
            create,
            serde_json::json!({ "i": { "name": "two lines", "tag": "web", "command": "true\nfalse" } }),
        )
        .await;
    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");
    let neither =
        app.graphql(Some(&admin), create, serde_json::json!({ "i": { "name": "n", "command": "true" } })).await;
    assert_eq!(code(&neither), Some("BAD_USER_INPUT"), "{neither}");

    // One poll: the sample, then the checks that apply to the server, over the same session.
    let commands = app.commands().await;
    let pool = app.db.store().pool().clone();
    eventually(Duration::from_secs(20), "monitoring enabled in the read model", || async {
        (read::enabled_servers(&pool).await.unwrap().len() == 1).then_some(())
    })
    .await;
    let collector = Arc::new(Collector::new(
        commands.monitoring.clone(),
        commands.credentials.clone(),
        commands.certificates.clone(),
        CollectorConfig::default(),
    ));
    collector.sync().await.unwrap();
    schedule::due_now(&pool, server, false).await.unwrap();
    assert_eq!(collector.tick().await.unwrap(), 1);

    let query = "query($id: ID!) { server(id: $id) { monitoring { \
        checks { check { name tag } status exitStatus output perfdata { label value uom warn crit min max } lastRunAt statusSince } \
        changes(first: 20) { kind subject verdict summary } } } }";
    let vars = serde_json::json!({ "id": server });
    let check_changes =
        |m: &serde_json::Value| m["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == "CHECK").count();
    // The results and the changes come in one transaction; a projection may apply them in two.
    let monitoring = eventually(Duration::from_secs(20), "three checks' results and changes", || async {
        let m = app.ok(Some(&admin), query, vars.clone()).await["server"]["monitoring"].clone();
        let results = m["checks"].as_array().unwrap().iter().filter(|c| c["status"].is_string()).count();
        (results == 3 && check_changes(&m) >= 3).then_some(m)
    })
    .await;
    let checks = monitoring["checks"].as_array().unwrap();
    let by_name =
        |name: &str| checks.iter().find(|c| c["check"]["name"] == name).unwrap_or_else(|| panic!("{name}: {checks:?}"));
    assert_eq!(checks.len(), 3, "the db-only check is not this server's: {checks:?}");
    let broken = by_name("broken");
    assert_eq!((broken["status"].as_str(), broken["exitStatus"].as_i64()), (Some("CRITICAL"), Some(2)));
    assert_eq!(broken["output"], "CRITICAL: something broke");
    let disk = by_name("root disk");
    assert_eq!(disk["status"], "OK", "{disk}");
    let root = &disk["perfdata"][0];
    assert_eq!((root["label"].as_str(), root["uom"].as_str()), (Some("/"), Some("B")), "{disk}");
    assert!(root["value"].as_f64().unwrap() > 0.0 && root["max"].as_f64().unwrap() > root["value"].as_f64().unwrap());
    let missing = by_name("missing");
    assert_eq!((missing["status"].as_str(), missing["exitStatus"].as_i64()), (Some("UNKNOWN"), Some(127)), "{missing}");
    assert_eq!(check_changes(&monitoring), 3, "each check's first status is a change: {monitoring}");

    // Due again (as an interval later), the same statuses are runs, not changes; a deleted check
    // runs no more.
    app.ok(Some(&admin), "mutation($id: ID!) { deleteCheck(id: $id) }", serde_json::json!({ "id": ids[2] })).await;
    sqlx::query("UPDATE monitored_checks SET ran_at = ran_at - interval '1 hour'").execute(&pool).await.unwrap();
    let runs_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CheckRan'").fetch_one(&pool).await.unwrap();
    schedule::due_now(&pool, server, false).await.unwrap();
    assert_eq!(collector.tick().await.unwrap(), 1);
    let runs: i64 = eventually(Duration::from_secs(20), "the second round of runs", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CheckRan'")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n > runs_before).then_some(n)
    })
    .await;
    assert_eq!(runs - runs_before, 2, "the two remaining checks ran again");
    let monitoring = app.ok(Some(&admin), query, vars.clone()).await["server"]["monitoring"].clone();
    assert_eq!(monitoring["checks"].as_array().unwrap().len(), 2, "{monitoring}");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CheckStatusChanged'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(changes, 3, "no status changed: nothing more recorded");
    let all = app.ok(Some(&admin), "{ checks { name } }", serde_json::json!({})).await;
    assert_eq!(all["checks"].as_array().unwrap().len(), 3, "{all}");
}
