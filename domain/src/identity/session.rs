use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decider::Decider;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionEndReason {
    Logout,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SessionEvent {
    /// `password_secret` names the password the session was opened with: a later password change
    /// ends every session opened with the old one, without an event per session.
    SessionStarted {
        session_id: Uuid,
        user_id: Uuid,
        token_sha256: String,
        password_secret: Uuid,
        expires_at: DateTime<Utc>,
        source: String,
    },
    SessionEnded {
        reason: SessionEndReason,
    },
}

crate::domain_event!(SessionEvent, "session", [SessionStarted, SessionEnded]);

#[derive(Clone, Debug)]
pub enum SessionCommand {
    Start {
        session_id: Uuid,
        user_id: Uuid,
        token_sha256: String,
        password_secret: Uuid,
        expires_at: DateTime<Utc>,
        source: String,
        now: DateTime<Utc>,
    },
    End {
        reason: SessionEndReason,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum SessionState {
    #[default]
    Absent,
    Open,
    Ended,
}

pub struct Session;

impl Decider for Session {
    type Command = SessionCommand;
    type Event = SessionEvent;
    type State = SessionState;
    type Error = IdentityError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, state) {
            (
                SessionCommand::Start { session_id, user_id, token_sha256, password_secret, expires_at, source, now },
                SessionState::Absent,
            ) => {
                if expires_at <= now {
                    return Err(IdentityError::ExpiryInThePast);
                }
                Ok(vec![SessionEvent::SessionStarted {
                    session_id: *session_id,
                    user_id: *user_id,
                    token_sha256: token_sha256.clone(),
                    password_secret: *password_secret,
                    expires_at: *expires_at,
                    source: source.clone(),
                }])
            }
            (SessionCommand::Start { .. }, _) => Err(IdentityError::SessionAlreadyExists),
            (SessionCommand::End { .. }, SessionState::Absent) => Err(IdentityError::SessionNotFound),
            (SessionCommand::End { .. }, SessionState::Ended) => Ok(vec![]),
            (SessionCommand::End { reason }, SessionState::Open) => {
                Ok(vec![SessionEvent::SessionEnded { reason: *reason }])
            }
        }
    }

    fn evolve(_: Self::State, event: &Self::Event) -> Self::State {
        match event {
            SessionEvent::SessionStarted { .. } => SessionState::Open,
            SessionEvent::SessionEnded { .. } => SessionState::Ended,
        }
    }
}
