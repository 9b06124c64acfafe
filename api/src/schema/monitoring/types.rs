//! The monitoring part of a server, as GraphQL objects.

use chrono::{DateTime, Utc};
use juniper::{graphql_object, GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_domain::monitoring::{self as domain, HostFacts, HostSample, MonitoringConfig};
use unity_projections::monitoring::{self as read, MonitoredServer};
use uuid::Uuid;

use crate::{
    errors::ApiError,
    schema::{common::*, Context},
};

/// Bytes and counts as Float: GraphQL's Int is 32 bits; a Float holds every value up to 2^53.
fn float(v: u64) -> f64 {
    v as f64
}

fn percent(basis: u16) -> f64 {
    f64::from(basis) / 100.0
}

/// Fills in each filesystem's device and type from the facts (samples carry only numbers).
pub fn name_filesystems(sample: &mut HostSample, facts: Option<&serde_json::Value>) {
    let Some(facts) = facts.and_then(|f| serde_json::from_value::<HostFacts>(f.clone()).ok()) else { return };
    for fs in &mut sample.filesystems {
        if let Some((_, device, fstype)) = facts.filesystems.iter().find(|(mount, _, _)| *mount == fs.mount) {
            (fs.device, fs.fstype) = (device.clone(), fstype.clone());
        }
    }
}

pub struct ServerMonitoring {
    pub server_id: Uuid,
    pub row: Option<MonitoredServer>,
}

impl ServerMonitoring {
    fn config(&self) -> MonitoringConfig {
        self.row
            .as_ref()
            .and_then(|r| r.config.clone())
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default()
    }
}

#[derive(GraphQLObject)]
pub struct SmartSettings {
    pub enabled: bool,
    pub interval_seconds: i32,
}

#[derive(GraphQLObject)]
pub struct DatabaseSettings {
    pub enabled: bool,
    pub credential_id: Option<ID>,
}

#[derive(GraphQLObject)]
/// What the last poll said about the host itself.
pub struct Facts {
    pub hostname: String,
    pub os: String,
    pub os_id: String,
    pub os_version: String,
    pub kernel: String,
    pub cpus: i32,
    pub boot_id: String,
}

impl From<HostFacts> for Facts {
    fn from(f: HostFacts) -> Facts {
        Facts {
            hostname: f.hostname,
            os: f.os,
            os_id: f.os_id,
            os_version: f.os_version,
            kernel: f.kernel,
            cpus: f.cpus as i32,
            boot_id: f.boot_id,
        }
    }
}

#[graphql_object(context = Context)]
impl ServerMonitoring {
    fn enabled(&self) -> bool {
        self.config().enabled
    }
    /// Seconds between two polls.
    fn interval(&self) -> i32 {
        self.config().interval_secs as i32
    }
    fn smart(&self) -> SmartSettings {
        let c = self.config();
        SmartSettings { enabled: c.smart_enabled, interval_seconds: c.smart_interval_secs as i32 }
    }
    fn databases(&self) -> DatabaseSettings {
        let c = self.config();
        DatabaseSettings { enabled: c.databases_enabled, credential_id: c.database_credential.map(id) }
    }
    /// OK, UNREACHABLE (no SSH session), FAILING (its output could not be read), or UNKNOWN
    /// (not polled yet).
    fn status(&self) -> &str {
        self.row.as_ref().map_or("UNKNOWN", |r| r.status.as_str())
    }
    fn last_error(&self) -> Option<&str> {
        self.row.as_ref().and_then(|r| r.last_error.as_deref())
    }
    fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.row.as_ref().and_then(|r| r.failing_since)
    }
    fn last_sample_at(&self) -> Option<DateTime<Utc>> {
        self.row.as_ref().and_then(|r| r.last_sample_at)
    }
    fn facts(&self) -> Option<Facts> {
        let facts = self.row.as_ref()?.facts.clone()?;
        serde_json::from_value::<HostFacts>(facts).ok().map(Facts::from)
    }
    /// The last poll's numbers.
    fn latest(&self) -> Option<Sample> {
        let row = self.row.as_ref()?;
        let mut sample = serde_json::from_value::<HostSample>(row.last_sample.clone()?).ok()?;
        name_filesystems(&mut sample, row.facts.as_ref());
        Some(Sample::new(row.last_sample_at?, &sample))
    }
    /// Samples in `[from, to]` (at most 31 days, or 400 with a step of an hour or more): every
    /// poll, or averaged over `step` seconds (15 to 86400). Raw samples exist for the retention
    /// period (`UNITY_METRICS_RETENTION_DAYS`); before it, each hour's summary stands for its
    /// polls, at the hour.
    async fn metrics(
        &self,
        ctx: &Context,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Option<i32>,
    ) -> Result<Vec<Sample>, ApiError> {
        super::metrics(ctx, self.server_id, from, to, step).await
    }
    /// The hourly summaries (least, mean and most of each measure) of the hours starting in
    /// `[from, to]` (at most 400 days), kept for `UNITY_SUMMARY_RETENTION_DAYS`.
    async fn hourly(
        &self,
        ctx: &Context,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<super::HourlySummary>, ApiError> {
        super::hourly(ctx, self.server_id, from, to).await
    }
    /// The checks that run on this server (its own and its tags'), each with its latest result.
    async fn checks(&self, ctx: &Context) -> Result<Vec<super::ServerCheckResult>, ApiError> {
        super::server_checks(ctx, self.server_id).await
    }
    async fn storage_devices(&self, ctx: &Context) -> Result<Vec<StorageDevice>, ApiError> {
        let rows = read::monitored_devices(ctx.state.store.pool(), self.server_id).await?;
        Ok(rows.into_iter().filter_map(StorageDevice::from_row).collect())
    }
    async fn pools(&self, ctx: &Context) -> Result<Vec<Pool>, ApiError> {
        let rows = read::monitored_pools(ctx.state.store.pool(), self.server_id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_value::<domain::Pool>(r.pool).ok().map(Pool::from))
            .collect())
    }
    async fn arrays(&self, ctx: &Context) -> Result<Vec<Array>, ApiError> {
        let rows = read::monitored_arrays(ctx.state.store.pool(), self.server_id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_value::<domain::Array>(r.array_state).ok().map(Array::from))
            .collect())
    }
    /// What changed, newest first: facts, pools, arrays, disks, failures and recoveries.
    async fn changes(&self, ctx: &Context, first: Option<i32>) -> Result<Vec<MonitoringChange>, ApiError> {
        let limit = page_size(first)?;
        let rows = read::monitoring_changes(ctx.state.store.pool(), self.server_id, limit).await?;
        Ok(rows
            .into_iter()
            .map(|c| MonitoringChange {
                at: c.at,
                kind: c.kind,
                subject: c.subject,
                verdict: c.verdict,
                summary: c.summary,
            })
            .collect())
    }
}

