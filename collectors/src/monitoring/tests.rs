//! The parsers against every real output in `../shared/fixtures` (`UNITY_FIXTURES` overrides
//! the path) and against samples of the project's own where a case has no real output.

use std::{collections::BTreeMap, path::PathBuf};

use unity_domain::monitoring::{DeviceKind, Verdict};

use super::{
    mdadm, poll,
    proc::{self, CpuTimes, NetCounters},
    rates::{self, Counters},
    smart::{self, Context, Reading},
    zfs,
};

fn fixtures() -> PathBuf {
    std::env::var_os("UNITY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

fn fixture(path: &str) -> String {
    let file = fixtures().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every file of a fixture folder, by name.
fn folder(name: &str) -> BTreeMap<String, String> {
    let dir = fixtures().join(name);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let files: BTreeMap<String, String> = entries
        .map(|e| e.expect("a directory entry").path())
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).expect("a fixture"))
        })
        .collect();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn proc_stat_counts_cpus_and_reads_every_column() {
    let stat = proc::parse_stat(&fixture("proc/jc_proc_stat_2cpu")).unwrap();
    assert_eq!(stat.cpus, 2);
    assert_eq!((stat.cpu.user, stat.cpu.nice, stat.cpu.system, stat.cpu.idle), (6002, 152, 8398, 3444436));
    assert_eq!(stat.cpu.softirq, 1174);
    let eight = proc::parse_stat(&fixture("proc/procfs_proc_stat_8cpu")).unwrap();
    assert_eq!(eight.cpus, 8);
    assert!(eight.btime.is_some(), "btime tells a reboot apart");
    assert!(proc::parse_stat("intr 1 2 3\n").is_err());
    assert!(proc::parse_stat("cpu  1 x 3 4\n").unwrap_err().to_string().contains("/proc/stat"));
}

#[test]
fn memory_used_comes_from_memavailable_with_a_fallback_before_3_14() {
    let with = proc::parse_meminfo(&fixture("proc/jc_proc_meminfo_with_memavailable")).unwrap();
    let memory = proc::memory(&with).unwrap();
    assert_eq!(memory.available, with["MemAvailable"]);
    assert_eq!(memory.used, with["MemTotal"] - with["MemAvailable"]);

    let without = proc::parse_meminfo(&fixture("proc/procfs_proc_meminfo")).unwrap();
    assert!(!without.contains_key("MemAvailable"));
    let memory = proc::memory(&without).unwrap();
    let estimate =
        without["MemFree"] + without["Buffers"] + without["Cached"] + without.get("SReclaimable").copied().unwrap_or(0);
    assert_eq!(memory.available, estimate);
    assert_eq!(memory.total, 15666184 * 1024);
    assert_eq!(memory.swap_used, 0);
    assert!(proc::memory(&BTreeMap::new()).is_err());
}

#[test]
fn load_uptime_and_network_counters_parse() {
    assert_eq!(proc::parse_loadavg(&fixture("proc/jc_proc_loadavg")).unwrap(), [0, 1, 3]);
    assert_eq!(proc::parse_loadavg(&fixture("proc/procfs_proc_loadavg")).unwrap(), [2, 4, 5]);
    assert_eq!(proc::parse_loadavg("12.5 3 0.07").unwrap(), [1250, 300, 7]);
    assert!(proc::parse_loadavg("0.1 x").is_err());
    assert_eq!(proc::parse_uptime(&fixture("proc/jc_proc_uptime")).unwrap(), 46901);

    let net = proc::parse_net_dev(&fixture("proc/jc_proc_net_dev")).unwrap();
    assert_eq!(net.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["lo", "ens33"]);
    assert_eq!((net[1].rx_bytes, net[1].tx_bytes, net[1].tx_packets), (60600053, 44256546, 121425));
    let docker = proc::parse_net_dev(&fixture("proc/procfs_proc_net_dev_docker")).unwrap();
    assert_eq!(docker.len(), 4);
    assert_eq!(docker[0].name, "vethf345468");
    assert!(proc::parse_net_dev("eth0: 1 2 3\n").is_err());
}

#[test]
fn df_rows_parse_with_and_without_a_type_column() {
    for (name, text) in folder("proc").into_iter().filter(|(n, _)| n.contains("_df_")) {
        let rows = proc::parse_df(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!rows.is_empty(), "{name}");
        assert!(rows.iter().all(|r| r.mount.starts_with('/')), "{name}: {rows:?}");
    }
    let typed = proc::parse_df(&fixture("proc/jc_df_PT_long_filesystem_name.txt")).unwrap();
    assert_eq!(typed[0].device, "/dev/mapper/VolGroup00-LogVol00");
    assert_eq!(
        (typed[0].total, typed[0].used, typed[0].available, typed[0].mount.as_str()),
        (6030784, 1147932, 4571556, "/")
    );
    assert!(proc::parse_df("Filesystem 1K-blocks Used Available Use% Mounted on\ngarbage\n").is_err());
}

