//! What one poll of one server measured: the payload of a `ServerSampled` event.
//!
//! Every number is an integer (percentages in hundredths, load in hundredths, sizes in KiB as
//! /proc and df count them, rates per second) so a sample is exact after JSONB; and each part is
//! an array, not an object, because a month of a fleet's samples is the bulk of the event log
//! and JSONB stores every object's keys again in every row (measured: 930 bytes of payload with
//! objects, see ARCHITECTURE.md "Monitoring").

use serde::{Deserialize, Serialize};

/// Hundredths of a percent: 10 000 is 100 %.
pub type Basis = u16;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSample {
    /// Seconds since boot, from /proc/uptime.
    #[serde(rename = "up")]
    pub uptime_secs: u64,
    /// CPU time shares since the previous poll; `None` on the first poll of a boot or after a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuShares>,
    #[serde(rename = "mem")]
    pub memory: Memory,
    /// 1, 5 and 15 minute load averages, in hundredths.
    pub load: [u32; 3],
    #[serde(rename = "fs", default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<FilesystemUsage>,
    #[serde(rename = "net", default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceRates>,
}

/// Where the CPUs' time went since the previous poll, over all CPUs together. Guest time is
/// already inside user and nice in /proc/stat and is not counted again; steal and iowait are
/// their own shares, not busy and not idle.
///
/// Stored as one array `[user, nice, system, iowait, irq, softirq, steal, guest, idle]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[Basis; 9]", into = "[Basis; 9]")]
pub struct CpuShares {
    pub user: Basis,
    pub nice: Basis,
    pub system: Basis,
    pub iowait: Basis,
    pub irq: Basis,
    pub softirq: Basis,
    pub steal: Basis,
    /// Of user and nice, the part spent running guests.
    pub guest: Basis,
    pub idle: Basis,
}

impl From<[Basis; 9]> for CpuShares {
    fn from([user, nice, system, iowait, irq, softirq, steal, guest, idle]: [Basis; 9]) -> CpuShares {
        CpuShares { user, nice, system, iowait, irq, softirq, steal, guest, idle }
    }
}

impl From<CpuShares> for [Basis; 9] {
    fn from(c: CpuShares) -> [Basis; 9] {
        [c.user, c.nice, c.system, c.iowait, c.irq, c.softirq, c.steal, c.guest, c.idle]
    }
}

impl CpuShares {
    /// Busy: everything but idle, iowait and steal.
    pub fn busy(&self) -> Basis {
        self.user + self.nice + self.system + self.irq + self.softirq
    }
}

/// Bytes; stored as one array `[total, used, available, cached, swap total, swap used]` in KiB,
/// the unit /proc/meminfo counts in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 6]", into = "[u64; 6]")]
pub struct Memory {
    pub total: u64,
    /// MemTotal − MemAvailable (or, on kernels before 3.14, − free − buffers − cached).
    pub used: u64,
    pub available: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_used: u64,
}

impl From<[u64; 6]> for Memory {
    fn from(kib: [u64; 6]) -> Memory {
        let [total, used, available, cached, swap_total, swap_used] = kib.map(|v| v * 1024);
        Memory { total, used, available, cached, swap_total, swap_used }
    }
}

impl From<Memory> for [u64; 6] {
    fn from(m: Memory) -> [u64; 6] {
        [m.total, m.used, m.available, m.cached, m.swap_total, m.swap_used].map(|v| v / 1024)
    }
}

/// Sizes in bytes; stored as `[mount, size, used, available, inodes, inodes used]`, sizes in KiB
/// (df's unit). The device and type are facts, recorded in [`HostFacts::filesystems`] when they
/// change, not in every sample.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FilesystemRow", into = "FilesystemRow")]
pub struct FilesystemUsage {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub size: u64,
    pub used: u64,
    pub available: u64,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
}

type FilesystemRow = (String, u64, u64, u64, Option<u64>, Option<u64>);

impl From<FilesystemRow> for FilesystemUsage {
    fn from((mount, size, used, available, inodes, inodes_used): FilesystemRow) -> FilesystemUsage {
        FilesystemUsage {
            mount,
            size: size * 1024,
            used: used * 1024,
            available: available * 1024,
            inodes,
            inodes_used,
            ..FilesystemUsage::default()
        }
    }
}

impl From<FilesystemUsage> for FilesystemRow {
    fn from(f: FilesystemUsage) -> FilesystemRow {
        (f.mount, f.size / 1024, f.used / 1024, f.available / 1024, f.inodes, f.inodes_used)
    }
}

/// An interface's traffic per second since the previous poll. The rates are `None` when there is
/// nothing to compare with: the first poll, a reboot, a gap, or a counter that went backwards
/// without wrapping (the interface was re-created).
///
/// Stored as `[name, rx bytes, tx bytes, rx packets, tx packets, errors, drops]`, or `[name]`
/// when there are no rates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "InterfaceRow", into = "InterfaceRow")]
pub struct InterfaceRates {
    pub name: String,
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub rx_packets: Option<u64>,
    pub tx_packets: Option<u64>,
    /// Errors and drops since the previous poll, both directions together.
    pub errors: Option<u64>,
    pub drops: Option<u64>,
}

type InterfaceRow = Vec<serde_json::Value>;

impl From<InterfaceRow> for InterfaceRates {
    fn from(row: InterfaceRow) -> InterfaceRates {
        let at = |i: usize| row.get(i).and_then(serde_json::Value::as_u64);
        InterfaceRates {
            name: row.first().and_then(|n| n.as_str()).unwrap_or_default().to_string(),
            rx_bytes: at(1),
            tx_bytes: at(2),
            rx_packets: at(3),
            tx_packets: at(4),
            errors: at(5),
            drops: at(6),
        }
    }
}

impl From<InterfaceRates> for InterfaceRow {
    fn from(i: InterfaceRates) -> InterfaceRow {
        let rates = [i.rx_bytes, i.tx_bytes, i.rx_packets, i.tx_packets, i.errors, i.drops];
        let mut row = vec![serde_json::Value::from(i.name)];
        if rates.iter().any(Option::is_some) {
            row.extend(rates.map(|r| r.map_or(serde_json::Value::Null, serde_json::Value::from)));
        }
        row
    }
}

/// Facts about a host that change rarely; recorded only when they change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    /// `PRETTY_NAME` from os-release, else `NAME VERSION`.
    pub os: String,
    pub os_id: String,
    pub os_version: String,
    /// `uname -srm`.
    pub kernel: String,
    pub cpus: u32,
    pub boot_id: String,
    /// Each filesystem's mount point, device and type (the samples carry only the numbers).
    #[serde(default)]
    pub filesystems: Vec<(String, String, String)>,
}