#[derive(GraphQLObject)]
pub struct MonitoringChange {
    pub at: DateTime<Utc>,
    /// FACTS, POOL, ARRAY, DEVICE_DISCOVERED, DEVICE_VERDICT, DEVICE_REMOVED, POOL_REMOVED,
    /// ARRAY_REMOVED, UNREACHABLE, FAILING, RECOVERED.
    pub kind: String,
    pub subject: String,
    pub verdict: Option<String>,
    pub summary: String,
}

#[derive(GraphQLObject)]
/// CPU time shares in percent of all CPUs; guest is part of user and nice.
pub struct Cpu {
    pub busy: f64,
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    pub guest: f64,
    pub idle: f64,
}

#[derive(GraphQLObject)]
pub struct MemoryUse {
    pub total_bytes: f64,
    pub used_bytes: f64,
    pub available_bytes: f64,
    pub cached_bytes: f64,
    pub swap_total_bytes: f64,
    pub swap_used_bytes: f64,
}

#[derive(GraphQLObject)]
pub struct FilesystemUse {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub size_bytes: f64,
    pub used_bytes: f64,
    pub available_bytes: f64,
    pub inodes: Option<f64>,
    pub inodes_used: Option<f64>,
}

#[derive(GraphQLObject)]
/// Per second since the previous poll; null where there was nothing to compare with.
pub struct InterfaceRate {
    pub name: String,
    pub rx_bytes: Option<f64>,
    pub tx_bytes: Option<f64>,
    pub rx_packets: Option<f64>,
    pub tx_packets: Option<f64>,
    pub errors: Option<f64>,
    pub drops: Option<f64>,
}

#[derive(GraphQLObject)]
/// One poll (or, from `metrics` with a step, the average of the polls in one step).
pub struct Sample {
    pub at: DateTime<Utc>,
    pub uptime_seconds: f64,
    pub cpu: Option<Cpu>,
    pub memory: MemoryUse,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub filesystems: Vec<FilesystemUse>,
    pub interfaces: Vec<InterfaceRate>,
}

