//! Command handling: load a stream, fold it, decide, append with the version that was read, and
//! on a conflict start again from fresh state.

use unity_domain::{Decider, DomainEvent, EventMetadata, StreamId};

use crate::store::{Appended, DecodeError, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The domain said no.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept winning the race; the caller may try again.
    #[error("the stream kept changing underneath this command ({0})")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The state of one aggregate and the version it was read at.
pub async fn load<D: Decider>(
    store: &EventStore,
    stream_id: &StreamId,
) -> Result<(D::State, i64), CommandError<D::Error>> {
    let events = store.read_stream(&stream_id.to_string(), None).await?;
    let version = events.last().map_or(0, |e| e.stream_version);
    let mut state = D::State::default();
    for event in &events {
        state = D::evolve(state, &event.decode::<D::Event>()?);
    }
    Ok((state, version))
}

pub const MAX_ATTEMPTS: usize = 5;

/// Runs a command against one stream. Returns the new events (empty when the command changed
/// nothing) and, if anything was appended, where.
/// What `execute` returns: the events decided and where they landed (`None`: nothing to append).
pub type Executed<D> = Result<(Vec<<D as Decider>::Event>, Option<Appended>), CommandError<<D as Decider>::Error>>;

#[tracing::instrument(name = "command", skip_all, fields(stream = %stream_id))]
pub async fn execute<D: Decider>(
    store: &EventStore,
    stream_id: &StreamId,
    command: &D::Command,
    metadata: &EventMetadata,
) -> Executed<D> {
    let mut last_conflict = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let (state, version) = load::<D>(store, stream_id).await?;
        let events = D::decide(command, &state).map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok((events, None));
        }
        let append = StreamAppend {
            stream_id: stream_id.clone(),
            expected: if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(version) },
            events: NewEvent::from_domain_events(&events, metadata),
        };
        match store.append(vec![append]).await {
            Ok(appended) => return Ok((events, Some(appended))),
            Err(StoreError::Conflict { stream_id, .. }) => last_conflict = stream_id,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommandError::Contended(last_conflict))
}

/// The stream id of a domain event type's aggregate.
pub fn stream_of<E: DomainEvent>(id: uuid::Uuid) -> StreamId {
    StreamId::new(E::STREAM_TYPE, id)
}
