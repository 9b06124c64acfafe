//! The monitoring part of the schema: a server's `monitoring` (configuration, status, facts,
//! the latest sample, series and hourly summaries, disks, pools, arrays, checks, changes) and
//! the mutations that configure it, poll now, override a SMART attribute, and make or remove
//! checks.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use juniper::{GraphQLObject, ID};
use unity_domain::{
    monitoring::{HostSample, HostSamplesEvent},
    DomainEvent,
};
use unity_projections::monitoring as read;
use uuid::Uuid;

use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{
        common::{id, parse_id},
        subscription::{live, Live},
        Context,
    },
};

mod checks;
mod hourly;
mod mutation;
mod types;

pub use checks::*;
pub use hourly::*;
pub use mutation::*;
pub use types::*;

/// The monitoring of a server (UNKNOWN status and defaults before it was ever configured).
pub async fn monitoring_of(ctx: &Context, server_id: Uuid) -> Result<ServerMonitoring, ApiError> {
    Ok(ServerMonitoring { server_id, row: read::monitored_server(ctx.state.store.pool(), server_id).await? })
}

/// The longest range of polls one query reads, and of hours.
const MAX_RANGE_DAYS: i64 = 31;
const MAX_HOURLY_RANGE_DAYS: i64 = 400;

/// Refuses a range that ends before it starts or spans more than `max_days`.
fn check_range(from: DateTime<Utc>, to: DateTime<Utc>, max_days: i64) -> Result<(), ApiError> {
    if to <= from {
        return Err(ApiError::bad_input("`to` must be after `from`"));
    }
    if to - from > Duration::days(max_days) {
        return Err(ApiError::bad_input(format!("at most {max_days} days at a time")));
    }
    Ok(())
}

/// Samples in `[from, to]`: each one (no `step`), or averaged per `step` seconds (CPU, memory
/// and load averaged; filesystems and interfaces the last sample's of each step). Where the raw
/// samples have expired, each hour's summary stands for its polls (its means, at the hour).
pub async fn metrics(
    ctx: &Context,
    server_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Option<i32>,
) -> Result<Vec<Sample>, ApiError> {
    let hourly = step.is_some_and(|s| s >= 3600);
    check_range(from, to, if hourly { MAX_HOURLY_RANGE_DAYS } else { MAX_RANGE_DAYS })?;
    if step.is_some_and(|s| !(15..=86_400).contains(&s)) {
        return Err(ApiError::bad_input("step must be between 15 and 86400 seconds"));
    }
    let mut samples = read::samples(ctx.state.store.pool(), server_id, from, to).await?;
    // Before the first raw sample (expired, or never taken): the summaries, if any.
    let first_raw = samples.first().map_or(to, |(at, _)| *at);
    if first_raw - from >= Duration::hours(1) {
        let summaries = read::summaries(ctx.state.store.pool(), server_id, from, first_raw).await?;
        let older: Vec<(DateTime<Utc>, HostSample)> = summaries
            .iter()
            .filter(|(hour, _)| *hour + Duration::hours(1) <= first_raw)
            .map(|(hour, summary)| (*hour, summary.mean_sample()))
            .collect();
        samples.splice(0..0, older);
    }
    let facts = read::monitored_server(ctx.state.store.pool(), server_id).await?.and_then(|r| r.facts);
    for (_, sample) in &mut samples {
        name_filesystems(sample, facts.as_ref());
    }
    let Some(step) = step else {
        return Ok(samples.iter().map(|(at, sample)| Sample::new(*at, sample)).collect());
    };
    let mut out: Vec<Sample> = Vec::new();
    let mut bucket: Vec<(DateTime<Utc>, HostSample)> = Vec::new();
    let mut bucket_start = None;
    for (at, sample) in samples {
        let start = from + Duration::seconds((at - from).num_seconds() / i64::from(step) * i64::from(step));
        if bucket_start.is_some_and(|s| s != start) {
            out.push(average(bucket_start.unwrap_or(start), &std::mem::take(&mut bucket)));
        }
        bucket_start = Some(start);
        bucket.push((at, sample));
    }
    if let Some(start) = bucket_start {
        out.push(average(start, &bucket));
    }
    Ok(out)
}