impl Sample {
    pub fn new(at: DateTime<Utc>, s: &HostSample) -> Sample {
        Sample {
            at,
            uptime_seconds: float(s.uptime_secs),
            cpu: s.cpu.map(|c| Cpu {
                busy: percent(c.busy()),
                user: percent(c.user),
                nice: percent(c.nice),
                system: percent(c.system),
                iowait: percent(c.iowait),
                irq: percent(c.irq),
                softirq: percent(c.softirq),
                steal: percent(c.steal),
                guest: percent(c.guest),
                idle: percent(c.idle),
            }),
            memory: MemoryUse {
                total_bytes: float(s.memory.total),
                used_bytes: float(s.memory.used),
                available_bytes: float(s.memory.available),
                cached_bytes: float(s.memory.cached),
                swap_total_bytes: float(s.memory.swap_total),
                swap_used_bytes: float(s.memory.swap_used),
            },
            load1: f64::from(s.load[0]) / 100.0,
            load5: f64::from(s.load[1]) / 100.0,
            load15: f64::from(s.load[2]) / 100.0,
            filesystems: s
                .filesystems
                .iter()
                .map(|f| FilesystemUse {
                    mount: f.mount.clone(),
                    device: f.device.clone(),
                    fstype: f.fstype.clone(),
                    size_bytes: float(f.size),
                    used_bytes: float(f.used),
                    available_bytes: float(f.available),
                    inodes: f.inodes.map(float),
                    inodes_used: f.inodes_used.map(float),
                })
                .collect(),
            interfaces: s
                .interfaces
                .iter()
                .map(|i| InterfaceRate {
                    name: i.name.clone(),
                    rx_bytes: i.rx_bytes.map(float),
                    tx_bytes: i.tx_bytes.map(float),
                    rx_packets: i.rx_packets.map(float),
                    tx_packets: i.tx_packets.map(float),
                    errors: i.errors.map(float),
                    drops: i.drops.map(float),
                })
                .collect(),
        }
    }
}

#[derive(GraphQLObject)]
pub struct SmartAttribute {
    /// The ATA attribute number, or the NVMe/SCSI field name.
    pub id: String,
    pub name: String,
    pub value: Option<i32>,
    pub worst: Option<i32>,
    pub threshold: Option<i32>,
    pub raw: f64,
    /// passed, warning, failed or unknown.
    pub verdict: String,
    pub note: Option<String>,
}

#[derive(GraphQLObject)]
pub struct StorageDevice {
    /// `<serverId>/<serial>`: what overrideSmartAttribute names.
    pub id: ID,
    pub name: String,
    /// ATA, NVME or SCSI.
    pub kind: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub capacity_bytes: Option<f64>,
    pub temperature: Option<i32>,
    pub power_on_hours: Option<f64>,
    /// Percent of rated endurance used (NVMe percentage used, SSD wear indicator).
    pub wear: Option<i32>,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub attributes: Vec<SmartAttribute>,
    pub read_at: DateTime<Utc>,
}

impl StorageDevice {
    pub(super) fn from_row(row: read::MonitoredDevice) -> Option<StorageDevice> {
        let d: domain::StorageDevice = serde_json::from_value(row.device).ok()?;
        let small = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
        Some(StorageDevice {
            id: ID::new(format!("{}/{}", row.server_id, row.serial)),
            name: d.name,
            kind: d.kind.as_str().to_string(),
            model: d.model,
            serial: d.serial,
            firmware: d.firmware,
            capacity_bytes: d.capacity_bytes.map(float),
            temperature: small(d.temperature_c),
            power_on_hours: d.power_on_hours.map(float),
            wear: d.wear_percent.and_then(|w| i32::try_from(w).ok()),
            verdict: row.verdict,
            reasons: serde_json::from_value(row.reasons).unwrap_or_default(),
            attributes: d
                .attributes
                .into_iter()
                .map(|a| SmartAttribute {
                    id: a.id,
                    name: a.name,
                    value: small(a.value),
                    worst: small(a.worst),
                    threshold: small(a.threshold),
                    raw: a.raw as f64,
                    verdict: a.verdict.as_str().to_string(),
                    note: a.note,
                })
                .collect(),
            read_at: row.read_at,
        })
    }
}

#[derive(GraphQLObject)]
pub struct Scan {
    /// scrub or resilver.
    pub kind: String,
    pub running: bool,
    pub progress_percent: Option<f64>,
    pub errors: f64,
}

