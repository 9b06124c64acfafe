//! Hourly summaries: each finished hour of a server's samples rolled up onto its month's
//! `host_summaries` stream, so history and charts outlive the raw samples' retention.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use unity_domain::{
    monitoring::{samples_stream, summaries_stream, HostSample, HostSamplesEvent, HostSummariesEvent, HourSummary},
    EventMetadata, StreamId,
};
use uuid::Uuid;

use super::{MonitoringCommands, Result};
use crate::store::{ExpectedVersion, NewEvent, StoreError, StreamAppend};

/// An hour is summarized once this long after its end, so that its last polls are in.
pub const SETTLE: Duration = Duration::minutes(2);
/// Days of samples one call reads at most (days without samples cost one look and do not
/// count): a server that was never summarized, or a process that was down for a long time, is
/// caught up over several calls.
const DAYS_PER_CALL: usize = 7;

impl MonitoringCommands {
    /// Summarizes the finished hours of `server_id` that have no summary yet, in order: after
    /// the last summarized hour, or from `now − lookback` for a server never summarized. Hours
    /// without polls get no summary. Returns how many hours it summarized; another process
    /// summarizing the same server at the same time makes it stop (the other goes on).
    pub async fn summarize(
        &self,
        server_id: Uuid,
        now: DateTime<Utc>,
        lookback: Duration,
        metadata: &EventMetadata,
    ) -> Result<usize> {
        let hour = |t: DateTime<Utc>| t.duration_trunc(Duration::hours(1)).unwrap_or(t);
        let last_finished = hour(now - SETTLE - Duration::hours(1));
        let this_month = summaries_stream(server_id, now.date_naive());
        let last_month = summaries_stream(server_id, first_of_previous_month(now.date_naive()));
        let mut heads: BTreeMap<StreamId, i64> = BTreeMap::new();
        let mut last_summarized = None;
        for stream in [this_month, last_month] {
            let last = self.store.last_event(&stream).await?;
            heads.insert(stream, last.as_ref().map_or(0, |e| e.stream_version));
            if let (None, Some(event)) = (last_summarized, last) {
                let HostSummariesEvent::HourSummarized { hour, .. } = event.decode::<HostSummariesEvent>()?;
                last_summarized = Some(hour);
            }
        }
        let start = last_summarized.map_or_else(|| hour(now - lookback), |h| h + Duration::hours(1));
        let mut summarized = 0;
        let mut day = start.date_naive();
        let mut days_read = 0;
        while day <= last_finished.date_naive() && days_read < DAYS_PER_CALL {
            let samples = self.store.read_stream(&samples_stream(server_id, day).to_string(), None).await?;
            days_read += usize::from(!samples.is_empty());
            let mut hours: BTreeMap<DateTime<Utc>, Vec<HostSample>> = BTreeMap::new();
            for event in samples {
                if let Ok(HostSamplesEvent::ServerSampled { at, sample, .. }) = event.decode::<HostSamplesEvent>() {
                    if at >= start && hour(at) <= last_finished {
                        hours.entry(hour(at)).or_default().push(sample);
                    }
                }
            }
            let events: Vec<HostSummariesEvent> = hours
                .iter()
                .filter_map(|(hour, polls)| {
                    let summary = HourSummary::of(polls)?;
                    Some(HostSummariesEvent::HourSummarized { server_id, hour: *hour, summary })
                })
                .collect();
            if !events.is_empty() {
                let stream = summaries_stream(server_id, day);
                let version = match heads.get(&stream) {
                    Some(v) => *v,
                    None => self.store.last_event(&stream).await?.map_or(0, |e| e.stream_version),
                };
                let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version) };
                let append = StreamAppend {
                    stream_id: stream.clone(),
                    expected,
                    events: NewEvent::from_domain_events(&events, metadata),
                };
                match self.store.append(vec![append]).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict { .. }) => return Ok(summarized),
                    Err(e) => return Err(e.into()),
                }
                heads.insert(stream, version + events.len() as i64);
                summarized += events.len();
            }
            day = day.succ_opt().unwrap_or(day);
        }
        Ok(summarized)
    }
}

fn first_of_previous_month(day: NaiveDate) -> NaiveDate {
    day.checked_sub_months(chrono::Months::new(1)).unwrap_or(day)
}
