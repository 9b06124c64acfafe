//! The `host_summaries` streams: each hour of a server's samples rolled up (minimum, mean and
//! maximum of what a chart shows), one stream per server per UTC month in the summaries
//! retention class. Raw samples expire after `UNITY_METRICS_RETENTION_DAYS`; the summaries keep
//! the history (and its charts) for `UNITY_SUMMARY_RETENTION_DAYS`.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Basis, CpuShares, FilesystemUsage, HostSample, InterfaceRates, Memory};
use crate::StreamId;

pub const HOST_SUMMARIES: &str = "host_summaries";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum HostSummariesEvent {
    /// The polls of the hour starting at `hour`, rolled up.
    HourSummarized { server_id: Uuid, hour: DateTime<Utc>, summary: HourSummary },
}

crate::domain_event!(HostSummariesEvent, "host_summaries", [HourSummarized]);

/// The stream of `server_id`'s summaries of the month of `day`: a UUIDv7 whose time is the
/// month's first millisecond (retention files it under that month) and whose other bits are the
/// server id's own, so every process names the same stream.
pub fn summaries_stream(server_id: Uuid, day: NaiveDate) -> StreamId {
    let first = day.with_day(1).unwrap_or(day);
    let millis = first.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0).max(0) as u64;
    let mut rest = [0u8; 10];
    rest.copy_from_slice(&server_id.as_bytes()[6..16]);
    StreamId::new(HOST_SUMMARIES, uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid())
}

/// An hour of polls. Sizes in bytes and rates per second, like [`HostSample`]; each triple is
/// `[minimum, mean, maximum]` over the hour's polls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourSummary {
    /// How many polls the hour had.
    pub polls: u32,
    /// The last poll's uptime.
    pub uptime_secs: u64,
    /// Busy CPU, over the polls that had CPU shares (none: no poll had a previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_busy: Option<[Basis; 3]>,
    /// The mean of each CPU share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuShares>,
    pub memory_used: [u64; 3],
    /// The last poll's memory (its totals say what the triples are out of).
    pub memory: Memory,
    pub swap_used: [u64; 3],
    /// The 1-minute load (hundredths); the 5 and 15-minute loads' means.
    pub load1: [u32; 3],
    pub load5: u32,
    pub load15: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<FilesystemSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceSummary>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemSummary {
    pub mount: String,
    /// The last poll's size.
    pub size: u64,
    pub used: [u64; 3],
    /// The mean space available to unprivileged users (df's "available": less than size − used
    /// by the reserved blocks).
    pub available: u64,
    /// The most inodes used in the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSummary {
    pub name: String,
    /// Bytes per second received and sent: `[mean, maximum]` over the polls that had rates.
    pub rx_bytes: [u64; 2],
    pub tx_bytes: [u64; 2],
    /// Errors and drops per second, means.
    pub errors: u64,
    pub drops: u64,
}

/// Minimum, mean (rounded down) and maximum; `None` for no values.
fn spread<T: Copy + Ord + Into<u64> + TryFrom<u64>>(values: impl Iterator<Item = T>) -> Option<[T; 3]> {
    let (mut n, mut sum, mut min, mut max) = (0u64, 0u64, None::<T>, None::<T>);
    for v in values {
        n += 1;
        sum += v.into();
        min = Some(min.map_or(v, |m| m.min(v)));
        max = Some(max.map_or(v, |m| m.max(v)));
    }
    let mean = T::try_from(sum.checked_div(n)?).ok()?;
    Some([min?, mean, max?])
}

