//! The poll: one POSIX `sh` script run in one exec, printing each source in its own section,
//! and the parser that turns its output into a sample and the counters the next poll needs.
//!
//! Sections are `@@name` … `@@/ status`, so a command that is missing or fails costs only its
//! section, and output cut off mid-way is told apart from a section that was empty. Nothing is
//! written on the server. Small files are read by the shell itself (`f`), larger ones by `cat`
//! (dash's `read` makes a system call per byte): each process the script starts is work on a
//! server that is not Unity's. `df` runs under `timeout -s KILL` where coreutils has it, so a stuck
//! NFS mount costs its five seconds, not the poll.

use std::collections::BTreeMap;

use unity_domain::monitoring::{Array, FilesystemUsage, HostFacts, HostSample, Pool};

use super::{
    proc::{self, NetCounters},
    rates::{self, Counters},
    ParseError,
};

/// Bumped whenever the script's sections or their meaning change (2: LVM and btrfs).
pub const SCRIPT_VERSION: u32 = 2;

/// The script as sent: `SCRIPT` with the storage tools' column lists filled in.
pub fn script() -> String {
    SCRIPT
        .replace("ZPOOL_LIST", super::zfs::ZPOOL_LIST)
        .replace("ZFS_LIST", super::zfs::ZFS_LIST)
        .replace("VGS", super::lvm::VGS)
        .replace("LVS", super::lvm::LVS)
}

const SCRIPT: &str = r#"LC_ALL=C; export LC_ALL
t() { if command -v timeout >/dev/null 2>&1; then timeout -s KILL 5 "$@"; else "$@"; fi; }
s() { n=$1; shift; echo "@@$n"; "$@" 2>/dev/null; r=$?; echo; echo "@@/ $r"; }
f() { echo "@@$1"; if [ -r "$2" ]; then while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$2"; r=0; else r=1; fi; echo; echo "@@/ $r"; }
echo "@@unity-poll 2"
s stat cat /proc/stat
s meminfo cat /proc/meminfo
f loadavg /proc/loadavg
f uptime /proc/uptime
f boot_id /proc/sys/kernel/random/boot_id
s net_dev cat /proc/net/dev
s mounts cat /proc/mounts
s df t df -P
s df_inodes t df -Pi
f os_release /etc/os-release
s kernel uname -srm
f hostname /proc/sys/kernel/hostname
s mdstat cat /proc/mdstat
if [ -r /proc/mdstat ]; then
  while read -r m c rest; do
    case "$m$c" in md*:)
      f "mismatch $m" "/sys/block/$m/md/mismatch_cnt"
      if command -v mdadm >/dev/null 2>&1; then s "mdadm $m" mdadm --detail "/dev/$m" </dev/null; fi;;
    esac
  done < /proc/mdstat
fi
if command -v zpool >/dev/null 2>&1; then
  s zpool_status t zpool status -p
  s zpool_list t ZPOOL_LIST
  s zfs_list t ZFS_LIST
fi
if command -v vgs >/dev/null 2>&1; then
  s vgs t VGS
  s lvs t LVS
fi
if command -v btrfs >/dev/null 2>&1; then
  seen=
  while read -r dev mnt typ rest; do
    [ "$typ" = btrfs ] || continue
    case " $seen " in *" $dev "*) continue;; esac
    seen="$seen $dev"
    m=$(printf '%b' "$mnt")
    s "btrfs_usage $m" t btrfs filesystem usage -b "$m"
    s "btrfs_stats $m" t btrfs device stats "$m"
  done < /proc/mounts
fi
echo "@@end"
"#;

/// One section's text and the exit status of the command that printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub text: String,
    pub status: i32,
}

/// Splits the script's output into its sections. Refuses output without the header (not our
/// script, or a shell that printed something first) and output without `@@end` (cut off).
pub fn sections(output: &str) -> Result<BTreeMap<String, Section>, ParseError> {
    sections_after(output, &format!("@@unity-poll {SCRIPT_VERSION}"))
}