fn average(start: DateTime<Utc>, samples: &[(DateTime<Utc>, HostSample)]) -> Sample {
    let Some((_, last)) = samples.last() else { return Sample::new(start, &HostSample::default()) };
    if samples.len() == 1 {
        return Sample::new(start, last);
    }
    let n = samples.len() as u64;
    let mean = |f: &dyn Fn(&HostSample) -> u64| samples.iter().map(|(_, s)| f(s)).sum::<u64>() / n;
    let mut merged = last.clone();
    merged.memory.used = mean(&|s| s.memory.used);
    merged.memory.available = mean(&|s| s.memory.available);
    merged.memory.swap_used = mean(&|s| s.memory.swap_used);
    for i in 0..3 {
        merged.load[i] = mean(&|s| u64::from(s.load[i])) as u32;
    }
    let cpus: Vec<_> = samples.iter().filter_map(|(_, s)| s.cpu).collect();
    if !cpus.is_empty() {
        let m = cpus.len() as u32;
        let avg = |f: &dyn Fn(&unity_domain::monitoring::CpuShares) -> u16| {
            (cpus.iter().map(|c| u32::from(f(c))).sum::<u32>() / m) as u16
        };
        merged.cpu = Some(unity_domain::monitoring::CpuShares {
            user: avg(&|c| c.user),
            nice: avg(&|c| c.nice),
            system: avg(&|c| c.system),
            iowait: avg(&|c| c.iowait),
            irq: avg(&|c| c.irq),
            softirq: avg(&|c| c.softirq),
            steal: avg(&|c| c.steal),
            guest: avg(&|c| c.guest),
            idle: avg(&|c| c.idle),
        });
    }
    Sample::new(start, &merged)
}

/// The hourly summaries of the hours starting in `[from, to]` (at most 400 days).
pub async fn hourly(
    ctx: &Context,
    server_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<HourlySummary>, ApiError> {
    check_range(from, to, MAX_HOURLY_RANGE_DAYS)?;
    let summaries = read::summaries(ctx.state.store.pool(), server_id, from, to).await?;
    Ok(summaries.iter().map(|(hour, summary)| HourlySummary::new(*hour, summary)).collect())
}

#[derive(GraphQLObject)]
/// A sample of one server, as its poll is recorded.
pub struct ServerSample {
    pub server_id: ID,
    pub sample: Sample,
}

/// The most servers one `serverSamples` subscription follows.
const MAX_FOLLOWED: usize = 100;

/// Each sample of `server_ids` recorded from now on.
pub async fn server_samples(
    ctx: &Context,
    principal: &Principal,
    server_ids: Vec<ID>,
) -> Result<Live<ServerSample>, ApiError> {
    if server_ids.is_empty() || server_ids.len() > MAX_FOLLOWED {
        return Err(ApiError::bad_input(format!("name 1 to {MAX_FOLLOWED} servers")));
    }
    let ids: Vec<Uuid> = server_ids.iter().map(|i| parse_id("server id", i)).collect::<Result<_, _>>()?;
    // Filesystems are named from each server's facts as they are when the subscription starts.
    let mut facts = HashMap::new();
    for &server in &ids {
        facts.insert(server, read::monitored_server(ctx.state.store.pool(), server).await?.and_then(|r| r.facts));
    }
    let stream = live(ctx, principal.role).filter_map(move |(e, _)| {
        let sampled = (e.stream_type == HostSamplesEvent::STREAM_TYPE)
            .then(|| HostSamplesEvent::from_parts(&e.event_type, e.payload).ok())
            .flatten();
        let sample = match sampled {
            Some(HostSamplesEvent::ServerSampled { server_id, at, mut sample }) if ids.contains(&server_id) => {
                name_filesystems(&mut sample, facts.get(&server_id).and_then(Option::as_ref));
                Some(Ok(ServerSample { server_id: id(server_id), sample: Sample::new(at, &sample) }))
            }
            _ => None,
        };
        futures::future::ready(sample)
    });
    Ok(Box::pin(stream))
}