impl HourSummary {
    /// The summary of one hour's polls, in the order they were taken; `None` for no polls.
    pub fn of(polls: &[HostSample]) -> Option<HourSummary> {
        let last = polls.last()?;
        let shares: Vec<CpuShares> = polls.iter().filter_map(|p| p.cpu).collect();
        let mean_share = |f: fn(&CpuShares) -> Basis| {
            (shares.iter().map(|c| u64::from(f(c))).sum::<u64>() / shares.len().max(1) as u64) as Basis
        };
        let mean = |f: &dyn Fn(&HostSample) -> u32| {
            (polls.iter().map(|p| u64::from(f(p))).sum::<u64>() / polls.len() as u64) as u32
        };
        let mut filesystems: Vec<FilesystemSummary> = Vec::new();
        for fs in &last.filesystems {
            let seen: Vec<&FilesystemUsage> =
                polls.iter().flat_map(|p| p.filesystems.iter().filter(|f| f.mount == fs.mount)).collect();
            filesystems.push(FilesystemSummary {
                mount: fs.mount.clone(),
                size: fs.size,
                used: spread(seen.iter().map(|f| f.used)).unwrap_or([fs.used; 3]),
                available: spread(seen.iter().map(|f| f.available)).map_or(fs.available, |[_, mean, _]| mean),
                inodes_used: seen.iter().filter_map(|f| f.inodes_used).max(),
                inodes: fs.inodes,
            });
        }
        let mut interfaces: Vec<InterfaceSummary> = Vec::new();
        for i in &last.interfaces {
            let seen: Vec<&InterfaceRates> = polls
                .iter()
                .flat_map(|p| p.interfaces.iter().filter(|r| r.name == i.name && r.rx_bytes.is_some()))
                .collect();
            let two = |f: fn(&InterfaceRates) -> Option<u64>| {
                spread(seen.iter().filter_map(|r| f(r))).map_or([0, 0], |[_, mean, max]| [mean, max])
            };
            let mean = |f: fn(&InterfaceRates) -> Option<u64>| {
                spread(seen.iter().filter_map(|r| f(r))).map_or(0, |[_, mean, _]| mean)
            };
            interfaces.push(InterfaceSummary {
                name: i.name.clone(),
                rx_bytes: two(|r| r.rx_bytes),
                tx_bytes: two(|r| r.tx_bytes),
                errors: mean(|r| r.errors),
                drops: mean(|r| r.drops),
            });
        }
        Some(HourSummary {
            polls: polls.len() as u32,
            uptime_secs: last.uptime_secs,
            cpu_busy: spread(shares.iter().map(CpuShares::busy)),
            cpu: (!shares.is_empty()).then(|| CpuShares {
                user: mean_share(|c| c.user),
                nice: mean_share(|c| c.nice),
                system: mean_share(|c| c.system),
                iowait: mean_share(|c| c.iowait),
                irq: mean_share(|c| c.irq),
                softirq: mean_share(|c| c.softirq),
                steal: mean_share(|c| c.steal),
                guest: mean_share(|c| c.guest),
                idle: mean_share(|c| c.idle),
            }),
            memory_used: spread(polls.iter().map(|p| p.memory.used)).unwrap_or_default(),
            memory: last.memory,
            swap_used: spread(polls.iter().map(|p| p.memory.swap_used)).unwrap_or_default(),
            load1: spread(polls.iter().map(|p| p.load[0])).unwrap_or_default(),
            load5: mean(&|p| p.load[1]),
            load15: mean(&|p| p.load[2]),
            filesystems,
            interfaces,
        })
    }

    /// The hour as one sample of its means, for a chart that reaches back past the raw samples.
    pub fn mean_sample(&self) -> HostSample {
        HostSample {
            uptime_secs: self.uptime_secs,
            cpu: self.cpu,
            memory: Memory { used: self.memory_used[1], swap_used: self.swap_used[1], ..self.memory },
            load: [self.load1[1], self.load5, self.load15],
            filesystems: self
                .filesystems
                .iter()
                .map(|f| FilesystemUsage {
                    mount: f.mount.clone(),
                    size: f.size,
                    used: f.used[1],
                    available: f.available,
                    inodes: f.inodes,
                    inodes_used: f.inodes_used,
                    ..FilesystemUsage::default()
                })
                .collect(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| InterfaceRates {
                    name: i.name.clone(),
                    rx_bytes: Some(i.rx_bytes[0]),
                    tx_bytes: Some(i.tx_bytes[0]),
                    errors: Some(i.errors),
                    drops: Some(i.drops),
                    ..InterfaceRates::default()
                })
                .collect(),
        }
    }
}
