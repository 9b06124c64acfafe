//! Audit entries, live events and projection progress as the schema shows them.

use chrono::{DateTime, Utc};
use juniper::{GraphQLInputObject, GraphQLObject, ID};
use unity_projections::audit::AuditEntry as StoredAuditEntry;

use crate::schema::common::*;
use crate::tail::LiveEvent;

/// Who caused an event: a user (id and username), or the system (no id; `username` names the part).
#[derive(Clone, Debug, GraphQLObject)]
pub struct Actor {
    pub id: Option<ID>,
    pub username: Option<String>,
    pub kind: Option<String>,
}

/// Declares the two views of a logged event, `AuditEntry` (paged) and `Event` (live), with the
/// same fields, so subscribers and auditors read one shape.
macro_rules! event_view {
    ($($(#[$meta:meta])* $name:ident),*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, GraphQLObject)]
        pub struct $name {
            pub position: BigInt,
            pub event_id: ID,
            pub stream_id: String,
            pub stream_type: String,
            pub stream_version: i32,
            pub event_type: String,
            pub recorded_at: DateTime<Utc>,
            pub actor: Actor,
            /// The event's data; sealed secrets show their id, never their ciphertext.
            pub payload: Json,
            /// SHA-256 of the event in its stream's hash chain (hex).
            pub hash: String,
        }
    )*};
}

event_view!(
    /// One event of the audit log.
    AuditEntry,
    /// One event as it is appended.
    Event
);

fn actor(kind: Option<String>, id: Option<String>, name: Option<String>) -> Actor {
    Actor { id: id.map(ID::new), username: name, kind }
}

impl From<StoredAuditEntry> for AuditEntry {
    fn from(e: StoredAuditEntry) -> AuditEntry {
        AuditEntry {
            position: BigInt(e.position),
            event_id: ID::new(e.event_id.to_string()),
            stream_id: e.stream_id,
            stream_type: e.stream_type,
            stream_version: i32::try_from(e.stream_version).unwrap_or(i32::MAX),
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            actor: actor(e.actor_kind, e.actor_id, e.actor_name),
            payload: Json(crate::tail::redact(&e.payload)),
            hash: e.hash,
        }
    }
}

impl From<&LiveEvent> for Event {
    fn from(e: &LiveEvent) -> Event {
        Event {
            position: BigInt(e.cursor.global_position),
            event_id: ID::new(e.event_id.to_string()),
            stream_id: e.stream_id.clone(),
            stream_type: e.stream_type.clone(),
            stream_version: i32::try_from(e.stream_version).unwrap_or(i32::MAX),
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            actor: actor(e.actor_kind.clone(), e.actor_id.clone(), e.actor_name.clone()),
            payload: Json(e.payload.clone()),
            hash: e.hash.clone(),
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AuditEntryEdge {
    pub cursor: String,
    pub node: AuditEntry,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct AuditEntryConnection {
    pub edges: Vec<AuditEntryEdge>,
    pub page_info: PageInfo,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct ProjectionStatus {
    pub name: String,
    /// The global position of the last event applied.
    pub position: BigInt,
    /// Committed events not yet applied.
    pub lag: BigInt,
    /// RUNNING or STOPPED.
    pub state: String,
    /// Why a stopped projection stopped.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, GraphQLInputObject)]
#[graphql(name = "AuditFilter")]
pub struct AuditFilterInput {
    pub stream_id: Option<String>,
    pub stream_type: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub actor_id: Option<ID>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, GraphQLInputObject)]
pub struct EventFilter {
    pub stream_types: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
}

impl EventFilter {
    pub fn matches(&self, e: &LiveEvent) -> bool {
        let within =
            |allowed: &Option<Vec<String>>, value: &str| allowed.as_ref().is_none_or(|a| a.iter().any(|v| v == value));
        within(&self.stream_types, &e.stream_type) && within(&self.event_types, &e.event_type)
    }
}
