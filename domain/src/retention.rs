//! Retention classes: which events may expire, and into which bucket each stream's events fall.
//!
//! Everything that says who did what (credentials, identity, servers, certificates, alerts,
//! containers, the audit itself) is [`RetentionClass::Permanent`] and never expires. High-volume
//! observations expire by bucket: a stream of an expiring class lives wholly in the bucket named
//! by its id's UUIDv7 time (one stream per server per day of samples, say), so a bucket's
//! removal takes whole streams and never cuts one in half, and the store's
//! `(stream_id, stream_version)` key stays a key inside each bucket.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainEvent, StreamId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionClass {
    /// Never expires.
    Permanent,
    /// Metric samples and other raw observations: one bucket per UTC day, kept for
    /// `UNITY_METRICS_RETENTION_DAYS`.
    Samples,
    /// Longer-lived roll-ups of samples (hourly per server): one bucket per UTC month, kept for
    /// `UNITY_SUMMARY_RETENTION_DAYS`, so history and replay outlive the samples.
    Summaries,
}

/// Stream types of each expiring class; every other stream type is permanent. Monitoring writes
/// these (issue 14); the store needs to know them before any such event exists.
pub const SAMPLE_STREAM_TYPES: &[&str] = &["host_samples"];
pub const SUMMARY_STREAM_TYPES: &[&str] = &["host_summaries"];

impl RetentionClass {
    pub const ALL: [RetentionClass; 3] =
        [RetentionClass::Permanent, RetentionClass::Samples, RetentionClass::Summaries];
    pub const EXPIRING: [RetentionClass; 2] = [RetentionClass::Samples, RetentionClass::Summaries];

    pub fn of(stream_type: &str) -> RetentionClass {
        if SAMPLE_STREAM_TYPES.contains(&stream_type) {
            RetentionClass::Samples
        } else if SUMMARY_STREAM_TYPES.contains(&stream_type) {
            RetentionClass::Summaries
        } else {
            RetentionClass::Permanent
        }
    }

    /// The value stored in `events.retention_class` (a list-partition key).
    pub fn code(self) -> i16 {
        match self {
            RetentionClass::Permanent => 0,
            RetentionClass::Samples => 1,
            RetentionClass::Summaries => 2,
        }
    }

    pub fn from_code(code: i16) -> Option<RetentionClass> {
        RetentionClass::ALL.into_iter().find(|c| c.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            RetentionClass::Permanent => "permanent",
            RetentionClass::Samples => "samples",
            RetentionClass::Summaries => "summaries",
        }
    }

    pub fn from_name(name: &str) -> Option<RetentionClass> {
        RetentionClass::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn expires(self) -> bool {
        self != RetentionClass::Permanent
    }

    /// The bucket that holds every event of `stream`: `None` for the permanent class; for an
    /// expiring class the first day of the day or month of the stream id's UUIDv7 time.
    pub fn bucket_of(self, stream: &StreamId) -> Result<Option<NaiveDate>, String> {
        if !self.expires() {
            return Ok(None);
        }
        let micros = stream
            .id()
            .get_timestamp()
            .filter(|_| stream.id().get_version_num() == 7)
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs as i64 * 1_000_000 + i64::from(nanos / 1_000)
            })
            .ok_or_else(|| {
                format!("{stream}: streams of class {} need a UUIDv7 id (it names their bucket)", self.name())
            })?;
        let day =
            DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("{stream}: time out of range"))?.date_naive();
        Ok(Some(self.bucket_start(day)))
    }

    /// The start of the bucket containing `day`.
    pub fn bucket_start(self, day: NaiveDate) -> NaiveDate {
        match self {
            RetentionClass::Summaries => day.with_day(1).expect("day 1 exists"),
            _ => day,
        }
    }

    /// The day after the bucket starting at `start` ends.
    pub fn bucket_end(self, start: NaiveDate) -> NaiveDate {
        match self {
            RetentionClass::Summaries => start + Months::new(1),
            _ => start + Days::new(1),
        }
    }

    /// Whether every event the bucket starting at `start` can hold is older than `keep_days` days
    /// before `today`.
    pub fn bucket_expired(self, start: NaiveDate, today: NaiveDate, keep_days: u32) -> bool {
        self.expires() && self.bucket_end(start) + Days::new(u64::from(keep_days)) <= today
    }
}

