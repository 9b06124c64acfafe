//! Monitoring commands: a poll recorded as one transaction (its sample on the server's stream of
//! the day, and whatever changed on its `server_monitoring` stream), SMART rounds, failures,
//! configuration and overrides; hourly summaries (`summaries`); and `schedule`, which
//! collectors process polls which server.

use chrono::{DateTime, Utc};
use unity_domain::{
    monitoring::{
        samples_stream, Check, CheckCommand, CheckDefinition, CheckError, CheckEvent, CheckResult, HostSample,
        HostSamplesEvent, Monitoring, MonitoringCommand, MonitoringError, MonitoringEvent, MonitoringState,
        StorageDevice,
    },
    Decider, EventMetadata,
};
use uuid::Uuid;

pub mod schedule;
mod summaries;

pub use summaries::SETTLE;

use crate::{
    handler::{execute, load, stream_of, CommandError, MAX_ATTEMPTS},
    store::{Appended, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend},
};

pub type Result<T> = std::result::Result<T, CommandError<MonitoringError>>;

#[derive(Clone)]
pub struct MonitoringCommands {
    store: EventStore,
}

impl MonitoringCommands {
    pub fn new(store: EventStore) -> MonitoringCommands {
        MonitoringCommands { store }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub async fn state(&self, server_id: Uuid) -> Result<MonitoringState> {
        Ok(load::<Monitoring>(&self.store, &stream_of::<MonitoringEvent>(server_id)).await?.0)
    }

    /// Runs a command on the server's `server_monitoring` stream.
    pub async fn command(
        &self,
        server_id: Uuid,
        command: MonitoringCommand,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        Ok(execute::<Monitoring>(&self.store, &stream_of::<MonitoringEvent>(server_id), &command, metadata).await?.1)
    }

    /// One poll: the sample, and the changes `observe` finds against the server's state, in one
    /// transaction, so a change is never recorded without the sample that showed it.
    pub async fn record_poll(
        &self,
        server_id: Uuid,
        at: DateTime<Utc>,
        sample: HostSample,
        observe: MonitoringCommand,
        metadata: &EventMetadata,
    ) -> Result<(Vec<MonitoringEvent>, Appended)> {
        let sampled = HostSamplesEvent::ServerSampled { server_id, at, sample };
        self.record_with(server_id, samples_stream(server_id, at.date_naive()), sampled, observe, metadata).await
    }

    /// One SMART round: the readings as samples, and the disks' changes on the server's stream.
    pub async fn record_devices(
        &self,
        server_id: Uuid,
        at: DateTime<Utc>,
        devices: Vec<StorageDevice>,
        asleep: Vec<String>,
        metadata: &EventMetadata,
    ) -> Result<(Vec<MonitoringEvent>, Appended)> {
        let observe = MonitoringCommand::ObserveDevices { at, devices: devices.clone(), asleep };
        let read = HostSamplesEvent::DevicesRead { server_id, at, devices };
        self.record_with(server_id, samples_stream(server_id, at.date_naive()), read, observe, metadata).await
    }

    /// One run of a check: the result as a sample, and a change of its status on the server's
    /// stream, in one transaction.
    pub async fn record_check(
        &self,
        server_id: Uuid,
        check_id: Uuid,
        at: DateTime<Utc>,
        result: CheckResult,
        metadata: &EventMetadata,
    ) -> Result<(Vec<MonitoringEvent>, Appended)> {
        let observe =
            MonitoringCommand::ObserveCheck { at, check_id, status: result.status, output: result.output.clone() };
        let ran = HostSamplesEvent::CheckRan { server_id, check_id, at, result };
        self.record_with(server_id, samples_stream(server_id, at.date_naive()), ran, observe, metadata).await
    }

    /// Creates a check (its id is in the definition).
    pub async fn create_check(
        &self,
        definition: CheckDefinition,
        metadata: &EventMetadata,
    ) -> std::result::Result<Option<Appended>, CommandError<CheckError>> {
        let stream = stream_of::<CheckEvent>(definition.check_id);
        Ok(execute::<Check>(&self.store, &stream, &CheckCommand::Create(definition), metadata).await?.1)
    }

    pub async fn delete_check(
        &self,
        check_id: Uuid,
        metadata: &EventMetadata,
    ) -> std::result::Result<Option<Appended>, CommandError<CheckError>> {
        Ok(execute::<Check>(&self.store, &stream_of::<CheckEvent>(check_id), &CheckCommand::Delete, metadata).await?.1)
    }

    async fn record_with(
        &self,
        server_id: Uuid,
        samples: unity_domain::StreamId,
        sample: HostSamplesEvent,
        observe: MonitoringCommand,
        metadata: &EventMetadata,
    ) -> Result<(Vec<MonitoringEvent>, Appended)> {
        let stream = stream_of::<MonitoringEvent>(server_id);
        let mut last_conflict = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = load::<Monitoring>(&self.store, &stream).await?;
            let changes = Monitoring::decide(&observe, &state).map_err(CommandError::Rejected)?;
            let mut appends = vec![StreamAppend {
                stream_id: samples.clone(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::from_domain(&sample, metadata)],
            }];
            if !changes.is_empty() {
                appends.push(StreamAppend {
                    stream_id: stream.clone(),
                    expected: if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version) },
                    events: NewEvent::from_domain_events(&changes, metadata),
                });
            }
            match self.store.append(appends).await {
                Ok(appended) => return Ok((changes, appended)),
                Err(StoreError::Conflict { stream_id, .. }) => last_conflict = stream_id,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(last_conflict))
    }
}
