//! What one poll of one server measured: the payload of a `ServerSampled` event.
//!
//! Every number is an integer (percentages in hundredths, load in hundredths, sizes in bytes,
//! rates per second) so a sample is exact after JSONB, and the field names are short because a
//! month of a fleet's samples is the bulk of the event log: a sample is stored once per server
//! per minute.

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuShares {
    #[serde(rename = "us")]
    pub user: Basis,
    #[serde(rename = "ni")]
    pub nice: Basis,
    #[serde(rename = "sy")]
    pub system: Basis,
    #[serde(rename = "io")]
    pub iowait: Basis,
    #[serde(rename = "hi")]
    pub irq: Basis,
    #[serde(rename = "si")]
    pub softirq: Basis,
    #[serde(rename = "st")]
    pub steal: Basis,
    /// Of user and nice, the part spent running guests.
    #[serde(rename = "gu")]
    pub guest: Basis,
    #[serde(rename = "id")]
    pub idle: Basis,
}

impl CpuShares {
    /// Busy: everything but idle, iowait and steal.
    pub fn busy(&self) -> Basis {
        self.user + self.nice + self.system + self.irq + self.softirq
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(rename = "t")]
    pub total: u64,
    /// MemTotal − MemAvailable (or, on kernels before 3.14, − free − buffers − cached).
    #[serde(rename = "u")]
    pub used: u64,
    #[serde(rename = "a")]
    pub available: u64,
    #[serde(rename = "c")]
    pub cached: u64,
    #[serde(rename = "st")]
    pub swap_total: u64,
    #[serde(rename = "su")]
    pub swap_used: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemUsage {
    #[serde(rename = "m")]
    pub mount: String,
    #[serde(rename = "d")]
    pub device: String,
    #[serde(rename = "t")]
    pub fstype: String,
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "u")]
    pub used: u64,
    #[serde(rename = "a")]
    pub available: u64,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(rename = "iu", default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// An interface's traffic per second since the previous poll. The rates are `None` when there is
/// nothing to compare with: the first poll, a reboot, a gap, or a counter that went backwards
/// without wrapping (the interface was re-created).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRates {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "rb", default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(rename = "tb", default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    #[serde(rename = "rp", default, skip_serializing_if = "Option::is_none")]
    pub rx_packets: Option<u64>,
    #[serde(rename = "tp", default, skip_serializing_if = "Option::is_none")]
    pub tx_packets: Option<u64>,
    /// Errors and drops since the previous poll, both directions together.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(rename = "dr", default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<u64>,
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
}
