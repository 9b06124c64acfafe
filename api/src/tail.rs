//! The live feed behind the `events` subscription: one reader per API process follows the log
//! (woken by appends, LISTEN/NOTIFY and NATS; polling as a fallback) and broadcasts each batch to
//! every subscriber, already redacted. A subscriber that falls behind the broadcast's buffer reads
//! the gap from PostgreSQL itself, so every subscriber sees every event once, in log order.

use std::{sync::Arc, time::Duration};

use futures::{stream::BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use unity_commands::store::{Cursor, EventStore, RecordedEvent};

/// One event as subscribers see it: the stored event with sealed secrets' ciphertext removed.
#[derive(Clone, Debug)]
pub struct LiveEvent {
    pub cursor: Cursor,
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub payload: Value,
    pub hash: String,
}

impl LiveEvent {
    pub fn from_recorded(e: &RecordedEvent) -> LiveEvent {
        let actor = e.metadata.get("actor");
        let text = |key: &str| actor.and_then(|a| a.get(key)).and_then(Value::as_str).map(str::to_owned);
        LiveEvent {
            cursor: e.cursor(),
            event_id: e.event_id,
            stream_id: e.stream_id.clone(),
            stream_type: e.stream_type.clone(),
            stream_version: e.stream_version,
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            actor_kind: text("kind"),
            actor_id: text("id"),
            actor_name: text("name"),
            payload: redact(&e.payload),
            hash: hex::encode(&e.hash),
        }
    }
}

/// Removes the ciphertext of every sealed secret (an object of exactly `secret_id` and
/// `ciphertext`): encrypted or not, secret material has no business in an API response.
pub fn redact(payload: &Value) -> Value {
    match payload {
        Value::Object(fields)
            if fields.len() == 2 && fields.contains_key("secret_id") && fields.contains_key("ciphertext") =>
        {
            serde_json::json!({ "secret_id": fields["secret_id"], "ciphertext": "[sealed]" })
        }
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

const BATCH: i64 = 500;

#[derive(Clone)]
pub struct EventTail {
    store: EventStore,
    batches: broadcast::Sender<Arc<[LiveEvent]>>,
    /// The cursor of the last event broadcast; moved before each send (see [`EventTail::follow`]).
    position: Arc<watch::Sender<Cursor>>,
}

impl EventTail {
    pub fn new(store: EventStore) -> EventTail {
        EventTail { store, batches: broadcast::channel(1024).0, position: Arc::new(watch::channel(Cursor::START).0) }
    }

    /// Follows the log from its newest committed event until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut wakeups = self.store.wakeup().subscribe();
        let mut cursor = loop {
            match self.store.last_committed().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "The subscription feed cannot read the log yet; retrying.");
                    wakeups.idle(&mut shutdown, Some(Duration::from_secs(1)), Duration::from_secs(1)).await;
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        };
        self.position.send_replace(cursor);
        while !*shutdown.borrow() {
            match self.store.read_after(cursor, BATCH).await {
                Ok(events) if !events.is_empty() => {
                    let full = events.len() as i64 == BATCH;
                    let live: Arc<[LiveEvent]> = events.iter().map(LiveEvent::from_recorded).collect();
                    cursor = live.last().expect("non-empty").cursor;
                    // Position first, then the batch: a subscriber that joins in between starts at
                    // the new position and rightly skips the batch it was not there for.
                    self.position.send_replace(cursor);
                    let _ = self.batches.send(live);
                    if full {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "The subscription feed cannot read the log; retrying."),
            }
            wakeups.idle(&mut shutdown, None, Duration::from_secs(1)).await;
        }
    }

    /// Every event after the moment of subscribing, in log order, each once.
    pub fn follow(&self) -> BoxStream<'static, LiveEvent> {
        // Subscribe first, then read the position: whatever was sent before the position we read
        // is at or below it; whatever comes after reaches this receiver.
        let receiver = self.batches.subscribe();
        let start = *self.position.borrow();
        let follower =
            Follower { receiver, seen: start, store: self.store.clone(), pending: Default::default(), from_log: false };
        futures::stream::unfold(follower, |mut f| async move {
            let event = f.next().await?;
            Some((event, f))
        })
        .boxed()
    }
}

struct Follower {
    receiver: broadcast::Receiver<Arc<[LiveEvent]>>,
    /// The cursor of the last event handed out (or skipped as older than the subscription).
    seen: Cursor,
    store: EventStore,
    pending: std::collections::VecDeque<LiveEvent>,
    /// Fell behind the broadcast's buffer: reading from the log until caught up.
    from_log: bool,
}

impl Follower {
    async fn next(&mut self) -> Option<LiveEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.seen = event.cursor;
                return Some(event);
            }
            if self.from_log {
                match self.store.read_after(self.seen, BATCH).await {
                    Ok(events) => {
                        self.from_log = events.len() as i64 == BATCH;
                        self.pending.extend(events.iter().map(LiveEvent::from_recorded));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "A subscriber cannot catch up from the log; ending it.");
                        return None;
                    }
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(batch) => self.pending.extend(batch.iter().filter(|e| e.cursor > self.seen).cloned()),
                Err(broadcast::error::RecvError::Lagged(_)) => self.from_log = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
