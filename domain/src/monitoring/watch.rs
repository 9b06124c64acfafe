//! The `server_monitoring` aggregate: one permanent stream per server (its id is the server's)
//! holding how it is watched and every change seen in it. A poll is compared with what the
//! stream already says, so a change is recorded once, never on every poll: facts (OS, kernel,
//! a reboot's new boot id), pools and arrays by their health (state, verdict, members, error
//! counters; not capacity or a scrub's progress, which the samples carry), disks by their
//! verdict, and collection failing or coming back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Array, CheckStatus, HostFacts, Pool, PoolKind, StorageDevice, Verdict};
use crate::{decider::Decider, Refusal, Refuse};

pub const MIN_INTERVAL_SECS: u32 = 15;
pub const DEFAULT_INTERVAL_SECS: u32 = 60;
pub const DEFAULT_SMART_INTERVAL_SECS: u32 = 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringConfig {
    pub enabled: bool,
    pub interval_secs: u32,
    pub smart_enabled: bool,
    pub smart_interval_secs: u32,
    pub databases_enabled: bool,
    /// The server credential database probes log in with, if any.
    pub database_credential: Option<uuid::Uuid>,
}

impl Default for MonitoringConfig {
    fn default() -> MonitoringConfig {
        MonitoringConfig {
            enabled: false,
            interval_secs: DEFAULT_INTERVAL_SECS,
            smart_enabled: true,
            smart_interval_secs: DEFAULT_SMART_INTERVAL_SECS,
            databases_enabled: true,
            database_credential: None,
        }
    }
}