/// The permanent stream that records the removal of one bucket: its id is derived from the
/// class and the bucket, so a bucket has one such stream and two runs cannot both record it.
pub fn removal_stream(class: RetentionClass, bucket: NaiveDate) -> StreamId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6c1b_2f0e_5d4a_4e57_9b1e_2a7d_0f3c_8e41);
    let name = format!("{}/{}", class.name(), bucket.format("%Y-%m-%d"));
    StreamId::new(RetentionEvent::STREAM_TYPE, Uuid::new_v5(&NAMESPACE, name.as_bytes()))
}

/// The last event of one stream a removal takes, as it stands before the removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedStream {
    pub stream_id: String,
    pub version: i64,
    /// Hex.
    pub hash: String,
}

/// What a removal takes, recorded before it happens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketContents {
    /// [`RetentionClass::name`] of an expiring class.
    pub class: String,
    pub bucket: NaiveDate,
    /// Sorted by stream id (bytewise).
    pub streams: Vec<RemovedStream>,
    pub events: i64,
    /// Hex SHA-256 over the hashes of the bucket's events, concatenated in log order.
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum RetentionEvent {
    /// Written before the removal: exactly what will go. Written again if the bucket changed
    /// before the removal ran (the newest record is the one removed by).
    BucketRemovalRecorded(BucketContents),
    /// The bucket is gone, as recorded by the event `record`; `archive` names the file its
    /// events were written to, if any.
    BucketRemoved { record: Uuid, events: i64, archive: Option<String> },
}
crate::domain_event!(RetentionEvent, "retention", [BucketRemovalRecorded, BucketRemoved]);

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Timestamp;

    fn v7_at(secs: u64) -> Uuid {
        Uuid::new_v7(Timestamp::from_unix(uuid::NoContext, secs, 0))
    }

    #[test]
    fn classes_follow_stream_types() {
        assert_eq!(RetentionClass::of("host_samples"), RetentionClass::Samples);
        assert_eq!(RetentionClass::of("host_summaries"), RetentionClass::Summaries);
        assert_eq!(RetentionClass::of("ssh_key"), RetentionClass::Permanent);
        for class in RetentionClass::ALL {
            assert_eq!(RetentionClass::from_code(class.code()), Some(class));
            assert_eq!(RetentionClass::from_name(class.name()), Some(class));
        }
    }

    #[test]
    fn a_stream_falls_in_the_bucket_of_its_id_time() {
        // 2026-12-02T23:59:59Z
        let s = StreamId::new("host_samples", v7_at(1_796_255_999));
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        assert_eq!(RetentionClass::Samples.bucket_of(&s), Ok(Some(day)));
        assert_eq!(RetentionClass::Summaries.bucket_of(&s), Ok(Some(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())));
        assert_eq!(RetentionClass::Permanent.bucket_of(&s), Ok(None));
        let v4 = StreamId::new("host_samples", Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef));
        assert!(RetentionClass::Samples.bucket_of(&v4).unwrap_err().contains("UUIDv7"));
    }

    #[test]
    fn a_bucket_expires_once_all_it_can_hold_is_older_than_the_retention() {
        let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        // Samples of 1 November, kept 30 days: the last of them (23:59) is 30 days old on the
        // 2nd of December.
        assert!(!RetentionClass::Samples.bucket_expired(d(11, 1), d(12, 1), 30));
        assert!(RetentionClass::Samples.bucket_expired(d(11, 1), d(12, 2), 30));
        assert!(!RetentionClass::Summaries.bucket_expired(d(11, 1), d(12, 30), 30));
        assert!(RetentionClass::Summaries.bucket_expired(d(11, 1), d(12, 31), 30));
        assert!(!RetentionClass::Permanent.bucket_expired(d(1, 1), d(12, 31), 0));
    }
}
