use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, SecretRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialKind {
    Password,
    PrivateKey,
    Token,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ServerCredentialEvent {
    ServerCredentialCreated {
        credential_id: Uuid,
        name: String,
        kind: CredentialKind,
        username: String,
        secret: SecretRef,
    },
    /// Only the fields that changed are present; a new secret replaces (and shreds) the old one.
    ServerCredentialUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<SecretRef>,
    },
    ServerCredentialDeleted {},
}

crate::domain_event!(
    ServerCredentialEvent,
    "server_credential",
    [ServerCredentialCreated, ServerCredentialUpdated, ServerCredentialDeleted,]
);

#[derive(Clone, Debug, PartialEq)]
pub enum ServerCredentialCommand {
    Create { credential_id: Uuid, name: String, kind: CredentialKind, username: String, secret: SecretRef },
    Update { name: Option<String>, username: Option<String>, secret: Option<SecretRef> },
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ServerCredentialState {
    #[default]
    Absent,
    Active {
        kind: CredentialKind,
        username: String,
        secret: SecretRef,
    },
    Deleted,
}

fn check_login(username: &str) -> Result<(), CredentialError> {
    if username.is_empty() || username.len() > 64 || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CredentialError::Invalid("a username is 1 to 64 characters without spaces".into()));
    }
    Ok(())
}

pub struct ServerCredential;

impl Decider for ServerCredential {
    type Command = ServerCredentialCommand;
    type Event = ServerCredentialEvent;
    type State = ServerCredentialState;
    type Error = CredentialError;

    fn decide(
        command: &ServerCredentialCommand,
        state: &ServerCredentialState,
    ) -> Result<Vec<ServerCredentialEvent>, CredentialError> {
        use ServerCredentialCommand as C;
        use ServerCredentialState as S;
        match (command, state) {
            (C::Create { credential_id, name, kind, username, secret }, S::Absent) => {
                check_name("a server credential", name)?;
                check_login(username)?;
                Ok(vec![ServerCredentialEvent::ServerCredentialCreated {
                    credential_id: *credential_id,
                    name: name.trim().to_owned(),
                    kind: *kind,
                    username: username.clone(),
                    secret: secret.clone(),
                }])
            }
            (C::Create { .. }, _) => Err(CredentialError::Invalid("this credential exists already".into())),
            (_, S::Absent) => Err(CredentialError::CredentialNotFound),
            (C::Delete, S::Deleted) => Ok(vec![]),
            (_, S::Deleted) => Err(CredentialError::CredentialDeleted),
            (C::Update { name, username, secret }, S::Active { .. }) => {
                if let Some(name) = name {
                    check_name("a server credential", name)?;
                }
                if let Some(username) = username {
                    check_login(username)?;
                }
                if name.is_none() && username.is_none() && secret.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ServerCredentialEvent::ServerCredentialUpdated {
                    name: name.as_ref().map(|n| n.trim().to_owned()),
                    username: username.clone(),
                    secret: secret.clone(),
                }])
            }
            (C::Delete, S::Active { .. }) => Ok(vec![ServerCredentialEvent::ServerCredentialDeleted {}]),
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        use ServerCredentialEvent as E;
        use ServerCredentialState as S;
        match (state, event) {
            (_, E::ServerCredentialCreated { kind, username, secret, .. }) => {
                S::Active { kind: *kind, username: username.clone(), secret: secret.clone() }
            }
            (
                S::Active { kind, username: old_username, secret: old_secret },
                E::ServerCredentialUpdated { username, secret, .. },
            ) => S::Active {
                kind,
                username: username.clone().unwrap_or(old_username),
                secret: secret.clone().unwrap_or(old_secret),
            },
            (_, E::ServerCredentialDeleted {}) => S::Deleted,
            (state, _) => state,
        }
    }
}
