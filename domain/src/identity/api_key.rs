use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decider::Decider;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ApiKeyEvent {
    /// `token_sha256` is the hex SHA-256 of a 256-bit random token: safe to publish, useless to guess from.
    ApiKeyIssued {
        key_id: Uuid,
        owner_id: Uuid,
        name: String,
        role: Role,
        token_sha256: String,
        expires_at: Option<DateTime<Utc>>,
    },
    ApiKeyRevoked {},
}

crate::domain_event!(ApiKeyEvent, "api_key", [ApiKeyIssued, ApiKeyRevoked]);

#[derive(Clone, Debug)]
pub enum ApiKeyCommand {
    Issue {
        key_id: Uuid,
        owner_id: Uuid,
        owner_role: Role,
        name: String,
        role: Role,
        token_sha256: String,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    Revoke,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ApiKeyState {
    #[default]
    Absent,
    Active,
    Revoked,
}

pub struct ApiKey;

impl Decider for ApiKey {
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type State = ApiKeyState;
    type Error = IdentityError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, state) {
            (
                ApiKeyCommand::Issue { key_id, owner_id, owner_role, name, role, token_sha256, expires_at, now },
                ApiKeyState::Absent,
            ) => {
                if role > owner_role {
                    return Err(IdentityError::ApiKeyRoleAboveCreator { creator: *owner_role });
                }
                if expires_at.is_some_and(|at| at <= *now) {
                    return Err(IdentityError::ExpiryInThePast);
                }
                Ok(vec![ApiKeyEvent::ApiKeyIssued {
                    key_id: *key_id,
                    owner_id: *owner_id,
                    name: name.clone(),
                    role: *role,
                    token_sha256: token_sha256.clone(),
                    expires_at: *expires_at,
                }])
            }
            (ApiKeyCommand::Issue { .. }, _) => Err(IdentityError::ApiKeyAlreadyExists),
            (ApiKeyCommand::Revoke, ApiKeyState::Absent) => Err(IdentityError::ApiKeyNotFound),
            (ApiKeyCommand::Revoke, ApiKeyState::Revoked) => Ok(vec![]),
            (ApiKeyCommand::Revoke, ApiKeyState::Active) => Ok(vec![ApiKeyEvent::ApiKeyRevoked {}]),
        }
    }

    fn evolve(_: Self::State, event: &Self::Event) -> Self::State {
        match event {
            ApiKeyEvent::ApiKeyIssued { .. } => ApiKeyState::Active,
            ApiKeyEvent::ApiKeyRevoked {} => ApiKeyState::Revoked,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// login attempts
