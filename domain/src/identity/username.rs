use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decider::Decider;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UsernameEvent {
    UsernameReserved { username: Username, user_id: Uuid },
}

crate::domain_event!(UsernameEvent, "username", [UsernameReserved]);

#[derive(Clone, Debug)]
pub struct ReserveUsername {
    pub username: Username,
    pub user_id: Uuid,
}

pub struct UsernameReservation;

impl Decider for UsernameReservation {
    type Command = ReserveUsername;
    type Event = UsernameEvent;
    type State = Option<Uuid>;
    type Error = IdentityError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match state {
            Some(_) => Err(IdentityError::UsernameTaken(command.username.as_str().into())),
            None => Ok(vec![UsernameEvent::UsernameReserved {
                username: command.username.clone(),
                user_id: command.user_id,
            }]),
        }
    }

    fn evolve(_: Self::State, event: &Self::Event) -> Self::State {
        let UsernameEvent::UsernameReserved { user_id, .. } = event;
        Some(*user_id)
    }
}

// ---------------------------------------------------------------------------------------------
// API keys