#[test]
fn pseudo_and_container_filesystems_are_left_out_as_node_exporter_does() {
    assert!(proc::excluded_filesystem("squashfs", "/snap/core/123"));
    assert!(proc::excluded_filesystem("tmpfs", "/dev/shm"));
    assert!(proc::excluded_filesystem("ext4", "/var/lib/docker/overlay2/x"));
    assert!(proc::excluded_filesystem("tmpfs", "/run/credentials/a.service"));
    assert!(!proc::excluded_filesystem("ext4", "/"));
    assert!(!proc::excluded_filesystem("ext4", "/devices"), "a prefix of a name is not the directory");
    assert!(!proc::excluded_filesystem("tmpfs", "/run"));
    let mounts = proc::parse_mounts("/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n");
    assert_eq!(mounts["/mnt/my disk"], "ext4");
}

fn times(user: u64, system: u64, idle: u64, iowait: u64, steal: u64, guest: u64) -> CpuTimes {
    CpuTimes { user, system, idle, iowait, steal, guest, ..CpuTimes::default() }
}

#[test]
fn cpu_shares_count_guest_once_and_show_steal_and_iowait_apart() {
    let before = times(1000, 500, 8000, 100, 0, 200);
    // 400 ticks: 200 user (of which 100 guest), 50 system, 100 idle, 30 iowait, 20 steal.
    let after = times(1200, 550, 8100, 130, 20, 300);
    let shares = rates::cpu_shares(&before, &after).unwrap();
    assert_eq!((shares.user, shares.system, shares.idle, shares.iowait, shares.steal), (5000, 1250, 2500, 750, 500));
    assert_eq!(shares.guest, 2500, "guest is part of user, not added to the total");
    assert_eq!(shares.busy(), 6250, "steal and iowait are not busy");
    // iowait may go backwards (it is an estimate): counted as none, the rest still adds up.
    let odd = rates::cpu_shares(&before, &times(1100, 500, 8100, 90, 0, 200)).unwrap();
    assert_eq!((odd.user, odd.idle, odd.iowait), (5000, 5000, 0));
    assert_eq!(rates::cpu_shares(&before, &before), None, "no tick passed");
    assert_eq!(rates::cpu_shares(&after, &before), None, "counters went back");
}

fn counters(at_ms: i64, boot: &str, rx: u64) -> Counters {
    let nic = NetCounters { name: "eth0".into(), rx_bytes: rx, tx_bytes: rx / 2, ..NetCounters::default() };
    Counters { at_ms, boot: boot.into(), cpu: CpuTimes::default(), net: BTreeMap::from([("eth0".to_string(), nic)]) }
}

#[test]
fn network_rates_are_never_negative_and_survive_a_32_bit_wrap() {
    let before = counters(0, "a", 1_000_000);
    let rates = rates::interface_rates(Some(&before), &counters(10_000, "a", 6_000_000));
    assert_eq!((rates[0].rx_bytes, rates[0].tx_bytes), (Some(500_000), Some(250_000)));

    // A 32-bit counter wraps: 2^32 − 1000 → 9000 is 10,000 bytes.
    let wrapped = rates::interface_rates(Some(&counters(0, "a", (1 << 32) - 1000)), &counters(1_000, "a", 9_000));
    assert_eq!(wrapped[0].rx_bytes, Some(10_000));
    // A 64-bit counter that goes down was reset (interface re-created): no rate, not a negative one.
    let reset = rates::interface_rates(Some(&counters(0, "a", 10_000_000_000)), &counters(1_000, "a", 5));
    assert_eq!(reset[0].rx_bytes, None);
    assert_eq!(rates::counter_increase(u64::from(u32::MAX) - 10, 1 << 31), None, "too far to be a wrap");

    assert!(rates::comparable(&before, &counters(60_000, "a", 0), 180_000));
    assert!(!rates::comparable(&before, &counters(60_000, "b", 0), 180_000), "rebooted");
    assert!(!rates::comparable(&before, &counters(600_000, "a", 0), 180_000), "a gap");
    assert!(!rates::comparable(&before, &counters(0, "a", 0), 180_000), "no time passed");
    let fresh = rates::interface_rates(None, &counters(0, "a", 5));
    assert_eq!((fresh[0].name.as_str(), fresh[0].rx_bytes), ("eth0", None));
}

