//! The vocabulary shared by every aggregate: stream ids, event metadata and sealed secrets.

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

/// A domain event enum. Serialized with `#[serde(tag = "event_type", content = "payload")]`,
/// so its variant name is the stored `event_type` and its fields are the stored payload.
pub trait DomainEvent: Serialize + DeserializeOwned + fmt::Debug + Clone {
    /// The stream category, e.g. `user`; stream ids are `<stream_type>-<uuid>`.
    const STREAM_TYPE: &'static str;

    /// The variant name, which is the stored `event_type`.
    fn event_type(&self) -> &'static str;

    /// Splits the event into its stored `(event_type, payload)`.
    fn to_parts(&self) -> (&'static str, serde_json::Value) {
        let mut value = serde_json::to_value(self).expect("domain events serialize to JSON");
        let payload = value
            .get_mut("payload")
            .map(serde_json::Value::take)
            .unwrap_or(serde_json::Value::Object(Default::default()));
        (self.event_type(), payload)
    }

    /// Rebuilds the event from a stored `(event_type, payload)` already upcast to the current
    /// schema version (see [`crate::schema::upcast`]).
    fn from_parts(event_type: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "event_type": event_type, "payload": payload }))
    }
}

/// Implements [`DomainEvent`] for an enum of events: its stream type, and each variant's name as
/// its stored `event_type` (the name serde's adjacent tag writes, so the two cannot drift apart;
/// a variant left out of the list does not compile).
#[macro_export]
macro_rules! domain_event {
    ($event:ident, $stream_type:literal, [$($variant:ident),+ $(,)?]) => {
        impl $crate::DomainEvent for $event {
            const STREAM_TYPE: &'static str = $stream_type;
            fn event_type(&self) -> &'static str {
                match self {
                    $($event::$variant { .. } => stringify!($variant),)+
                }
            }
        }
    };
}

/// `<stream_type>-<uuid>`: the identity of one aggregate instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId {
    stream_type: String,
    id: Uuid,
}

impl StreamId {
    pub fn new(stream_type: &str, id: Uuid) -> StreamId {
        StreamId { stream_type: stream_type.to_owned(), id }
    }

    pub fn stream_type(&self) -> &str {
        &self.stream_type
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.stream_type, self.id)
    }
}

impl std::str::FromStr for StreamId {
    type Err = String;

    fn from_str(s: &str) -> Result<StreamId, String> {
        // A UUID is 36 characters; everything before the dash in front of it is the type.
        let err = || format!("'{s}' is not a stream id of the form <stream_type>-<uuid>");
        if s.len() < 38 || !s.is_char_boundary(s.len() - 37) {
            return Err(err());
        }
        let (head, id) = s.split_at(s.len() - 36);
        let stream_type = head.strip_suffix('-').ok_or_else(err)?;
        let valid_type = !stream_type.is_empty()
            && stream_type.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let id = Uuid::parse_str(id).map_err(|_| err())?;
        if !valid_type {
            return Err(err());
        }
        Ok(StreamId::new(stream_type, id))
    }
}

impl TryFrom<String> for StreamId {
    type Error = String;
    fn try_from(s: String) -> Result<StreamId, String> {
        s.parse()
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> String {
        id.to_string()
    }
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `user`, `api_key` or `system`.
    pub kind: String,
    /// The user's or key's id; `None` for the system.
    pub id: Option<Uuid>,
    /// A name for people reading the audit log (username, key name, `cli`, a reactor's name).
    pub name: String,
}

impl Actor {
    pub fn system(name: &str) -> Actor {
        Actor { kind: "system".into(), id: None, name: name.into() }
    }

    pub fn user(id: Uuid, username: &str) -> Actor {
        Actor { kind: "user".into(), id: Some(id), name: username.into() }
    }
}

/// Stored with every event: who, why, and from where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    pub correlation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The entry point: `cli`, `api`, `reactor:<name>`, `bench`.
    pub source: String,
}

impl EventMetadata {
    /// The domain makes no ids: the caller brings the correlation id (`unity_commands::metadata`
    /// makes a fresh one).
    pub fn new(actor: Actor, source: &str, correlation_id: Uuid) -> EventMetadata {
        EventMetadata { actor, correlation_id, causation_id: None, source: source.into() }
    }
}

/// A secret as it may appear in an event: a vault id and ciphertext, never plaintext.
/// Only the vault (unity-commands) can open it, and only while its data key exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub secret_id: Uuid,
    /// base64 of nonce ‖ AES-256-GCM ciphertext ‖ tag.
    pub ciphertext: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_and_reject_garbage() {
        let id = StreamId::new("ssh_key", Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0001));
        assert_eq!(id.to_string().parse::<StreamId>().unwrap(), id);
        for bad in [
            "",
            "user",
            "user-",
            "-0193a1b2-0000-7000-8000-000000000000",
            "User-0193a1b2-0000-7000-8000-000000000000",
            "user-not-a-uuid-at-all-but-36-chars-x",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad} should be rejected");
        }
    }
}
