use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, SecretRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UserEvent {
    UserCreated { user_id: Uuid, username: Username, role: Role, password_hash: SecretRef },
    UserRoleChanged { role: Role, previous_role: Role },
    UserPasswordChanged { password_hash: SecretRef },
    UserDisabled { reason: Option<String> },
}

crate::domain_event!(UserEvent, "user", [UserCreated, UserRoleChanged, UserPasswordChanged, UserDisabled]);

#[derive(Clone, Debug)]
pub enum UserCommand {
    Create {
        user_id: Uuid,
        username: Username,
        role: Role,
        password_hash: SecretRef,
    },
    ChangeRole {
        role: Role,
    },
    /// The caller has already checked the current password and hashed the new one.
    ChangePassword {
        password_hash: SecretRef,
    },
    Disable {
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum UserState {
    #[default]
    Absent,
    Active {
        user_id: Uuid,
        username: Username,
        role: Role,
        password_secret: Uuid,
    },
    Disabled {
        user_id: Uuid,
        username: Username,
        role: Role,
    },
}

pub struct User;

impl Decider for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type State = UserState;
    type Error = IdentityError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        use UserCommand as C;
        match (command, state) {
            (C::Create { user_id, username, role, password_hash }, UserState::Absent) => {
                Ok(vec![UserEvent::UserCreated {
                    user_id: *user_id,
                    username: username.clone(),
                    role: *role,
                    password_hash: password_hash.clone(),
                }])
            }
            (C::Create { .. }, _) => Err(IdentityError::UserAlreadyExists),
            (_, UserState::Absent) => Err(IdentityError::UserNotFound),
            (C::Disable { .. }, UserState::Disabled { .. }) => Ok(vec![]),
            (_, UserState::Disabled { .. }) => Err(IdentityError::UserDisabled),
            (C::ChangeRole { role }, UserState::Active { role: current, .. }) if role == current => Ok(vec![]),
            (C::ChangeRole { role }, UserState::Active { role: current, .. }) => {
                Ok(vec![UserEvent::UserRoleChanged { role: *role, previous_role: *current }])
            }
            (C::ChangePassword { password_hash }, UserState::Active { .. }) => {
                Ok(vec![UserEvent::UserPasswordChanged { password_hash: password_hash.clone() }])
            }
            (C::Disable { reason }, UserState::Active { .. }) => {
                Ok(vec![UserEvent::UserDisabled { reason: reason.clone() }])
            }
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        match (state, event) {
            (_, UserEvent::UserCreated { user_id, username, role, password_hash }) => UserState::Active {
                user_id: *user_id,
                username: username.clone(),
                role: *role,
                password_secret: password_hash.secret_id,
            },
            (UserState::Active { user_id, username, password_secret, .. }, UserEvent::UserRoleChanged { role, .. }) => {
                UserState::Active { user_id, username, role: *role, password_secret }
            }
            (UserState::Active { user_id, username, role, .. }, UserEvent::UserPasswordChanged { password_hash }) => {
                UserState::Active { user_id, username, role, password_secret: password_hash.secret_id }
            }
            (UserState::Active { user_id, username, role, .. }, UserEvent::UserDisabled { .. }) => {
                UserState::Disabled { user_id, username, role }
            }
            (state, _) => state,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// username reservation
