use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decider::Decider;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoginFailure {
    UnknownUser,
    WrongPassword,
    UserDisabled,
    RateLimited,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum LoginEvent {
    LoginSucceeded { username: Username, user_id: Uuid, source: String },
    LoginFailed { username: Username, user_id: Option<Uuid>, source: String, reason: LoginFailure },
}

crate::domain_event!(LoginEvent, "login", [LoginSucceeded, LoginFailed]);

/// A login attempt, already judged by the caller (which verified the password hash).
#[derive(Clone, Debug)]
pub struct RecordLogin {
    pub username: Username,
    pub user_id: Option<Uuid>,
    pub source: String,
    pub outcome: Result<(), LoginFailure>,
}

pub struct Login;

impl Decider for Login {
    type Command = RecordLogin;
    type Event = LoginEvent;
    type State = ();
    type Error = IdentityError;

    fn decide(command: &Self::Command, _: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        let RecordLogin { username, user_id, source, outcome } = command.clone();
        Ok(vec![match (outcome, user_id) {
            (Ok(()), Some(user_id)) => LoginEvent::LoginSucceeded { username, user_id, source },
            (Ok(()), None) => LoginEvent::LoginFailed { username, user_id, source, reason: LoginFailure::UnknownUser },
            (Err(reason), user_id) => LoginEvent::LoginFailed { username, user_id, source, reason },
        }])
    }

    fn evolve(_: (), _: &LoginEvent) {}
}

// ---------------------------------------------------------------------------------------------
// sessions