/// /proc/mounts for the df fixture's filesystems: snaps are squashfs, /run and /dev/shm tmpfs.
fn mounts_of_the_df_fixture() -> String {
    let df = proc::parse_df(&fixture("proc/jc_df_ubuntu1804_snaps_100pct.txt")).unwrap();
    df.iter()
        .map(|row| {
            let fstype = match row.mount.as_str() {
                "/" => "ext4",
                "/dev" => "devtmpfs",
                m if m.starts_with("/snap/") => "squashfs",
                "/sys/fs/cgroup" => "tmpfs",
                _ => "tmpfs",
            };
            format!("{} {} {fstype} rw 0 0", row.device, row.mount)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the script prints on a host whose /proc is the fixtures, built here as sh would.
fn poll_output(stat: &str, uptime: &str, boot: &str, df_status: i32) -> String {
    let section = |name: &str, text: &str, status: i32| format!("@@{name}\n{text}\n\n@@/ {status}\n");
    [
        format!("@@unity-poll {}\n", poll::SCRIPT_VERSION),
        section("stat", stat, 0),
        section("meminfo", &fixture("proc/jc_proc_meminfo_with_memavailable"), 0),
        section("loadavg", &fixture("proc/jc_proc_loadavg"), 0),
        section("uptime", uptime, 0),
        section("boot_id", boot, 0),
        section("net_dev", &fixture("proc/jc_proc_net_dev"), 0),
        section("mounts", &mounts_of_the_df_fixture(), 0),
        section(
            "df",
            &if df_status == 0 { fixture("proc/jc_df_ubuntu1804_snaps_100pct.txt") } else { String::new() },
            df_status,
        ),
        section(
            "df_inodes",
            "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sda2 1310720 200000 1110720 16% /",
            0,
        ),
        section(
            "os_release",
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"",
            0,
        ),
        section("kernel", "Linux 6.1.0-18-amd64 x86_64", 0),
        section("hostname", "web-1", 0),
        section("mdstat", &fixture("mdstat/telegraf_mdstat_raid5_degraded_missing_disk"), 0),
        section("mismatch md0", "0", 0),
        "@@end\n".to_string(),
    ]
    .concat()
}

#[test]
fn a_poll_parses_into_a_sample_and_the_next_poll_gets_rates() {
    let stat = fixture("proc/jc_proc_stat_2cpu");
    let first = poll::parse(&poll_output(&stat, "46901.13 46856.66", "b1", 0), 0, None, 180_000).unwrap();
    assert_eq!(first.sample.cpu, None, "nothing to compare with yet");
    assert_eq!(first.sample.uptime_secs, 46901);
    assert_eq!(first.facts.hostname, "web-1");
    assert_eq!(first.facts.os, "Debian GNU/Linux 12 (bookworm)");
    assert_eq!((first.facts.os_id.as_str(), first.facts.os_version.as_str(), first.facts.cpus), ("debian", "12", 2));
    let mounts: Vec<&str> = first.sample.filesystems.iter().map(|f| f.mount.as_str()).collect();
    assert_eq!(mounts, ["/run", "/", "/run/lock", "/run/user/1000"], "snaps (squashfs) and /dev, /sys are left out");
    assert_eq!(first.sample.filesystems[1].inodes_used, Some(200000));
    assert_eq!(first.sample.filesystems[1].size, 20508240 * 1024);
    assert_eq!(first.arrays.len(), 1);
    assert_eq!(first.arrays[0].verdict, Verdict::Failed);
    assert!(first.missing.is_empty(), "{:?}", first.missing);

    // A minute later, 1,000 more user ticks of 12,000.
    let later = stat.replacen("cpu  6002 152 8398 3444436", "cpu  7002 152 8398 3455436", 1);
    let second =
        poll::parse(&poll_output(&later, "46961.13 46856.66", "b1", 0), 60_000, Some(&first.counters), 180_000)
            .unwrap();
    let cpu = second.sample.cpu.expect("a share once there are two readings");
    assert_eq!((cpu.user, cpu.idle), (833, 9167));
    assert_eq!(second.sample.interfaces[1].rx_bytes, Some(0));

    // A sample is stored once per server per minute: its payload stays small (≤ 1 KB per sample
    // with the row and its indexes is the target; the payload is most of it).
    let payload = serde_json::to_string(&second.sample).unwrap();
    assert!(payload.len() < 400, "{} bytes: {payload}", payload.len());

    // After a reboot the counters start again: no shares, no rates.
    let rebooted =
        poll::parse(&poll_output(&stat, "30.0 20.0", "b2", 0), 120_000, Some(&second.counters), 180_000).unwrap();
    assert_eq!(rebooted.sample.cpu, None);
    assert!(rebooted.sample.interfaces.iter().all(|i| i.rx_bytes.is_none()));

    // df killed by its timeout (a stuck NFS mount): the poll still records the rest.
    let stuck = poll::parse(&poll_output(&stat, "46901.13 0", "b1", 137), 0, None, 180_000).unwrap();
    assert!(stuck.sample.filesystems.is_empty());
    assert_eq!(stuck.missing, ["df"]);
}

#[test]
fn garbage_or_cut_off_output_is_a_clear_error() {
    let whole = poll_output(&fixture("proc/jc_proc_stat_2cpu"), "1.0 1.0", "b", 0);
    let cut = &whole[..whole.len() / 2];
    assert!(poll::parse(cut, 0, None, 1).unwrap_err().to_string().contains("cut off"));
    assert!(poll::parse("Welcome to the server!\n", 0, None, 1).unwrap_err().to_string().contains("header"));
    assert!(poll::parse("@@unity-poll 99\n@@end\n", 0, None, 1).is_err(), "another script version");
    assert!(poll::parse(&whole.replace("cpu  6002", "cpu  lots"), 0, None, 1)
        .unwrap_err()
        .to_string()
        .contains("/proc/stat"));
    let no_stat = whole.replacen("@@/ 0", "@@/ 1", 1);
    assert!(poll::parse(&no_stat, 0, None, 1).unwrap_err().to_string().contains("not readable"));
    assert!(poll::script().contains(zfs::ZPOOL_LIST), "the script names the columns the parser reads");
}

#[test]
fn mdstat_reads_every_state_and_judges_check_resync_recovery_and_failure_apart() {
    let arrays = mdadm::parse_mdstat(&fixture("mdstat/procfs_mdstat_composite_many_states")).unwrap();
    let mut by_name: BTreeMap<String, _> = arrays.into_iter().map(|a| (a.name.clone(), a)).collect();
    assert_eq!(by_name.len(), 18);
    by_name.values_mut().for_each(mdadm::judge);
    let verdict = |name: &str| by_name[name].verdict;
    assert_eq!(verdict("md0"), Verdict::Passed);
    assert_eq!(verdict("md201"), Verdict::Passed, "a check is not a failure");
    assert_eq!(by_name["md201"].sync_progress, Some(570));
    assert_eq!(verdict("md8"), Verdict::Warning, "a resync is a warning");
    assert_eq!(verdict("md6"), Verdict::Failed, "degraded, with a failed member, recovering");
    assert_eq!(
        (by_name["md6"].degraded, by_name["md6"].sync_action.as_deref(), by_name["md6"].sync_progress),
        (1, Some("recovery"), Some(850))
    );
    assert_eq!(verdict("md4"), Verdict::Failed, "inactive");
    assert_eq!(verdict("md7"), Verdict::Failed);
    assert_eq!(by_name["md7"].level, "raid6");
    assert_eq!(by_name["md11"].state, "active (auto-read-only)");
    assert_eq!(by_name["md11"].sync_action.as_deref(), Some("resync pending"));
    assert_eq!(by_name["md42"].sync_action.as_deref(), Some("reshape"));
    assert_eq!(by_name["md219"].level, "", "an inactive container has no level");
    assert_eq!(by_name["md3"].members.iter().filter(|m| m.state == "spare").count(), 2);

    let check = mdadm::parse_mdstat(&fixture("mdstat/telegraf_mdstat_raid10_check_in_progress")).unwrap();
    assert_eq!((check[0].sync_action.as_deref(), check[0].sync_progress), (Some("check"), Some(9430)));
    assert!(mdadm::parse_mdstat(&fixture("mdstat/telegraf_mdstat_empty_no_arrays")).unwrap().is_empty());
    let mut mismatched = check[1].clone();
    mismatched.mismatch_count = Some(128);
    mdadm::judge(&mut mismatched);
    assert_eq!(mismatched.verdict, Verdict::Warning);
}

#[test]
fn mdadm_detail_gives_members_and_state_for_every_fixture() {
    for (name, text) in folder("mdadm") {
        let mut array =
            mdadm::parse_mdstat("md0 : active raid1 sda[0]\n      1 blocks [2/2] [UU]\n").unwrap().remove(0);
        mdadm::apply_detail(&mut array, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        mdadm::judge(&mut array);
        assert!(!array.members.is_empty(), "{name}");
        let expected = match name.as_str() {
            n if n.contains("clean") => Verdict::Passed,
            n if n.contains("resyncing") || n.contains("reshaping") => Verdict::Warning,
            _ => Verdict::Failed,
        };
        assert_eq!(array.verdict, expected, "{name}: {:?} {:?}", array.state, array.reasons);
    }
    let mut array = mdadm::parse_mdstat("md127 : active raid1 vda1[0]\n").unwrap().remove(0);
    mdadm::apply_detail(&mut array, &fixture("mdadm/jc_mdadm_detail_raid1_degraded_recovering_faulty_spare.txt"))
        .unwrap();
    assert_eq!(array.state, "clean, degraded, recovering");
    assert_eq!((array.sync_action.as_deref(), array.sync_progress, array.degraded), (Some("recovery"), Some(2400), 1));
    let states: Vec<&str> = array.members.iter().map(|m| m.state.as_str()).collect();
    assert_eq!(states, ["active sync", "spare rebuilding", "faulty failfast"]);
    assert!(mdadm::apply_detail(&mut array, "nonsense").is_err());
}

#[test]
fn zpool_status_parses_every_fixture_with_counters_scans_and_errors() {
    for (name, text) in folder("zfs").into_iter().filter(|(n, _)| n.contains("zpool_status")) {
        let mut pools = zfs::parse_status(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!pools.is_empty(), "{name}");
        pools.iter_mut().for_each(zfs::judge);
        for pool in &pools {
            assert!(!pool.state.is_empty() && !pool.members.is_empty(), "{name}: {pool:?}");
            assert_eq!(pool.members[0].name, pool.name, "{name}: the first row is the pool");
            let healthy = pool.state == "ONLINE" && pool.data_errors == 0;
            assert_eq!(pool.verdict == Verdict::Failed, !healthy, "{name}: {:?}", pool.reasons);
        }
    }
    let cksum =
        zfs::parse_status(&fixture("zfs/zpoolstatusexporter_zpool_status_degraded_unavail_cksum_errors.txt")).unwrap();
    let bad = cksum[0].members.iter().find(|m| m.state == "UNAVAIL").unwrap();
    assert_eq!((bad.checksum_errors, bad.depth), (100980, 2));
    assert!(bad.note.starts_with("was /dev/disk/by-id/"));
    let scrub = zfs::parse_status(&fixture("zfs/zpoolstatusexporter_zpool_status_scrub_in_progress.txt")).unwrap();
    let scan = scrub[0].scan.as_ref().unwrap();
    assert_eq!((scan.kind.as_str(), scan.running, scan.progress), ("scrub", true, Some(0)));
    let new = zfs::parse_status(&fixture("zfs/zpoolstatusexporter_zpool_status_new_pool_no_scan.txt")).unwrap();
    assert_eq!(new[0].scan, None);
    let resilvered =
        zfs::parse_status(&fixture("zfs/zpoolstatusexporter_zpool_status_resilver_completed.txt")).unwrap();
    assert_eq!(resilvered[0].scan.as_ref().map(|s| (s.kind.as_str(), s.running)), Some(("resilver", false)));
    let solaris = zfs::parse_status(&fixture("zfs/jc_zpool_status_pool_unavail_permanent_errors_solaris.txt")).unwrap();
    let disk = solaris[0].members.iter().find(|m| m.name == "c1t1d0").unwrap();
    assert_eq!((disk.read_errors, disk.write_errors, disk.note.as_str()), (4, 1, "cannot open"));
    assert!(solaris[0].data_errors > 0);
    let two = zfs::parse_status(&fixture("zfs/jc_zpool_status_multi_pool_no_blank_lines.txt")).unwrap();
    assert!(two.len() >= 2, "pools without blank lines between them");
    assert!(zfs::parse_status("what is this\n").is_err());
}

#[test]
fn zpool_and_zfs_lists_fill_in_capacity_and_datasets() {
    let mut pools = Vec::new();
    zfs::apply_list(&mut pools, &fixture("zfs/telegraf_zpool_list_Hp_freenas_4pools.tsv"));
    assert_eq!(pools.len(), 4);
    let red = pools.iter().find(|p| p.name == "red1").unwrap();
    assert_eq!(
        (red.size_bytes, red.allocated_bytes, red.free_bytes),
        (Some(8933531975680), Some(1126164848640), Some(7807367127040))
    );
    let mut unavailable = Vec::new();
    zfs::apply_list(&mut unavailable, &fixture("zfs/telegraf_zpool_list_Hp_unavail.tsv"));
    assert_eq!((unavailable[0].state.as_str(), unavailable[0].size_bytes), ("UNAVAIL", None));
    zfs::judge(&mut unavailable[0]);
    assert_eq!(unavailable[0].verdict, Verdict::Failed);

    let mut zata = Vec::new();
    zfs::apply_list(&mut zata, "zata\tONLINE\t1\t1\t0\t-\t1\t1.00x\n");
    zfs::apply_datasets(&mut zata, &fixture("zfs/telegraf_zfs_list_Hp_usedsnap_usedds.tsv"));
    assert_eq!(zata[0].volumes.len(), 4);
    assert_eq!((zata[0].volumes[1].name.as_str(), zata[0].volumes[1].snapshot_bytes), ("zata/home", Some(212992)));
}

fn device(file: &str, context: &Context) -> unity_domain::monitoring::StorageDevice {
    match smart::parse_device(&fixture(&format!("smartctl/{file}")), context).unwrap() {
        Reading::Device(device) => *device,
        other => panic!("{file}: {other:?}"),
    }
}

fn attribute<'a>(
    device: &'a unity_domain::monitoring::StorageDevice,
    id: &str,
) -> &'a unity_domain::monitoring::SmartAttribute {
    device.attributes.iter().find(|a| a.id == id).unwrap_or_else(|| panic!("no attribute {id}"))
}

#[test]
fn smart_rules_ship_as_data_with_every_critical_ata_attribute() {
    let rules = smart::rules();
    assert_eq!(rules.version, 1);
    let critical: Vec<u32> = rules.ata.iter().filter(|r| r.critical).map(|r| r.id).collect();
    assert_eq!(critical, [5, 10, 184, 187, 188, 196, 197, 198, 201]);
    for (name, text) in folder("smartctl") {
        let parsed = if name.contains("scan") {
            smart::parse_scan(&text).map(|_| ())
        } else {
            smart::parse_device(&text, &Context::default()).map(|_| ())
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let scan = smart::parse_scan(&fixture("smartctl/scrutiny_scan_nvme.json")).unwrap();
    assert!(scan.iter().any(|d| d.device_type == "nvme"), "{scan:?}");
    assert!(smart::parse_device("{not json", &Context::default())
        .unwrap_err()
        .to_string()
        .starts_with("smartctl: not JSON"));
}

#[test]
fn smart_verdicts_for_healthy_failing_and_worn_disks() {
    let none = Context::default();
    let healthy = device("scrutiny_ata_hdd_wd140edfz_healthy_a.json", &none);
    assert_eq!(
        (healthy.kind, healthy.verdict, healthy.temperature_c, healthy.power_on_hours),
        (DeviceKind::Ata, Verdict::Passed, Some(32), Some(1730))
    );
    assert!(!healthy.serial.is_empty() && !healthy.model.is_empty());

    let failed = device("scrutiny_ata_hdd_hitachi_FAILED_reallocated.json", &none);
    assert_eq!(failed.verdict, Verdict::Failed);
    assert_eq!(failed.self_assessment_passed, Some(false));
    assert_eq!(attribute(&failed, "5").verdict, Verdict::Failed);

    // smartctl says PASSED, but 304 reallocated sectors fall in a 36 % annual failure rate bucket.
    let reallocated = device("smartctl_exporter_ata_hdd_st3500418as_304_reallocated.json", &none);
    assert_eq!(reallocated.verdict, Verdict::Failed);
    assert!(attribute(&reallocated, "5").note.as_deref().unwrap().contains("annual failure rate"));
    // Once accepted, it stays accepted until it grows.
    let accepted = Context { accepted: BTreeMap::from([("5".to_string(), 304)]), ..Context::default() };
    assert_eq!(
        device("smartctl_exporter_ata_hdd_st3500418as_304_reallocated.json", &accepted).verdict,
        Verdict::Passed
    );
    let below = Context { accepted: BTreeMap::from([("5".to_string(), 300)]), ..Context::default() };
    assert_eq!(device("smartctl_exporter_ata_hdd_st3500418as_304_reallocated.json", &below).verdict, Verdict::Failed);
    let ignored = Context { ignored: ["5".to_string()].into(), ..Context::default() };
    assert_eq!(device("smartctl_exporter_ata_hdd_st3500418as_304_reallocated.json", &ignored).verdict, Verdict::Passed);

    let nvme = device("smartctl_exporter_nvme_intel_p4510_75pct_used.json", &none);
    assert_eq!((nvme.kind, nvme.verdict, nvme.wear_percent), (DeviceKind::Nvme, Verdict::Passed, Some(75)));
    assert_eq!(device("scrutiny_nvme_corsair_mp510_healthy_a.json", &none).verdict, Verdict::Passed);

    let error_log = device("smartctl_exporter_ata_hdd_st3200820as_exit64_errorlog.json", &none);
    assert_eq!(
        (error_log.exit_status, error_log.verdict),
        (64, Verdict::Passed),
        "an old error log entry alone is not a failure"
    );
    assert_eq!(smart::exit_status_words(error_log.exit_status), ["the device error log has errors"]);
    assert_eq!(smart::exit_status_words(216).len(), 4);

    match smart::parse_device(&fixture("smartctl/scrutiny_open_failed_exit2.json"), &none).unwrap() {
        Reading::Unreadable(message) => assert!(message.contains("open device"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Our own sample: a disk in standby is reported asleep, never woken or shown as failed.
    let standby = r#"{"smartctl":{"exit_status":2,"messages":[{"string":"Device is in STANDBY mode, exit(2)","severity":"information"}]},"device":{"name":"/dev/sdb","type":"sat","protocol":"ATA"}}"#;
    assert_eq!(smart::parse_device(standby, &none).unwrap(), Reading::Asleep);
}

#[test]
fn cumulative_counters_count_only_when_they_grow() {
    // 108 CRC errors (a cable, long ago): Scrutiny fails this disk; here it passes until they grow.
    let crc = "scrutiny_ata_ssd_samsung840_crc_errors_x.json";
    assert_eq!(device(crc, &Context::default()).verdict, Verdict::Passed);
    let seen = |id: &str, at: i64| Context { first_seen: BTreeMap::from([(id.to_string(), at)]), ..Context::default() };
    assert_eq!(device(crc, &seen("199", 108)).verdict, Verdict::Passed);
    let grown = device(crc, &seen("199", 100));
    assert_eq!(
        (grown.verdict, attribute(&grown, "199").verdict),
        (Verdict::Warning, Verdict::Warning),
        "non-critical: a warning, never a failure"
    );

    // NVMe media errors: a warning when first seen, a failure when they grow, passed once accepted.
    let media = "scrutiny_nvme_samsung970evo_media_errors_x.json";
    assert_eq!(device(media, &Context::default()).verdict, Verdict::Warning);
    assert_eq!(device(media, &seen("media_errors", 7)).verdict, Verdict::Warning);
    assert_eq!(device(media, &seen("media_errors", 5)).verdict, Verdict::Failed);
    let accepted = Context { accepted: BTreeMap::from([("media_errors".to_string(), 7)]), ..Context::default() };
    assert_eq!(device(media, &accepted).verdict, Verdict::Passed);

    // SCSI: 56 grown defects on an old SAS disk warn; growth fails it.
    let scsi = "scrutiny_scsi_seagate_st4000nm0043.json";
    let sas = device(scsi, &Context::default());
    assert_eq!((sas.kind, sas.verdict), (DeviceKind::Scsi, Verdict::Warning));
    assert_eq!(device(scsi, &seen("scsi_grown_defect_list", 50)).verdict, Verdict::Failed);
}

#[test]
fn seagate_188_is_decoded_and_values_outside_every_bucket_are_not_alarms() {
    // "1 1 6": one over 7.5 s, one over 5 s, six in all.
    assert_eq!(smart::command_timeouts(4295032838, "1 1 6"), 6);
    assert_eq!(smart::command_timeouts(4295032838, "4295032838"), 6);
    assert_eq!(smart::command_timeouts(42, "42"), 42);
    // Words out of order are not the packed layout: the plain value stands.
    assert_eq!(smart::command_timeouts(5 << 16, "0 5 0"), 5 << 16);

    let mut json: serde_json::Value =
        serde_json::from_str(&fixture("smartctl/smartctl_exporter_ata_hdd_st3500418as_304_reallocated.json")).unwrap();
    let table = json["ata_smart_attributes"]["table"].as_array_mut().unwrap();
    for row in table.iter_mut() {
        match row["id"].as_i64() {
            Some(5) => row["raw"] = serde_json::json!({"value": 0, "string": "0"}),
            // A packed 188 with six timeouts: healthy, not 4.3 billion.
            Some(188) => row["raw"] = serde_json::json!({"value": 4295032838i64, "string": "4295032838"}),
            _ => {}
        }
    }
    let Reading::Device(disk) = smart::parse_device(&json.to_string(), &Context::default()).unwrap() else { panic!() };
    assert_eq!(attribute(&disk, "188").raw, 6);
    assert_eq!(disk.verdict, Verdict::Passed, "{:?}", disk.reasons);
}

/// Outputs of the real plugins of Debian's monitoring-plugins-basic 2.3.3 (check_disk,
/// check_load, check_dummy), as they printed them here, and the plugin guidelines' examples.
#[test]
fn plugin_output_splits_into_text_status_and_performance_data() {
    use super::checks::{parse_perfdata, result};
    use unity_domain::monitoring::CheckStatus;

    let disk = result(
        0,
        "DISK OK - free space: / 53173MiB (57% inode=97%);| /=41815113728B;243497277849;257024904396;0;270552530944\n",
    );
    assert_eq!((disk.status, disk.exit), (CheckStatus::Ok, Some(0)));
    assert_eq!(disk.output, "DISK OK - free space: / 53173MiB (57% inode=97%);");
    let root = &disk.perfdata[0];
    assert_eq!((root.label.as_str(), root.value, root.uom.as_str()), ("/", 41815113728.0, "B"));
    assert_eq!((root.warn.as_deref(), root.crit.as_deref()), (Some("243497277849"), Some("257024904396")));
    assert_eq!((root.min, root.max), (Some(0.0), Some(270552530944.0)));

    let load = result(
        1,
        "LOAD WARNING - total load average: 1.02, 1.30, 1.59|load1=1.020;5.000;10.000;0; load5=1.300;4.000;8.000;0; load15=1.590;3.000;6.000;0; \n",
    );
    assert_eq!(load.status, CheckStatus::Warning);
    let labels: Vec<(&str, f64)> = load.perfdata.iter().map(|p| (p.label.as_str(), p.value)).collect();
    assert_eq!(labels, [("load1", 1.02), ("load5", 1.3), ("load15", 1.59)]);
    assert_eq!(load.perfdata[2].max, None, "an empty field is no bound");

    let dummy = result(2, "CRITICAL: something broke\n");
    assert_eq!(
        (dummy.status, dummy.output.as_str(), dummy.perfdata.len()),
        (CheckStatus::Critical, "CRITICAL: something broke", 0)
    );
    assert_eq!(result(3, "UNKNOWN: no such thing").status, CheckStatus::Unknown);
    assert_eq!(result(42, "odd").status, CheckStatus::Unknown, "any other status is unknown");
    let killed = result(137, "");
    assert_eq!((killed.status, killed.exit), (CheckStatus::Unknown, None));
    assert!(killed.output.starts_with("timed out"));
    assert_eq!(result(127, "sh: 1: check_nothing: not found").status, CheckStatus::Unknown);

    // The guidelines' long output: text on later lines, performance data after `|` on any.
    let long = result(
        0,
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n",
    );
    assert_eq!(long.output, "DISK OK - free space: / 3326 MB (56%);\n/ 15272 MB (77%);\n/boot 68 MB (69%);");
    assert_eq!(long.perfdata.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ["/", "/boot"]);

    let quoted = parse_perfdata("'my disk'=10%;80:;@90:95 'it''s'=3c time=0.5s broken= =1 x=NaN rate=1e3");
    let got: Vec<(&str, f64, &str)> = quoted.iter().map(|p| (p.label.as_str(), p.value, p.uom.as_str())).collect();
    assert_eq!(got, [("my disk", 10.0, "%"), ("it's", 3.0, "c"), ("time", 0.5, "s"), ("rate", 1000.0, "")]);
    assert_eq!((quoted[0].warn.as_deref(), quoted[0].crit.as_deref()), (Some("80:"), Some("@90:95")));

    let noisy = result(0, &format!("OK {}", "x".repeat(5000)));
    assert_eq!(
        noisy.output.len(),
        unity_domain::monitoring::MAX_OUTPUT_LEN,
        "the output is cut, not the event bloated"
    );
}

/// The project's own samples of LVM and btrfs output (`samples/README.md` says where each
/// comes from).
fn sample(name: &str) -> &'static str {
    match name {
        "vgs-ok.json" => include_str!("samples/vgs-ok.json"),
        "vgs-partial.json" => include_str!("samples/vgs-partial.json"),
        "lvs.json" => include_str!("samples/lvs.json"),
        "btrfs-usage.txt" => include_str!("samples/btrfs-usage.txt"),
        "btrfs-stats.txt" => include_str!("samples/btrfs-stats.txt"),
        "btrfs-usage-degraded.txt" => include_str!("samples/btrfs-usage-degraded.txt"),
        "btrfs-stats-errors.txt" => include_str!("samples/btrfs-stats-errors.txt"),
        _ => panic!("no sample {name}"),
    }
}

#[test]
fn lvm_groups_and_volumes_are_judged_by_their_attributes_and_thin_pools_by_their_fill() {
    use super::lvm::{apply_lvs, parse_vgs};
    use unity_domain::monitoring::PoolKind;

    let ok = parse_vgs(sample("vgs-ok.json")).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].kind, ok[0].name.as_str(), ok[0].verdict), (PoolKind::Lvm, "vgtest", Verdict::Passed));
    assert_eq!(
        (ok[0].size_bytes, ok[0].free_bytes, ok[0].allocated_bytes),
        (Some(1065353216), Some(1065353216), Some(0))
    );
    let partial = parse_vgs(sample("vgs-partial.json")).unwrap();
    assert_eq!(partial[0].verdict, Verdict::Failed, "{:?}", partial[0].reasons);
    assert!(partial[0].reasons[0].contains("1 physical volume(s) missing"));

    // The groups lvs.json's volumes belong to.
    let groups = r#"{"report": [{"vg": [
        {"vg_name":"vg0", "vg_attr":"wz--n-", "vg_size":"1000000000000", "vg_free":"400000000000", "vg_missing_pv_count":"0"},
        {"vg_name":"vg1", "vg_attr":"wz--n-", "vg_size":"214748364800", "vg_free":"0", "vg_missing_pv_count":"0"}]}]}"#;
    let mut pools = parse_vgs(groups).unwrap();
    apply_lvs(&mut pools, sample("lvs.json")).unwrap();
    let vg0 = &pools[0];
    assert_eq!(vg0.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["root", "thin", "vms"]);
    let thin = &vg0.volumes[1];
    assert_eq!(
        (thin.data_percent, thin.metadata_percent, thin.used_bytes),
        (Some(9651), Some(1207), Some(214748364800))
    );
    assert_eq!(vg0.verdict, Verdict::Warning, "a thin pool 96 % full of data: {:?}", vg0.reasons);
    assert_eq!(vg0.reasons, ["thin pool thin is 96% full of data"]);
    assert_eq!(pools[1].verdict, Verdict::Failed, "a partial RAID volume: {:?}", pools[1].reasons);
    assert!(parse_vgs("WARNING: Running as a non-root user.").unwrap_err().to_string().starts_with("vgs: "));
}

