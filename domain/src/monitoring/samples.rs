//! The `host_samples` streams: one per server per UTC day, in the samples retention class, so a
//! day of a server's samples expires as a whole (`crate::retention`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CheckResult, HostSample, StorageDevice};
use crate::StreamId;

pub const HOST_SAMPLES: &str = "host_samples";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum HostSamplesEvent {
    /// One poll: every number it read. `at` is when Unity read the output.
    ServerSampled { server_id: Uuid, at: DateTime<Utc>, sample: HostSample },
    /// One SMART round: each awake disk as read (temperatures, counters), on SMART's own cadence.
    DevicesRead { server_id: Uuid, at: DateTime<Utc>, devices: Vec<StorageDevice> },
    /// One run of a check on the server, on the check's own cadence.
    CheckRan { server_id: Uuid, check_id: Uuid, at: DateTime<Utc>, result: CheckResult },
}

crate::domain_event!(HostSamplesEvent, "host_samples", [ServerSampled, DevicesRead, CheckRan]);

/// The stream of `server_id`'s samples on `day`: a UUIDv7 whose time is the day's first
/// millisecond (so retention files it under that day) and whose other bits are the server id's
/// own, so every collector names the same stream without looking it up.
pub fn samples_stream(server_id: Uuid, day: NaiveDate) -> StreamId {
    let millis = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0).max(0) as u64;
    let bytes = server_id.as_bytes();
    let mut rest = [0u8; 10];
    rest.copy_from_slice(&bytes[6..16]);
    StreamId::new(HOST_SAMPLES, uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid())
}