/// The same for any script of this shape, whose first line is `header`.
pub fn sections_after(output: &str, header: &str) -> Result<BTreeMap<String, Section>, ParseError> {
    let mut lines = output.lines();
    if lines.by_ref().find(|l| !l.trim().is_empty()).map(str::trim) != Some(header) {
        return Err(ParseError::new("poll", "the output does not start with the script's header"));
    }
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in lines {
        if line == "@@end" {
            if let Some((name, _)) = current {
                return Err(ParseError::new("poll", format!("section {name} has no end")));
            }
            return Ok(sections);
        }
        if let Some(status) = line.strip_prefix("@@/ ") {
            let (name, body) =
                current.take().ok_or_else(|| ParseError::new("poll", "a section end without its start"))?;
            let status =
                status.trim().parse().map_err(|_| ParseError::new("poll", format!("section {name} has no status")))?;
            // The script adds a newline after every section so its end is on a line of its own.
            let text = body.join("\n").trim_end_matches('\n').to_string();
            sections.insert(name, Section { text, status });
        } else if let Some(name) = line.strip_prefix("@@").filter(|_| current.is_none()) {
            current = Some((name.trim().to_string(), Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    Err(ParseError::new("poll", "the output was cut off before its end"))
}

/// What one poll read: the sample to record, the facts, and the counters for the next poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub sample: HostSample,
    pub facts: HostFacts,
    pub counters: Counters,
    /// ZFS pools, LVM volume groups, btrfs filesystems and md arrays, judged; empty where the
    /// server has none.
    pub pools: Vec<Pool>,
    pub arrays: Vec<Array>,
    /// Sections that could not be read (a missing command, a df killed by its timeout).
    pub missing: Vec<String>,
}

/// Parses a poll's output read at `at_ms`, comparing with `previous` where it may
/// (same boot, not more than `max_gap_ms` apart).
pub fn parse(output: &str, at_ms: i64, previous: Option<&Counters>, max_gap_ms: i64) -> Result<Reading, ParseError> {
    let sections = sections(output)?;
    let mut missing = Vec::new();
    let mut get = |name: &str| -> Option<&str> {
        match sections.get(name) {
            Some(s) if s.status == 0 && !s.text.trim().is_empty() => Some(s.text.as_str()),
            _ => {
                missing.push(name.to_string());
                None
            }
        }
    };
    fn required<'a>(text: Option<&'a str>, name: &'static str) -> Result<&'a str, ParseError> {
        text.ok_or_else(|| ParseError::new(name, "not readable"))
    }
    let stat = proc::parse_stat(required(get("stat"), "/proc/stat")?)?;
    let meminfo = proc::parse_meminfo(required(get("meminfo"), "/proc/meminfo")?)?;
    let load = proc::parse_loadavg(required(get("loadavg"), "/proc/loadavg")?)?;
    let uptime_secs = proc::parse_uptime(required(get("uptime"), "/proc/uptime")?)?;
    let boot_id = get("boot_id").map(|b| b.trim().to_string());
    let net = get("net_dev").map(proc::parse_net_dev).transpose()?.unwrap_or_default();
    let mounts = get("mounts").map(proc::parse_mounts).unwrap_or_default();
    let df = get("df").map(proc::parse_df).transpose()?.unwrap_or_default();
    let df_inodes = get("df_inodes").map(proc::parse_df).transpose()?.unwrap_or_default();
    let os = get("os_release").map(proc::parse_os_release).unwrap_or_default();
    let kernel = get("kernel").unwrap_or("").trim().to_string();
    let hostname = get("hostname").unwrap_or("").trim().to_string();

    let boot = boot_id.clone().or_else(|| stat.btime.map(|b| format!("btime:{b}"))).unwrap_or_default();
    let counters = Counters {
        at_ms,
        boot: boot.clone(),
        cpu: stat.cpu,
        net: net.into_iter().map(|n: NetCounters| (n.name.clone(), n)).collect(),
    };
    let previous = previous.filter(|p| rates::comparable(p, &counters, max_gap_ms));
    let inodes: BTreeMap<&str, &proc::DfRow> = df_inodes.iter().map(|r| (r.mount.as_str(), r)).collect();
    let mut filesystems: Vec<FilesystemUsage> = Vec::new();
    for row in &df {
        let fstype = mounts.get(&row.mount).cloned().unwrap_or_default();
        if proc::excluded_filesystem(&fstype, &row.mount) || row.total == 0 {
            continue;
        }
        // The same mount twice (bind mounts, a filesystem mounted over another): the last wins, as in df.
        filesystems.retain(|f| f.mount != row.mount);
        let inode = inodes.get(row.mount.as_str()).filter(|i| i.total > 0);
        filesystems.push(FilesystemUsage {
            mount: row.mount.clone(),
            device: row.device.clone(),
            fstype,
            size: row.total * 1024,
            used: row.used * 1024,
            available: row.available * 1024,
            inodes: inode.map(|i| i.total),
            inodes_used: inode.map(|i| i.used),
        });
    }
    let sample = HostSample {
        uptime_secs,
        cpu: previous.and_then(|p| rates::cpu_shares(&p.cpu, &counters.cpu)),
        memory: proc::memory(&meminfo)?,
        load,
        filesystems,
        interfaces: rates::interface_rates(previous, &counters),
    };
    let pick = |key: &str| os.get(key).cloned().unwrap_or_default();
    let pretty = os
        .get("PRETTY_NAME")
        .cloned()
        .unwrap_or_else(|| format!("{} {}", pick("NAME"), pick("VERSION")).trim().to_string());
    let facts = HostFacts {
        hostname,
        os: pretty,
        os_id: pick("ID"),
        os_version: pick("VERSION_ID"),
        kernel,
        cpus: stat.cpus,
        boot_id: boot,
        filesystems: sample.filesystems.iter().map(|f| (f.mount.clone(), f.device.clone(), f.fstype.clone())).collect(),
    };
    let (pools, arrays) = storage(&sections)?;
    Ok(Reading { sample, facts, counters, pools, arrays, missing })
}

/// The storage sections: md arrays (mdstat, with `mdadm --detail` where it ran), ZFS pools, LVM
/// volume groups (with their logical volumes) and btrfs filesystems (one per device, whichever
/// of its mounts came first).
fn storage(sections: &BTreeMap<String, Section>) -> Result<(Vec<Pool>, Vec<Array>), ParseError> {
    let ok = |name: &str| sections.get(name).filter(|s| s.status == 0).map(|s| s.text.as_str());
    let mut arrays = ok("mdstat").map(super::mdadm::parse_mdstat).transpose()?.unwrap_or_default();
    for array in &mut arrays {
        if let Some(detail) = ok(&format!("mdadm {}", array.name)) {
            super::mdadm::apply_detail(array, detail)?;
        }
        array.mismatch_count = ok(&format!("mismatch {}", array.name)).and_then(|m| m.trim().parse().ok());
        super::mdadm::judge(array);
    }
    let mut pools = ok("zpool_status").map(super::zfs::parse_status).transpose()?.unwrap_or_default();
    if let Some(list) = ok("zpool_list") {
        super::zfs::apply_list(&mut pools, list);
    }
    if let Some(list) = ok("zfs_list") {
        super::zfs::apply_datasets(&mut pools, list);
    }
    pools.iter_mut().for_each(super::zfs::judge);
    if let Some(vgs) = ok("vgs") {
        let mut groups = super::lvm::parse_vgs(vgs)?;
        if let Some(lvs) = ok("lvs") {
            super::lvm::apply_lvs(&mut groups, lvs)?;
        }
        pools.extend(groups);
    }
    for (name, _) in sections.iter().filter(|(name, _)| name.starts_with("btrfs_usage ")) {
        let mount = &name["btrfs_usage ".len()..];
        pools.push(super::btrfs::parse(mount, ok(name), ok(&format!("btrfs_stats {mount}")))?);
    }
    Ok((pools, arrays))
}
