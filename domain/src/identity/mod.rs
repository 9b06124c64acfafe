//! Identity: users, their roles and passwords, API keys, and login attempts.
//!
//! Four aggregates, each its own stream type:
//! - `user`: created, role changed, password changed, disabled;
//! - `username`: a reservation that makes usernames unique (appended atomically with
//!   `UserCreated`; stream id derived from the normalised name, see [`username_stream_uuid`]);
//! - `api_key`: issued, revoked;
//! - `login`: every attempt for one username, succeeded or failed;
//! - `session`: a login's bearer token (its hash), until logout or expiry.
//!
//! Password hashing and token generation happen outside; commands carry their results.

mod api_key;
mod login;
mod session;
mod user;
mod username;

pub use api_key::*;
pub use login::*;
pub use session::*;
pub use user::*;
pub use username::*;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    // Declared from least to most privileged, so `Ord` ranks them.
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "VIEWER",
            Role::Operator => "OPERATOR",
            Role::Admin => "ADMIN",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s.to_ascii_uppercase().as_str() {
            "VIEWER" => Ok(Role::Viewer),
            "OPERATOR" => Ok(Role::Operator),
            "ADMIN" => Ok(Role::Admin),
            _ => Err(format!("unknown role '{s}' (expected ADMIN, OPERATOR or VIEWER)")),
        }
    }
}

/// A validated username: 1–64 characters of `a-z 0-9 . _ -`, stored in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, IdentityError> {
        let name = raw.trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if valid {
            Ok(Username(name))
        } else {
            Err(IdentityError::InvalidUsername(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Username, IdentityError> {
        Username::parse(&s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

/// The id of the `username` and `login` streams of one username: a UUIDv5 of the name, so the
/// stream can be found from the name alone.
pub fn username_stream_uuid(username: &Username) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d0e_5b7a_4c1e_9a53_7e1d_0c4b_8a21);
    Uuid::new_v5(&NAMESPACE, username.as_str().as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("'{0}' is not a valid username: use 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
    InvalidUsername(String),
    #[error("the username '{0}' is already taken")]
    UsernameTaken(String),
    #[error("the user already exists")]
    UserAlreadyExists,
    #[error("no such user")]
    UserNotFound,
    #[error("the user is disabled")]
    UserDisabled,
    #[error("the API key already exists")]
    ApiKeyAlreadyExists,
    #[error("no such API key")]
    ApiKeyNotFound,
    #[error("an API key cannot have a role above its creator's ({creator:?})")]
    ApiKeyRoleAboveCreator { creator: Role },
    #[error("no such session")]
    SessionNotFound,
    #[error("the session already exists")]
    SessionAlreadyExists,
    #[error("the expiry time is in the past")]
    ExpiryInThePast,
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("a password may have at most {MAX_PASSWORD_CHARS} characters")]
    PasswordTooLong,
}

impl crate::Refuse for IdentityError {
    fn refusal(&self) -> crate::Refusal {
        use crate::Refusal as R;
        use IdentityError as E;
        match self {
            E::InvalidUsername(_) | E::PasswordTooShort | E::PasswordTooLong | E::ExpiryInThePast => R::Invalid,
            E::ApiKeyRoleAboveCreator { .. } => R::Forbidden,
            E::UsernameTaken(_) | E::UserAlreadyExists | E::ApiKeyAlreadyExists | E::SessionAlreadyExists => {
                R::Conflict
            }
            E::UserDisabled => R::Conflict,
            E::UserNotFound | E::ApiKeyNotFound | E::SessionNotFound => R::NotFound,
        }
    }
}

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The password policy, checked before anything is hashed.
pub fn check_password_policy(password: &str) -> Result<(), IdentityError> {
    match password.chars().count() {
        n if n < MIN_PASSWORD_CHARS => Err(IdentityError::PasswordTooShort),
        n if n > MAX_PASSWORD_CHARS => Err(IdentityError::PasswordTooLong),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// user

#[cfg(test)]
mod tests;