#[test]
fn btrfs_filesystems_show_space_a_missing_device_and_error_counters() {
    use super::btrfs::parse;
    use unity_domain::monitoring::PoolKind;

    let healthy = parse("/srv", Some(sample("btrfs-usage.txt")), Some(sample("btrfs-stats.txt"))).unwrap();
    assert_eq!((healthy.kind, healthy.name.as_str(), healthy.state.as_str()), (PoolKind::Btrfs, "/srv", "ok"));
    assert_eq!(
        (healthy.size_bytes, healthy.allocated_bytes, healthy.free_bytes),
        (Some(1073741824), Some(249954304), Some(928645120))
    );
    assert_eq!((healthy.verdict, healthy.members.len()), (Verdict::Passed, 1));
    assert_eq!(healthy.members[0].name, "/dev/loop0");

    let degraded =
        parse("/data", Some(sample("btrfs-usage-degraded.txt")), Some(sample("btrfs-stats-errors.txt"))).unwrap();
    assert_eq!((degraded.state.as_str(), degraded.verdict), ("degraded", Verdict::Failed), "{:?}", degraded.reasons);
    let sdb = &degraded.members[0];
    assert_eq!((sdb.read_errors, sdb.write_errors, sdb.checksum_errors), (3, 1, 12));
    assert_eq!(degraded.members[1].state, "missing");
    assert!(degraded.reasons.iter().any(|r| r.contains("/dev/sdb has 16 errors")), "{:?}", degraded.reasons);

    // Usage read as non-root fails its section: its counters are unknown, not zero.
    let unread = parse("/srv", None, None).unwrap();
    assert_eq!((unread.verdict, unread.size_bytes), (Verdict::Unknown, None));
    assert!(parse("/srv", Some("ERROR: not a btrfs filesystem"), None).is_err());
}