/// Why a poll produced nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No session: connection refused, timed out, host key refused.
    Unreachable,
    /// A session, but the output could not be read.
    Collection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverrideAction {
    /// The attribute is shown but never judged.
    Ignore,
    /// Its current raw value is accepted: it is judged again only if it grows past it.
    AcceptCurrent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum MonitoringEvent {
    MonitoringConfigured {
        config: MonitoringConfig,
    },
    HostFactsChanged {
        at: DateTime<Utc>,
        facts: HostFacts,
    },
    /// The first failure of a streak; later failures of the same kind are not recorded again.
    CollectionFailed {
        at: DateTime<Utc>,
        failure: Failure,
        error: String,
    },
    CollectionRecovered {
        at: DateTime<Utc>,
    },
    /// A disk seen for the first time, with the cumulative counters it came with (the baseline
    /// their growth is measured from).
    DeviceDiscovered {
        at: DateTime<Utc>,
        device: StorageDevice,
        first_seen: BTreeMap<String, i64>,
    },
    DeviceVerdictChanged {
        at: DateTime<Utc>,
        serial: String,
        verdict: Verdict,
        reasons: Vec<String>,
    },
    DeviceRemoved {
        at: DateTime<Utc>,
        serial: String,
    },
    SmartAttributeOverridden {
        serial: String,
        attribute_id: String,
        action: OverrideAction,
        value: Option<i64>,
    },
    PoolChanged {
        at: DateTime<Utc>,
        pool: Pool,
    },
    PoolRemoved {
        at: DateTime<Utc>,
        kind: PoolKind,
        name: String,
    },
    ArrayChanged {
        at: DateTime<Utc>,
        array: Array,
    },
    ArrayRemoved {
        at: DateTime<Utc>,
        name: String,
    },
    /// A check's first result on this server, or a result of another status than the last.
    CheckStatusChanged {
        at: DateTime<Utc>,
        check_id: uuid::Uuid,
        status: CheckStatus,
        output: String,
    },
}

crate::domain_event!(
    MonitoringEvent,
    "server_monitoring",
    [
        MonitoringConfigured,
        HostFactsChanged,
        CollectionFailed,
        CollectionRecovered,
        DeviceDiscovered,
        DeviceVerdictChanged,
        DeviceRemoved,
        SmartAttributeOverridden,
        PoolChanged,
        PoolRemoved,
        ArrayChanged,
        ArrayRemoved,
        CheckStatusChanged,
    ]
);

#[derive(Clone, Debug)]
pub enum MonitoringCommand {
    Configure(MonitoringConfig),
    /// What a poll read: compared with the state, only the differences become events.
    Observe {
        at: DateTime<Utc>,
        facts: HostFacts,
        pools: Vec<Pool>,
        arrays: Vec<Array>,
    },
    /// What a SMART round read, awake disks only: a disk asleep is neither changed nor removed.
    ObserveDevices {
        at: DateTime<Utc>,
        devices: Vec<StorageDevice>,
        asleep: Vec<String>,
    },
    Fail {
        at: DateTime<Utc>,
        failure: Failure,
        error: String,
    },
    /// What a check's run said: a change of status is recorded, the same status again is not.
    ObserveCheck {
        at: DateTime<Utc>,
        check_id: uuid::Uuid,
        status: CheckStatus,
        output: String,
    },
    /// `current_value`: the attribute's raw value in the disk's latest reading (`None`: the disk
    /// has no such attribute).
    OverrideAttribute {
        serial: String,
        attribute_id: String,
        action: OverrideAction,
        current_value: Option<i64>,
    },
}

/// What the stream knows of one disk: enough to judge the next reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// The node it was found at (`/dev/sda`), to know it when it is asleep.
    pub name: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub first_seen: BTreeMap<String, i64>,
    pub accepted: BTreeMap<String, i64>,
    pub ignored: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitoringState {
    pub config: MonitoringConfig,
    pub facts: Option<HostFacts>,
    pub failing: Option<Failure>,
    pub pools: BTreeMap<(PoolKind, String), Pool>,
    pub arrays: BTreeMap<String, Array>,
    pub devices: BTreeMap<String, DeviceState>,
    /// Each check's last status on this server.
    pub checks: BTreeMap<uuid::Uuid, CheckStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitoringError {
    #[error("the interval must be at least {MIN_INTERVAL_SECS} seconds")]
    IntervalTooShort,
    #[error("the SMART interval must be at least the poll interval and at most a week")]
    SmartIntervalOutOfRange,
    #[error("no disk with serial {0} has been seen on this server")]
    UnknownDevice(String),
    #[error("disk {serial} has no attribute {attribute_id}")]
    UnknownAttribute { serial: String, attribute_id: String },
}

impl Refuse for MonitoringError {
    fn refusal(&self) -> Refusal {
        match self {
            MonitoringError::IntervalTooShort | MonitoringError::SmartIntervalOutOfRange => Refusal::Invalid,
            MonitoringError::UnknownDevice(_) | MonitoringError::UnknownAttribute { .. } => Refusal::NotFound,
        }
    }
}

/// Whether two readings of a pool differ in health, not merely in use.
fn pool_health(pool: &Pool) -> Pool {
    let mut health = pool.clone();
    (health.size_bytes, health.allocated_bytes, health.free_bytes) = (None, None, None);
    health.volumes.clear();
    if let Some(scan) = health.scan.as_mut() {
        scan.progress = None;
    }
    health
}

fn array_health(array: &Array) -> Array {
    Array { sync_progress: None, ..array.clone() }
}

pub struct Monitoring;

impl Decider for Monitoring {
    type Command = MonitoringCommand;
    type Event = MonitoringEvent;
    type State = MonitoringState;
    type Error = MonitoringError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        use MonitoringEvent as E;
        match command {
            MonitoringCommand::Configure(config) => {
                if config.interval_secs < MIN_INTERVAL_SECS {
                    return Err(MonitoringError::IntervalTooShort);
                }
                if config.smart_interval_secs < config.interval_secs || config.smart_interval_secs > 7 * 86_400 {
                    return Err(MonitoringError::SmartIntervalOutOfRange);
                }
                Ok(if *config == state.config {
                    vec![]
                } else {
                    vec![E::MonitoringConfigured { config: config.clone() }]
                })
            }
            MonitoringCommand::Observe { at, facts, pools, arrays } => {
                let mut events = Vec::new();
                if state.failing.is_some() {
                    events.push(E::CollectionRecovered { at: *at });
                }
                if state.facts.as_ref() != Some(facts) {
                    events.push(E::HostFactsChanged { at: *at, facts: facts.clone() });
                }
                let mut seen = BTreeSet::new();
                for pool in pools {
                    let key = (pool.kind, pool.name.clone());
                    if state.pools.get(&key).map(pool_health) != Some(pool_health(pool)) {
                        events.push(E::PoolChanged { at: *at, pool: pool.clone() });
                    }
                    seen.insert(key);
                }
                for ((_, name), pool) in state.pools.iter().filter(|(key, _)| !seen.contains(*key)) {
                    events.push(E::PoolRemoved { at: *at, kind: pool.kind, name: name.clone() });
                }
                for array in arrays {
                    if state.arrays.get(&array.name).map(array_health) != Some(array_health(array)) {
                        events.push(E::ArrayChanged { at: *at, array: array.clone() });
                    }
                }
                for name in state.arrays.keys().filter(|n| !arrays.iter().any(|a| &a.name == *n)) {
                    events.push(E::ArrayRemoved { at: *at, name: name.clone() });
                }
                Ok(events)
            }
            MonitoringCommand::ObserveDevices { at, devices, asleep } => {
                let mut events = Vec::new();
                for device in devices.iter().filter(|d| !d.serial.is_empty()) {
                    match state.devices.get(&device.serial) {
                        None => {
                            let first_seen = device.attributes.iter().map(|a| (a.id.clone(), a.raw)).collect();
                            events.push(E::DeviceDiscovered { at: *at, device: device.clone(), first_seen });
                        }
                        Some(known) if known.verdict != device.verdict || known.reasons != device.reasons => {
                            events.push(E::DeviceVerdictChanged {
                                at: *at,
                                serial: device.serial.clone(),
                                verdict: device.verdict,
                                reasons: device.reasons.clone(),
                            });
                        }
                        Some(_) => {}
                    }
                }
                let present = |serial: &String| devices.iter().any(|d| &d.serial == serial) || asleep.contains(serial);
                for serial in state.devices.keys().filter(|s| !present(s)) {
                    events.push(E::DeviceRemoved { at: *at, serial: serial.clone() });
                }
                Ok(events)
            }
            MonitoringCommand::Fail { at, failure, error } => Ok(if state.failing == Some(*failure) {
                vec![]
            } else {
                vec![E::CollectionFailed { at: *at, failure: *failure, error: error.clone() }]
            }),
            MonitoringCommand::ObserveCheck { at, check_id, status, output } => {
                Ok(if state.checks.get(check_id) == Some(status) {
                    vec![]
                } else {
                    vec![E::CheckStatusChanged {
                        at: *at,
                        check_id: *check_id,
                        status: *status,
                        output: output.clone(),
                    }]
                })
            }
            MonitoringCommand::OverrideAttribute { serial, attribute_id, action, current_value } => {
                let device = state.devices.get(serial).ok_or_else(|| MonitoringError::UnknownDevice(serial.clone()))?;
                let value = *current_value;
                if value.is_none() {
                    return Err(MonitoringError::UnknownAttribute {
                        serial: serial.clone(),
                        attribute_id: attribute_id.clone(),
                    });
                }
                let unchanged = match action {
                    OverrideAction::Ignore => device.ignored.contains(attribute_id),
                    OverrideAction::AcceptCurrent => device.accepted.get(attribute_id) == value.as_ref(),
                };
                Ok(if unchanged {
                    vec![]
                } else {
                    vec![E::SmartAttributeOverridden {
                        serial: serial.clone(),
                        attribute_id: attribute_id.clone(),
                        action: *action,
                        value: value.filter(|_| *action == OverrideAction::AcceptCurrent),
                    }]
                })
            }
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        use MonitoringEvent as E;
        match event {
            E::MonitoringConfigured { config } => state.config = config.clone(),
            E::HostFactsChanged { facts, .. } => state.facts = Some(facts.clone()),
            E::CollectionFailed { failure, .. } => state.failing = Some(*failure),
            E::CollectionRecovered { .. } => state.failing = None,
            E::DeviceDiscovered { device, first_seen, .. } => {
                state.devices.insert(
                    device.serial.clone(),
                    DeviceState {
                        name: device.name.clone(),
                        verdict: device.verdict,
                        reasons: device.reasons.clone(),
                        first_seen: first_seen.clone(),
                        ..DeviceState::default()
                    },
                );
            }
            E::DeviceVerdictChanged { serial, verdict, reasons, .. } => {
                if let Some(device) = state.devices.get_mut(serial) {
                    device.verdict = *verdict;
                    device.reasons = reasons.clone();
                }
            }
            E::DeviceRemoved { serial, .. } => {
                state.devices.remove(serial);
            }
            E::SmartAttributeOverridden { serial, attribute_id, action, value } => {
                if let Some(device) = state.devices.get_mut(serial) {
                    match (action, value) {
                        (OverrideAction::Ignore, _) => {
                            device.ignored.insert(attribute_id.clone());
                        }
                        (OverrideAction::AcceptCurrent, Some(value)) => {
                            device.ignored.remove(attribute_id);
                            device.accepted.insert(attribute_id.clone(), *value);
                        }
                        (OverrideAction::AcceptCurrent, None) => {}
                    }
                }
            }
            E::PoolChanged { pool, .. } => {
                state.pools.insert((pool.kind, pool.name.clone()), pool.clone());
            }
            E::PoolRemoved { kind, name, .. } => {
                state.pools.remove(&(*kind, name.clone()));
            }
            E::ArrayChanged { array, .. } => {
                state.arrays.insert(array.name.clone(), array.clone());
            }
            E::ArrayRemoved { name, .. } => {
                state.arrays.remove(name);
            }
            E::CheckStatusChanged { check_id, status, .. } => {
                state.checks.insert(*check_id, *status);
            }
        }
        state
    }
}