#[derive(GraphQLObject)]
pub struct PoolMember {
    pub name: String,
    pub depth: i32,
    pub state: String,
    pub read_errors: f64,
    pub write_errors: f64,
    pub checksum_errors: f64,
    pub note: String,
}

#[derive(GraphQLObject)]
pub struct Volume {
    pub name: String,
    pub used_bytes: Option<f64>,
    pub available_bytes: Option<f64>,
    pub snapshot_bytes: Option<f64>,
}

#[derive(GraphQLObject)]
/// A ZFS pool (LVM volume groups and btrfs filesystems come with their collectors).
pub struct Pool {
    pub kind: String,
    pub name: String,
    pub state: String,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub size_bytes: Option<f64>,
    pub allocated_bytes: Option<f64>,
    pub free_bytes: Option<f64>,
    pub scan: Option<Scan>,
    pub data_errors: f64,
    pub members: Vec<PoolMember>,
    pub volumes: Vec<Volume>,
}

impl From<domain::Pool> for Pool {
    fn from(p: domain::Pool) -> Pool {
        Pool {
            kind: p.kind.as_str().to_string(),
            name: p.name,
            state: p.state,
            verdict: p.verdict.as_str().to_string(),
            reasons: p.reasons,
            size_bytes: p.size_bytes.map(float),
            allocated_bytes: p.allocated_bytes.map(float),
            free_bytes: p.free_bytes.map(float),
            scan: p.scan.map(|s| Scan {
                kind: s.kind,
                running: s.running,
                progress_percent: s.progress.map(percent),
                errors: float(s.errors),
            }),
            data_errors: float(p.data_errors),
            members: p
                .members
                .into_iter()
                .map(|m| PoolMember {
                    name: m.name,
                    depth: i32::from(m.depth),
                    state: m.state,
                    read_errors: float(m.read_errors),
                    write_errors: float(m.write_errors),
                    checksum_errors: float(m.checksum_errors),
                    note: m.note,
                })
                .collect(),
            volumes: p
                .volumes
                .into_iter()
                .map(|v| Volume {
                    name: v.name,
                    used_bytes: v.used_bytes.map(float),
                    available_bytes: v.available_bytes.map(float),
                    snapshot_bytes: v.snapshot_bytes.map(float),
                })
                .collect(),
        }
    }
}

#[derive(GraphQLObject)]
pub struct ArrayMember {
    pub device: String,
    pub state: String,
}

#[derive(GraphQLObject)]
/// An md array.
pub struct Array {
    pub name: String,
    pub level: String,
    pub state: String,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub raid_devices: Option<i32>,
    pub degraded: i32,
    pub sync_action: Option<String>,
    pub sync_progress_percent: Option<f64>,
    pub mismatch_count: Option<f64>,
    pub members: Vec<ArrayMember>,
}

impl From<domain::Array> for Array {
    fn from(a: domain::Array) -> Array {
        Array {
            name: a.name,
            level: a.level,
            state: a.state,
            verdict: a.verdict.as_str().to_string(),
            reasons: a.reasons,
            raid_devices: a.raid_devices.and_then(|d| i32::try_from(d).ok()),
            degraded: a.degraded as i32,
            sync_action: a.sync_action,
            sync_progress_percent: a.sync_progress.map(percent),
            mismatch_count: a.mismatch_count.map(float),
            members: a.members.into_iter().map(|m| ArrayMember { device: m.device, state: m.state }).collect(),
        }
    }
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct SmartSettingsInput {
    pub enabled: bool,
    pub interval_seconds: Option<i32>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct DatabaseSettingsInput {
    pub enabled: bool,
    pub credential_id: Option<ID>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ConfigureMonitoringInput {
    pub server_id: ID,
    pub enabled: bool,
    /// Seconds between polls: at least 15 (default 60).
    pub interval_seconds: Option<i32>,
    pub smart: Option<SmartSettingsInput>,
    pub databases: Option<DatabaseSettingsInput>,
}

#[derive(Clone, Copy, Debug, GraphQLEnum)]
pub enum SmartOverrideAction {
    /// Shown, never judged.
    Ignore,
    /// Its current raw value is accepted; judged again only if it grows past it.
    AcceptCurrent,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct OverrideSmartAttributeInput {
    /// A storage device's id (`<serverId>/<serial>`).
    pub device_id: ID,
    pub attribute_id: String,
    pub action: SmartOverrideAction,
}
