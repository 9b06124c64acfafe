//! The NATS relay: publishes every committed event to JetStream in store order, at least once.
//!
//! Exactly one relay is active per JetStream stream (a PostgreSQL advisory lock held on a
//! dedicated connection); the others stand by. Where to resume is decided by JetStream itself:
//! the stream's last message names the last event that made it, so a relay that died between
//! publishing and checkpointing republishes nothing. Every message also carries
//! `Nats-Expected-Last-Sequence`, so if one publish in a pipelined batch is lost, every later one
//! is refused rather than stored out of order; the relay then resynchronises and carries on.
//! `Nats-Msg-Id` (the event id) lets JetStream drop any duplicate within its window as well.

use std::time::Duration;

use async_nats::{
    jetstream::{
        self,
        context::GetStreamErrorKind,
        message::PublishMessage,
        stream::{self, LastRawMessageErrorKind},
        ErrorCode,
    },
    HeaderMap,
};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    lease::{checkpoint, set_checkpoint, Lease},
    store::{read_after, Cursor, EventStore, RecordedEvent, StoreError},
    wakeup::Backoff,
};

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// JetStream stream name (`UNITY_NATS_STREAM`).
    pub stream_name: String,
    /// Subject prefix (`UNITY_NATS_SUBJECT_PREFIX`); subjects are `<prefix>.<stream_type>.<event_type>`.
    pub subject_prefix: String,
    pub batch_size: i64,
    /// How long to wait for JetStream's answers.
    pub timeout: Duration,
    /// Polling interval when no wake-up arrives.
    pub poll_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            stream_name: "UNITY_EVENTS".into(),
            subject_prefix: "unity.events".into(),
            batch_size: 500,
            timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("another relay holds the lease")]
    NotLeader,
}

impl From<sqlx::Error> for RelayError {
    fn from(e: sqlx::Error) -> RelayError {
        RelayError::Store(e.into())
    }
}

