//! Storage health as the collectors read it: disks (SMART), pools (ZFS, LVM, btrfs) and md
//! arrays. These are recorded when they change, not on every poll.

use serde::{Deserialize, Serialize};

/// How healthy a thing is, worst last so `max` combines verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Asleep (a disk in standby is not woken to be read) or not readable this time.
    #[default]
    Unknown,
    Passed,
    Warning,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Passed => "passed",
            Verdict::Warning => "warning",
            Verdict::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Ata,
    Nvme,
    Scsi,
}

impl DeviceKind {
    /// The API's and the read models' word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Ata => "ATA",
            DeviceKind::Nvme => "NVME",
            DeviceKind::Scsi => "SCSI",
        }
    }
}

/// One disk as smartctl described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageDevice {
    /// The device node smartctl opened (`/dev/sda`) and the `-d` type it used.
    pub name: String,
    pub device_type: String,
    pub kind: DeviceKind,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub capacity_bytes: Option<u64>,
    pub temperature_c: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// NVMe percentage used, or an SSD's wear indicator, 0–255.
    pub wear_percent: Option<u64>,
    /// smartctl's overall health (`smart_status.passed`), where the device reported one.
    pub self_assessment_passed: Option<bool>,
    /// smartctl's exit status bits, decoded (see `ExitStatus`).
    pub exit_status: u8,
    pub verdict: Verdict,
    /// Why, in words, when the verdict is not `passed`.
    pub reasons: Vec<String>,
    pub attributes: Vec<SmartAttribute>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartAttribute {
    /// The ATA attribute number (`"5"`), or the NVMe/SCSI field (`"media_errors"`).
    pub id: String,
    pub name: String,
    /// Normalised value, worst and threshold (ATA only).
    pub value: Option<i64>,
    pub worst: Option<i64>,
    pub threshold: Option<i64>,
    /// The raw value as a number (Seagate's packed 188 decoded to its timeout count).
    pub raw: i64,
    pub verdict: Verdict,
    /// A note when the verdict has a reason beyond the numbers (a failure rate, a growth).
    pub note: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Zfs,
    Lvm,
    Btrfs,
}

impl PoolKind {
    /// The API's and the read models' word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolKind::Zfs => "ZFS",
            PoolKind::Lvm => "LVM",
            PoolKind::Btrfs => "BTRFS",
        }
    }
}

/// A pool of storage: a ZFS pool, an LVM volume group, a btrfs filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub name: String,
    /// The tool's own word for its state (`ONLINE`, `DEGRADED`; LVM's attributes; btrfs: `ok`).
    pub state: String,
    pub size_bytes: Option<u64>,
    pub allocated_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// A scrub or resilver: what, whether it runs, how far (hundredths of a percent), errors.
    pub scan: Option<Scan>,
    pub members: Vec<PoolMember>,
    /// ZFS datasets, LVM logical volumes; empty for btrfs.
    pub volumes: Vec<Volume>,
    /// Data errors the pool reports (ZFS `errors:` line), 0 for none.
    pub data_errors: u64,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// `scrub` or `resilver`.
    pub kind: String,
    pub running: bool,
    pub progress: Option<u16>,
    pub errors: u64,
}

/// A vdev or device in a pool, with its error counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMember {
    pub name: String,
    /// Depth in the pool's tree (0 for the pool's own line in ZFS).
    pub depth: u8,
    pub state: String,
    pub read_errors: u64,
    pub write_errors: u64,
    pub checksum_errors: u64,
    /// The tool's note (`was /dev/sdb1`, `cannot open`).
    pub note: String,
}

/// A ZFS dataset or an LVM logical volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub used_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// ZFS: used by snapshots. LVM thin pools: data use in hundredths of a percent.
    pub snapshot_bytes: Option<u64>,
    pub data_percent: Option<u16>,
    pub metadata_percent: Option<u16>,
}

/// An md array from /proc/mdstat and `mdadm --detail`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Array {
    pub name: String,
    pub level: String,
    /// `clean`, `active`, `active, degraded, recovering`…; `inactive` for an array not running.
    pub state: String,
    pub raid_devices: Option<u32>,
    pub members: Vec<ArrayMember>,
    pub degraded: u32,
    /// `check`, `repair`, `resync`, `recovery` or `reshape`, while one runs.
    pub sync_action: Option<String>,
    pub sync_progress: Option<u16>,
    pub mismatch_count: Option<u64>,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMember {
    pub device: String,
    /// `active sync`, `spare`, `faulty`, `removed`, `spare rebuilding`…
    pub state: String,
}
