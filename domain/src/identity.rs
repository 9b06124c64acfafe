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

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, event::DomainEvent, SecretRef};

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UserEvent {
    UserCreated { user_id: Uuid, username: Username, role: Role, password_hash: SecretRef },
    UserRoleChanged { role: Role, previous_role: Role },
    UserPasswordChanged { password_hash: SecretRef },
    UserDisabled { reason: Option<String> },
}

impl DomainEvent for UserEvent {
    const STREAM_TYPE: &'static str = "user";
    fn event_type(&self) -> &'static str {
        match self {
            UserEvent::UserCreated { .. } => "UserCreated",
            UserEvent::UserRoleChanged { .. } => "UserRoleChanged",
            UserEvent::UserPasswordChanged { .. } => "UserPasswordChanged",
            UserEvent::UserDisabled { .. } => "UserDisabled",
        }
    }
}

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

    fn decide(command: &UserCommand, state: &UserState) -> Result<Vec<UserEvent>, IdentityError> {
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

    fn evolve(state: UserState, event: &UserEvent) -> UserState {
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum UsernameEvent {
    UsernameReserved { username: Username, user_id: Uuid },
}

impl DomainEvent for UsernameEvent {
    const STREAM_TYPE: &'static str = "username";
    fn event_type(&self) -> &'static str {
        "UsernameReserved"
    }
}

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

    fn decide(command: &ReserveUsername, state: &Option<Uuid>) -> Result<Vec<UsernameEvent>, IdentityError> {
        match state {
            Some(_) => Err(IdentityError::UsernameTaken(command.username.as_str().into())),
            None => Ok(vec![UsernameEvent::UsernameReserved {
                username: command.username.clone(),
                user_id: command.user_id,
            }]),
        }
    }

    fn evolve(_: Option<Uuid>, event: &UsernameEvent) -> Option<Uuid> {
        let UsernameEvent::UsernameReserved { user_id, .. } = event;
        Some(*user_id)
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

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

impl DomainEvent for ApiKeyEvent {
    const STREAM_TYPE: &'static str = "api_key";
    fn event_type(&self) -> &'static str {
        match self {
            ApiKeyEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            ApiKeyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
    }
}

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

    fn decide(command: &ApiKeyCommand, state: &ApiKeyState) -> Result<Vec<ApiKeyEvent>, IdentityError> {
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

    fn evolve(_: ApiKeyState, event: &ApiKeyEvent) -> ApiKeyState {
        match event {
            ApiKeyEvent::ApiKeyIssued { .. } => ApiKeyState::Active,
            ApiKeyEvent::ApiKeyRevoked {} => ApiKeyState::Revoked,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// login attempts

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

impl DomainEvent for LoginEvent {
    const STREAM_TYPE: &'static str = "login";
    fn event_type(&self) -> &'static str {
        match self {
            LoginEvent::LoginSucceeded { .. } => "LoginSucceeded",
            LoginEvent::LoginFailed { .. } => "LoginFailed",
        }
    }
}

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

    fn decide(command: &RecordLogin, _: &()) -> Result<Vec<LoginEvent>, IdentityError> {
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

impl DomainEvent for SessionEvent {
    const STREAM_TYPE: &'static str = "session";
    fn event_type(&self) -> &'static str {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::SessionEnded { .. } => "SessionEnded",
        }
    }
}

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

    fn decide(command: &SessionCommand, state: &SessionState) -> Result<Vec<SessionEvent>, IdentityError> {
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

    fn evolve(_: SessionState, event: &SessionEvent) -> SessionState {
        match event {
            SessionEvent::SessionStarted { .. } => SessionState::Open,
            SessionEvent::SessionEnded { .. } => SessionState::Ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::decider::spec::given;

    fn secret(n: u128) -> SecretRef {
        SecretRef { secret_id: Uuid::from_u128(n), ciphertext: format!("ct{n}") }
    }

    fn created(role: Role) -> UserEvent {
        UserEvent::UserCreated {
            user_id: Uuid::from_u128(1),
            username: Username::parse("ada").unwrap(),
            role,
            password_hash: secret(10),
        }
    }

    #[test]
    fn a_new_user_is_created_once() {
        let create = UserCommand::Create {
            user_id: Uuid::from_u128(1),
            username: Username::parse("Ada").unwrap(),
            role: Role::Operator,
            password_hash: secret(10),
        };
        given::<User>(&[]).when(create.clone()).then(&[created(Role::Operator)]);
        given::<User>(&[created(Role::Operator)]).when(create).then_error(IdentityError::UserAlreadyExists);
    }

    #[test]
    fn role_changes_record_the_previous_role_and_are_idempotent() {
        given::<User>(&[created(Role::Viewer)])
            .when(UserCommand::ChangeRole { role: Role::Admin })
            .then(&[UserEvent::UserRoleChanged { role: Role::Admin, previous_role: Role::Viewer }]);
        given::<User>(&[created(Role::Admin)]).when(UserCommand::ChangeRole { role: Role::Admin }).then(&[]);
        given::<User>(&[]).when(UserCommand::ChangeRole { role: Role::Admin }).then_error(IdentityError::UserNotFound);
    }

    #[test]
    fn a_disabled_user_cannot_change_but_disabling_again_is_harmless() {
        let history = [created(Role::Admin), UserEvent::UserDisabled { reason: None }];
        given::<User>(&history)
            .when(UserCommand::ChangeRole { role: Role::Viewer })
            .then_error(IdentityError::UserDisabled);
        given::<User>(&history)
            .when(UserCommand::ChangePassword { password_hash: secret(11) })
            .then_error(IdentityError::UserDisabled);
        given::<User>(&history).when(UserCommand::Disable { reason: None }).then(&[]);
    }

    #[test]
    fn a_password_change_points_at_the_new_secret() {
        given::<User>(&[created(Role::Viewer)])
            .when(UserCommand::ChangePassword { password_hash: secret(11) })
            .then(&[UserEvent::UserPasswordChanged { password_hash: secret(11) }]);
        let state = User::fold(&[created(Role::Viewer), UserEvent::UserPasswordChanged { password_hash: secret(11) }]);
        assert!(matches!(state, UserState::Active { password_secret, .. } if password_secret == Uuid::from_u128(11)));
    }

    #[test]
    fn usernames_are_validated_and_normalised() {
        assert_eq!(Username::parse(" Ada.Lovelace ").unwrap().as_str(), "ada.lovelace");
        for bad in ["", "a b", "ädmin", &"x".repeat(65), "root;drop"] {
            assert!(matches!(Username::parse(bad), Err(IdentityError::InvalidUsername(_))), "{bad}");
        }
    }

    #[test]
    fn passwords_need_a_minimum_length() {
        assert_eq!(check_password_policy("short"), Err(IdentityError::PasswordTooShort));
        assert_eq!(check_password_policy(&"x".repeat(2000)), Err(IdentityError::PasswordTooLong));
        assert_eq!(check_password_policy("correct horse battery"), Ok(()));
    }

    #[test]
    fn a_username_can_be_reserved_once() {
        let ada = Username::parse("ada").unwrap();
        let reserve = ReserveUsername { username: ada.clone(), user_id: Uuid::from_u128(2) };
        given::<UsernameReservation>(&[])
            .when(reserve.clone())
            .then(&[UsernameEvent::UsernameReserved { username: ada.clone(), user_id: Uuid::from_u128(2) }]);
        given::<UsernameReservation>(&[UsernameEvent::UsernameReserved { username: ada, user_id: Uuid::from_u128(1) }])
            .when(reserve)
            .then_error(IdentityError::UsernameTaken("ada".into()));
    }

    fn issue(owner_role: Role, role: Role, expires_in: Option<Duration>) -> ApiKeyCommand {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        ApiKeyCommand::Issue {
            key_id: Uuid::from_u128(5),
            owner_id: Uuid::from_u128(1),
            owner_role,
            name: "ci".into(),
            role,
            token_sha256: "ab".repeat(32),
            expires_at: expires_in.map(|d| now + d),
            now,
        }
    }

    #[test]
    fn api_keys_never_outrank_their_creator_nor_expire_in_the_past() {
        given::<ApiKey>(&[])
            .when(issue(Role::Operator, Role::Admin, None))
            .then_error(IdentityError::ApiKeyRoleAboveCreator { creator: Role::Operator });
        given::<ApiKey>(&[])
            .when(issue(Role::Admin, Role::Viewer, Some(Duration::seconds(-1))))
            .then_error(IdentityError::ExpiryInThePast);
        let ok = ApiKey::decide(&issue(Role::Operator, Role::Operator, Some(Duration::days(30))), &ApiKeyState::Absent)
            .unwrap();
        assert!(matches!(&ok[..], [ApiKeyEvent::ApiKeyIssued { role: Role::Operator, .. }]));
    }

    #[test]
    fn api_keys_are_revoked_once() {
        let issued = ApiKey::decide(&issue(Role::Admin, Role::Viewer, None), &ApiKeyState::Absent).unwrap();
        given::<ApiKey>(&issued).when(ApiKeyCommand::Revoke).then(&[ApiKeyEvent::ApiKeyRevoked {}]);
        given::<ApiKey>(&[issued[0].clone(), ApiKeyEvent::ApiKeyRevoked {}]).when(ApiKeyCommand::Revoke).then(&[]);
        given::<ApiKey>(&[]).when(ApiKeyCommand::Revoke).then_error(IdentityError::ApiKeyNotFound);
    }

    #[test]
    fn login_attempts_are_recorded_with_their_outcome() {
        let ada = Username::parse("ada").unwrap();
        let attempt =
            |user_id, outcome| RecordLogin { username: ada.clone(), user_id, source: "10.0.0.1".into(), outcome };
        given::<Login>(&[]).when(attempt(Some(Uuid::from_u128(1)), Ok(()))).then(&[LoginEvent::LoginSucceeded {
            username: ada.clone(),
            user_id: Uuid::from_u128(1),
            source: "10.0.0.1".into(),
        }]);
        given::<Login>(&[]).when(attempt(None, Ok(()))).then(&[LoginEvent::LoginFailed {
            username: ada.clone(),
            user_id: None,
            source: "10.0.0.1".into(),
            reason: LoginFailure::UnknownUser,
        }]);
        given::<Login>(&[]).when(attempt(Some(Uuid::from_u128(1)), Err(LoginFailure::WrongPassword))).then(&[
            LoginEvent::LoginFailed {
                username: ada,
                user_id: Some(Uuid::from_u128(1)),
                source: "10.0.0.1".into(),
                reason: LoginFailure::WrongPassword,
            },
        ]);
    }

    #[test]
    fn sessions_start_once_and_end_once() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let start = |expires_at| SessionCommand::Start {
            session_id: Uuid::from_u128(7),
            user_id: Uuid::from_u128(1),
            token_sha256: "cd".repeat(32),
            password_secret: Uuid::from_u128(10),
            expires_at,
            source: "127.0.0.1".into(),
            now,
        };
        given::<Session>(&[]).when(start(now)).then_error(IdentityError::ExpiryInThePast);
        let started = Session::decide(&start(now + Duration::hours(1)), &SessionState::Absent).unwrap();
        assert!(matches!(&started[..], [SessionEvent::SessionStarted { password_secret, .. }]
            if *password_secret == Uuid::from_u128(10)));
        let logout = SessionCommand::End { reason: SessionEndReason::Logout };
        given::<Session>(&started)
            .when(logout.clone())
            .then(&[SessionEvent::SessionEnded { reason: SessionEndReason::Logout }]);
        given::<Session>(&[started[0].clone(), SessionEvent::SessionEnded { reason: SessionEndReason::Logout }])
            .when(logout.clone())
            .then(&[]);
        given::<Session>(&[]).when(logout).then_error(IdentityError::SessionNotFound);
    }

    #[test]
    fn events_split_into_stored_type_and_payload_and_back() {
        let event = created(Role::Admin);
        let (event_type, payload) = event.to_parts();
        assert_eq!(event_type, "UserCreated");
        assert_eq!(payload["role"], "ADMIN");
        assert_eq!(UserEvent::from_parts(event_type, payload).unwrap(), event);
        let revoked = ApiKeyEvent::ApiKeyRevoked {};
        let (t, p) = revoked.to_parts();
        assert_eq!(ApiKeyEvent::from_parts(t, p).unwrap(), revoked);
    }
}