fn nats_err(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// Where the next publish goes: after `cursor`, expecting JetStream's last sequence to be `sequence`.
#[derive(Clone, Copy, Debug)]
struct Resume {
    cursor: Cursor,
    sequence: u64,
}

pub struct NatsRelay {
    store: EventStore,
    jetstream: jetstream::Context,
    config: RelayConfig,
    /// Held while this relay is the active one.
    lease: Lease,
    resume: Option<Resume>,
}

impl NatsRelay {
    /// Connects the relay to a JetStream context, creating the stream if it does not exist.
    pub async fn new(
        store: EventStore,
        client: async_nats::Client,
        config: RelayConfig,
    ) -> Result<NatsRelay, RelayError> {
        let jetstream = jetstream::context::ContextBuilder::new().timeout(config.timeout).build(client);
        jetstream.get_or_create_stream(stream_config(&config)).await.map_err(nats_err)?;
        let lease = Lease::new(format!("nats-relay:{}", config.stream_name));
        Ok(NatsRelay { store, jetstream, config, lease, resume: None })
    }

    /// Tries to become the active relay. Returns whether this relay holds the lease now.
    pub async fn acquire_lease(&mut self) -> Result<bool, RelayError> {
        if !self.lease.held() {
            // A relay that (re)gains the lease resynchronises with JetStream first.
            self.resume = None;
        }
        Ok(self.lease.acquire(self.store.pool()).await?)
    }

    /// Publishes the next batch and moves the checkpoint. Returns how many events went out.
    pub async fn run_once(&mut self) -> Result<usize, RelayError> {
        let published = self.publish_batch().await?;
        if let Some(last) = published.last() {
            self.commit_checkpoint(last.cursor()).await?;
        }
        Ok(published.len())
    }

    /// Publishes the next batch and waits for every acknowledgement, without checkpointing.
    /// (Split from [`NatsRelay::run_once`] so tests can kill a relay in between.)
    pub async fn publish_batch(&mut self) -> Result<Vec<RecordedEvent>, RelayError> {
        if !self.acquire_lease().await? {
            return Err(RelayError::NotLeader);
        }
        let resume = match self.resume {
            Some(r) => r,
            None => self.resynchronise().await?,
        };
        let lease = self.lease.connection().expect("lease held");
        let events = match read_after(lease, resume.cursor, self.config.batch_size).await {
            Ok(events) => events,
            Err(e) => {
                self.lease.release();
                return Err(e.into());
            }
        };
        let mut acks = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let message = self.message(event).expected_last_sequence(resume.sequence + i as u64);
            let subject = format!("{}.{}.{}", self.config.subject_prefix, event.stream_type, event.event_type);
            match self.jetstream.send_publish(subject, message).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    self.resume = None;
                    return Err(nats_err(e));
                }
            }
        }
        let mut sequence = resume.sequence;
        for ack in acks {
            match ack.await {
                Ok(ack) => sequence = ack.sequence,
                Err(e) => {
                    self.resume = None;
                    return Err(nats_err(e));
                }
            }
        }
        if let Some(last) = events.last() {
            self.resume = Some(Resume { cursor: last.cursor(), sequence });
        }
        Ok(events)
    }

    /// Records progress; done on the lease's connection, so a relay that lost its lease cannot.
    pub async fn commit_checkpoint(&mut self, cursor: Cursor) -> Result<(), RelayError> {
        if !self.lease.commit(cursor).await? {
            return Err(RelayError::NotLeader);
        }
        Ok(())
    }

    /// Finds where to resume: after the event in JetStream's last message, or after the
    /// checkpoint if that is further (the stream was purged) or the stream is empty.
    async fn resynchronise(&mut self) -> Result<Resume, RelayError> {
        let mut stream = self.stream().await?;
        let last_sequence = stream.info().await.map_err(nats_err)?.state.last_sequence;
        let mut from_stream = None;
        if last_sequence > 0 {
            match stream.get_raw_message(last_sequence).await {
                Ok(message) => {
                    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
                    let event_id = header("Nats-Msg-Id").and_then(|v| v.parse::<uuid::Uuid>().ok());
                    let stream_id = header("Unity-Stream-Id").and_then(|v| v.parse::<unity_domain::StreamId>().ok());
                    let version = header("Unity-Stream-Version").and_then(|v| v.parse::<i64>().ok());
                    let (Some(event_id), Some(stream_id), Some(version)) = (event_id, stream_id, version) else {
                        return Err(RelayError::Nats(format!(
                            "the last message in stream {} is not a Unity event (no event id, stream and version in its headers); the stream must carry Unity's events only",
                            self.config.stream_name
                        )));
                    };
                    let cursor = self.store.cursor_of(&stream_id, version, event_id).await?;
                    if cursor.is_none() {
                        return Err(RelayError::Nats(format!(
                            "the last message in stream {} is event {event_id}, which this database does not hold: another Unity database publishes to the same stream",
                            self.config.stream_name
                        )));
                    }
                    from_stream = cursor;
                }
                // Purged or expired: the checkpoint says where this relay got to.
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
                // Anything else is not knowledge: guessing from the checkpoint could republish.
                Err(e) => return Err(nats_err(e)),
            }
        }
        let checkpoint = self.checkpoint().await?;
        let cursor = from_stream.map_or(checkpoint, |c| c.max(checkpoint));
        let resume = Resume { cursor, sequence: last_sequence };
        self.resume = Some(resume);
        Ok(resume)
    }

    /// The stream, created again if JetStream lost it (a NATS restart without its storage, an
    /// operator deleting it): the new stream starts empty, so publishing resumes after the
    /// checkpoint, with every event JetStream had not acknowledged, in order.
    async fn stream(&self) -> Result<stream::Stream, RelayError> {
        match self.jetstream.get_stream(&self.config.stream_name).await {
            Ok(stream) => Ok(stream),
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                tracing::warn!(
                    stream = %self.config.stream_name,
                    "The JetStream stream is gone; creating it again and publishing from the first event it had not acknowledged."
                );
                self.jetstream.get_or_create_stream(stream_config(&self.config)).await.map_err(nats_err)
            }
            Err(e) => Err(nats_err(e)),
        }
    }

    /// Moves the checkpoint to `cursor` without publishing what lies before it (for a new stream
    /// that should carry only new events, such as a benchmark's).
    pub async fn skip_to(&self, cursor: Cursor) -> Result<(), RelayError> {
        Ok(set_checkpoint(self.store.pool(), self.lease.name(), cursor).await?)
    }

    pub async fn checkpoint(&self) -> Result<Cursor, RelayError> {
        Ok(checkpoint(self.store.pool(), self.lease.name()).await?)
    }

    fn message(&self, event: &RecordedEvent) -> PublishMessage {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        headers.insert("Unity-Global-Position", event.global_position.to_string().as_str());
        headers.insert("Unity-Stream-Id", event.stream_id.as_str());
        headers.insert("Unity-Stream-Version", event.stream_version.to_string().as_str());
        headers.insert("Unity-Event-Type", event.event_type.as_str());
        PublishMessage::build().headers(headers).payload(envelope(event).into())
    }

    /// Runs until `shutdown` turns true: standing by while another relay is active, publishing
    /// when woken or every poll interval, backing off while NATS or PostgreSQL are away.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut wakeups = self.store.wakeup().subscribe();
        let mut backoff = Backoff::default();
        let mut was_leader = false;
        while !*shutdown.borrow() {
            let pause = match self.run_once().await {
                Ok(n) => {
                    if !was_leader {
                        tracing::info!(stream = %self.config.stream_name, "This relay is now the active one.");
                        was_leader = true;
                    }
                    backoff.reset();
                    if n > 0 {
                        continue;
                    }
                    None
                }
                Err(RelayError::NotLeader) => Some(Duration::from_secs(5)),
                Err(e) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = %e, retry_in = ?pause, "Relaying events to NATS failed; they wait in PostgreSQL.");
                    Some(pause)
                }
            };
            wakeups.idle(&mut shutdown, pause, self.config.poll_interval).await;
        }
    }
}

fn stream_config(config: &RelayConfig) -> stream::Config {
    stream::Config {
        name: config.stream_name.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// The message body: the event envelope of DESIGN.md §3. Payloads hold secrets only as
/// ciphertext references, so the envelope is safe to publish as it is.
pub fn envelope(event: &RecordedEvent) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "stream_type": event.stream_type,
        "stream_version": event.stream_version,
        "global_position": event.global_position,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "payload": event.payload,
        "metadata": event.metadata,
        "hash": hex::encode(&event.hash),
    }))
    .expect("envelopes serialize")
}
