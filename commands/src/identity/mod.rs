//! Identity commands: everything that changes users, API keys and login records. Passwords are
//! hashed with argon2id here and sealed in the vault before any event mentions them.

use argon2::{password_hash::SaltString, Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use ring::{
    digest,
    rand::{SecureRandom, SystemRandom},
};
use unity_domain::{
    identity::{
        check_password_policy, username_stream_uuid, ApiKey, ApiKeyCommand, ApiKeyEvent, IdentityError, Login,
        LoginEvent, RecordLogin, ReserveUsername, Role, Session, SessionCommand, SessionEndReason, SessionEvent, User,
        UserCommand, UserEvent, UserState, Username, UsernameEvent, UsernameReservation,
    },
    Decider, DomainEvent, EventMetadata, SecretRef,
};
use uuid::Uuid;

use crate::{
    handler::{execute, load, stream_of, CommandError, MAX_ATTEMPTS},
    store::{Appended, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend},
    vault::{Vault, VaultError},
};

#[derive(Debug, thiserror::Error)]
pub enum IdentityCommandError {
    #[error(transparent)]
    Rejected(#[from] IdentityError),
    #[error(transparent)]
    Command(CommandError<IdentityError>),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<CommandError<IdentityError>> for IdentityCommandError {
    fn from(e: CommandError<IdentityError>) -> IdentityCommandError {
        match e {
            CommandError::Rejected(e) => IdentityCommandError::Rejected(e),
            e => IdentityCommandError::Command(e),
        }
    }
}

impl From<StoreError> for IdentityCommandError {
    fn from(e: StoreError) -> IdentityCommandError {
        IdentityCommandError::Command(e.into())
    }
}

type Result<T> = std::result::Result<T, IdentityCommandError>;

/// A session as shown once at login: the token is never stored, only its SHA-256.
pub struct StartedSession {
    pub session_id: Uuid,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub appended: Option<Appended>,
}

/// An API key as shown once at creation: the secret token is never stored, only its SHA-256.
pub struct IssuedApiKey {
    pub key_id: Uuid,
    pub token: String,
    pub appended: Option<Appended>,
}

#[derive(Clone)]
pub struct IdentityCommands {
    store: EventStore,
    vault: Vault,
}

impl IdentityCommands {
    pub fn new(store: EventStore, vault: Vault) -> IdentityCommands {
        IdentityCommands { store, vault }
    }

    /// Creates a user, reserving the username in the same atomic append.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        metadata: &EventMetadata,
    ) -> Result<(Uuid, Appended)> {
        let username = Username::parse(username)?;
        check_password_policy(password)?;
        let password_hash = self.seal_password(password).await?;
        let user_id = Uuid::now_v7();
        let reservation_stream = stream_of::<UsernameEvent>(username_stream_uuid(&username));
        let user_stream = stream_of::<UserEvent>(user_id);
        for _ in 0..MAX_ATTEMPTS {
            let (reserved, version) = load::<UsernameReservation>(&self.store, &reservation_stream).await?;
            let reserve = ReserveUsername { username: username.clone(), user_id };
            let reservation = UsernameReservation::decide(&reserve, &reserved)?;
            let create =
                UserCommand::Create { user_id, username: username.clone(), role, password_hash: password_hash.clone() };
            let created = User::decide(&create, &UserState::Absent)?;
            let appended = self
                .store
                .append(vec![
                    StreamAppend {
                        stream_id: reservation_stream.clone(),
                        expected: if version == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exactly(version)
                        },
                        events: NewEvent::from_domain_events(&reservation, metadata),
                    },
                    StreamAppend {
                        stream_id: user_stream.clone(),
                        expected: ExpectedVersion::NoStream,
                        events: NewEvent::from_domain_events(&created, metadata),
                    },
                ])
                .await;
            match appended {
                Ok(appended) => return Ok((user_id, appended)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IdentityCommandError::Command(CommandError::Contended(reservation_stream.to_string())))
    }

    pub async fn change_role(&self, user_id: Uuid, role: Role, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let (_, appended) =
            execute::<User>(&self.store, &stream_of::<UserEvent>(user_id), &UserCommand::ChangeRole { role }, metadata)
                .await?;
        Ok(appended)
    }

    /// Sets a new password (the caller has checked the old one) and shreds the old hash.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        new_password: &str,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        check_password_policy(new_password)?;
        let stream = stream_of::<UserEvent>(user_id);
        let (state, _) = load::<User>(&self.store, &stream).await?;
        let old_secret = match state {
            UserState::Active { password_secret, .. } => password_secret,
            UserState::Absent => return Err(IdentityError::UserNotFound.into()),
            UserState::Disabled { .. } => return Err(IdentityError::UserDisabled.into()),
        };
        let password_hash = self.seal_password(new_password).await?;
        let (_, appended) =
            execute::<User>(&self.store, &stream, &UserCommand::ChangePassword { password_hash }, metadata).await?;
        self.vault.shred(old_secret, metadata).await?;
        Ok(appended)
    }

    pub async fn disable_user(
        &self,
        user_id: Uuid,
        reason: Option<String>,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let (_, appended) =
            execute::<User>(&self.store, &stream_of::<UserEvent>(user_id), &UserCommand::Disable { reason }, metadata)
                .await?;
        Ok(appended)
    }

    /// Checks a password against the user's sealed argon2id hash.
    pub async fn verify_password(&self, password_hash: &SecretRef, password: &str) -> Result<bool> {
        let phc = self.vault.decrypt(password_hash).await?;
        let phc = String::from_utf8(phc).map_err(|_| VaultError::Corrupt(password_hash.secret_id))?;
        PasswordHash::new(&phc).map_err(|_| VaultError::Corrupt(password_hash.secret_id))?;
        let password = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false);
        Ok(ok)
    }

    /// Spends one password check's time on nothing, so that an unknown username is answered as
    /// slowly as a wrong password and cannot be told apart by timing.
    pub async fn burn_password_check(&self, password: &str) {
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let password = password.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            let decoy = DECOY.get_or_init(|| {
                let mut salt = [0u8; 16];
                SystemRandom::new().fill(&mut salt).expect("system randomness");
                let salt = SaltString::encode_b64(&salt).expect("16-byte salt");
                Argon2::default()
                    .hash_password(&salt.as_str().as_bytes()[..8], &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            if let Ok(parsed) = PasswordHash::new(decoy) {
                let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
            }
        })
        .await;
    }

    pub async fn record_login(&self, attempt: RecordLogin, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let stream = stream_of::<LoginEvent>(username_stream_uuid(&attempt.username));
        let events = Login::decide(&attempt, &())?;
        let appended = self
            .store
            .append(vec![StreamAppend {
                stream_id: stream,
                expected: ExpectedVersion::Any,
                events: NewEvent::from_domain_events(&events, metadata),
            }])
            .await?;
        Ok(Some(appended))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn issue_api_key(
        &self,
        owner_id: Uuid,
        owner_role: Role,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
        metadata: &EventMetadata,
    ) -> Result<IssuedApiKey> {
        let token = new_token(TokenKind::ApiKey);
        let key_id = Uuid::now_v7();
        let command = ApiKeyCommand::Issue {
            key_id,
            owner_id,
            owner_role,
            name: name.to_owned(),
            role,
            token_sha256: token_sha256(&token),
            expires_at,
            now: Utc::now(),
        };
        let (_, appended) =
            execute::<ApiKey>(&self.store, &stream_of::<ApiKeyEvent>(key_id), &command, metadata).await?;
        Ok(IssuedApiKey { key_id, token, appended })
    }

    /// Opens a session for a user whose password the caller has just verified (`password_secret`
    /// names that password). The token is returned once; only its hash is recorded.
    pub async fn start_session(
        &self,
        user_id: Uuid,
        password_secret: Uuid,
        lifetime: chrono::Duration,
        source: &str,
        metadata: &EventMetadata,
    ) -> Result<StartedSession> {
        let token = new_token(TokenKind::Session);
        let session_id = Uuid::now_v7();
        let now = Utc::now();
        let expires_at = now + lifetime;
        let command = SessionCommand::Start {
            session_id,
            user_id,
            token_sha256: token_sha256(&token),
            password_secret,
            expires_at,
            source: source.to_owned(),
            now,
        };
        let (_, appended) =
            execute::<Session>(&self.store, &stream_of::<SessionEvent>(session_id), &command, metadata).await?;
        Ok(StartedSession { session_id, token, expires_at, appended })
    }

    pub async fn end_session(&self, session_id: Uuid, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let command = SessionCommand::End { reason: SessionEndReason::Logout };
        let (_, appended) =
            execute::<Session>(&self.store, &stream_of::<SessionEvent>(session_id), &command, metadata).await?;
        Ok(appended)
    }

    pub async fn revoke_api_key(&self, key_id: Uuid, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let (_, appended) =
            execute::<ApiKey>(&self.store, &stream_of::<ApiKeyEvent>(key_id), &ApiKeyCommand::Revoke, metadata).await?;
        Ok(appended)
    }

    async fn seal_password(&self, password: &str) -> Result<SecretRef> {
        let mut salt = [0u8; 16];
        SystemRandom::new().fill(&mut salt).expect("system randomness");
        let password = password.to_owned();
        let phc = tokio::task::spawn_blocking(move || {
            let salt = SaltString::encode_b64(&salt).expect("16-byte salt");
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .expect("argon2 task")
        // Only invalid parameters fail, and these are argon2's defaults with a bounded password.
        .expect("argon2id hashes any password within the policy's length");
        Ok(self.vault.seal(phc.as_bytes()).await?)
    }
}

/// A bearer token: `unity_<kind>_` and 256 random bits in hex. The prefix tells the server which
/// table to look in, and lets secret scanners recognise a leaked token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    ApiKey,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "unity_session_",
            TokenKind::ApiKey => "unity_key_",
        }
    }

    pub fn of(token: &str) -> Option<TokenKind> {
        [TokenKind::Session, TokenKind::ApiKey].into_iter().find(|kind| token.starts_with(kind.prefix()))
    }
}

pub fn new_token(kind: TokenKind) -> String {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).expect("system randomness");
    format!("{}{}", kind.prefix(), hex::encode(secret))
}

/// The lookup key of a token (session or API key): hex SHA-256. Tokens are 256 random bits, so
/// their hashes need no salt and reveal nothing.
pub fn token_sha256(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// For `unity replay --as-of`: folds a stream's events into its aggregate's state as text.
pub fn describe_state(
    stream_type: &str,
    events: &[crate::store::RecordedEvent],
) -> std::result::Result<String, crate::store::DecodeError> {
    fn fold<D: Decider>(
        events: &[crate::store::RecordedEvent],
    ) -> std::result::Result<String, crate::store::DecodeError> {
        let mut state = D::State::default();
        for e in events {
            state = D::evolve(state, &e.decode::<D::Event>()?);
        }
        Ok(format!("{state:#?}"))
    }
    match stream_type {
        t if t == UserEvent::STREAM_TYPE => fold::<User>(events),
        t if t == ApiKeyEvent::STREAM_TYPE => fold::<ApiKey>(events),
        t if t == UsernameEvent::STREAM_TYPE => fold::<UsernameReservation>(events),
        t if t == SessionEvent::STREAM_TYPE => fold::<Session>(events),
        t if t == LoginEvent::STREAM_TYPE => Ok(format!("{} login attempts", events.len())),
        _ => Ok(format!("{} events (no aggregate state is defined for stream type '{stream_type}')", events.len())),
    }
}
