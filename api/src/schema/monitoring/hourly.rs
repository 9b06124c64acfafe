//! A server's hourly summaries as GraphQL objects: the minimum, mean and maximum of each hour,
//! kept for `UNITY_SUMMARY_RETENTION_DAYS`, long after the raw samples.

use chrono::{DateTime, Utc};
use juniper::GraphQLObject;
use unity_domain::monitoring::HourSummary;

#[derive(GraphQLObject)]
/// The least, the mean and the most of a measure over an hour's polls.
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Spread {
    fn of<T: Copy + Into<f64>>([min, mean, max]: [T; 3], scale: f64) -> Spread {
        Spread { min: min.into() / scale, mean: mean.into() / scale, max: max.into() / scale }
    }

    fn bytes([min, mean, max]: [u64; 3]) -> Spread {
        Spread { min: min as f64, mean: mean as f64, max: max as f64 }
    }
}

#[derive(GraphQLObject)]
pub struct FilesystemHour {
    pub mount: String,
    pub size_bytes: f64,
    pub used_bytes: Spread,
    pub available_bytes: f64,
    pub inodes: Option<f64>,
    /// The most inodes used in the hour.
    pub inodes_used: Option<f64>,
}

#[derive(GraphQLObject)]
/// Rates per second over the polls that had them.
pub struct InterfaceHour {
    pub name: String,
    pub rx_bytes_mean: f64,
    pub rx_bytes_max: f64,
    pub tx_bytes_mean: f64,
    pub tx_bytes_max: f64,
    pub errors: f64,
    pub drops: f64,
}

#[derive(GraphQLObject)]
/// One hour of polls, rolled up.
pub struct HourlySummary {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    pub polls: i32,
    /// Busy CPU in percent (none when no poll of the hour had a previous one to compare with).
    pub cpu_busy: Option<Spread>,
    pub memory_used_bytes: Spread,
    pub memory_total_bytes: f64,
    pub swap_used_bytes: Spread,
    pub load1: Spread,
    pub load5: f64,
    pub load15: f64,
    pub filesystems: Vec<FilesystemHour>,
    pub interfaces: Vec<InterfaceHour>,
}

impl HourlySummary {
    pub fn new(hour: DateTime<Utc>, s: &HourSummary) -> HourlySummary {
        HourlySummary {
            hour,
            polls: s.polls as i32,
            cpu_busy: s.cpu_busy.map(|b| Spread::of(b, 100.0)),
            memory_used_bytes: Spread::bytes(s.memory_used),
            memory_total_bytes: s.memory.total as f64,
            swap_used_bytes: Spread::bytes(s.swap_used),
            load1: Spread::of(s.load1, 100.0),
            load5: f64::from(s.load5) / 100.0,
            load15: f64::from(s.load15) / 100.0,
            filesystems: s
                .filesystems
                .iter()
                .map(|f| FilesystemHour {
                    mount: f.mount.clone(),
                    size_bytes: f.size as f64,
                    used_bytes: Spread::bytes(f.used),
                    available_bytes: f.available as f64,
                    inodes: f.inodes.map(|v| v as f64),
                    inodes_used: f.inodes_used.map(|v| v as f64),
                })
                .collect(),
            interfaces: s
                .interfaces
                .iter()
                .map(|i| InterfaceHour {
                    name: i.name.clone(),
                    rx_bytes_mean: i.rx_bytes[0] as f64,
                    rx_bytes_max: i.rx_bytes[1] as f64,
                    tx_bytes_mean: i.tx_bytes[0] as f64,
                    tx_bytes_max: i.tx_bytes[1] as f64,
                    errors: i.errors as f64,
                    drops: i.drops as f64,
                })
                .collect(),
        }
    }
}
