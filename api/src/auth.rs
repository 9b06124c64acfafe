//! Who is asking: bearer tokens (sessions and API keys) resolved to a principal, and the login
//! throttle that limits password guessing per username and per source address.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use unity_commands::identity::{token_sha256, TokenKind};
use unity_domain::identity::Role;
use unity_projections::identity::{api_key_owner, session_owner, TokenOwner, TokenRefusal};
use uuid::Uuid;

use crate::errors::{ApiError, Code};

/// The caller of one request, resolved from its token.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    /// What this credential may do: the user's role for a session; for an API key, the lower of
    /// the key's role and its owner's current role.
    pub role: Role,
    /// The user's own role.
    pub user_role: Role,
    pub credential: Credential,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the credential expires by time.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    Session(Uuid),
    ApiKey(Uuid),
}

/// Resolves `Authorization: Bearer <token>` (or a bare token) to a principal. No token is not an
/// error (some fields are public); a token that is unknown, expired, revoked, or whose user is
/// disabled is UNAUTHENTICATED.
pub async fn authenticate(pool: &sqlx::PgPool, header: Option<&str>) -> Result<Option<Principal>, ApiError> {
    let Some(token) = bare_token(header) else {
        return Ok(None);
    };
    let invalid = || ApiError::new(Code::Unauthenticated, "the token is invalid, expired or revoked");
    let hash = token_sha256(token);
    let (owner, credential) = match TokenKind::of(token) {
        Some(TokenKind::Session) => {
            let owner = session_owner(pool, &hash).await?.ok_or_else(invalid)?;
            let id = owner.credential_id;
            (owner, Credential::Session(id))
        }
        Some(TokenKind::ApiKey) => {
            let owner = api_key_owner(pool, &hash).await?.ok_or_else(invalid)?;
            let id = owner.credential_id;
            (owner, Credential::ApiKey(id))
        }
        None => return Err(invalid()),
    };
    let user_role = parse_role(&owner.user_role)?;
    let TokenOwner { user_id, username, role, created_at, last_login_at, expires_at, .. } = owner;
    let role = parse_role(&role)?.min(user_role);
    Ok(Some(Principal { user_id, username, role, user_role, credential, created_at, last_login_at, expires_at }))
}

/// The access of one WebSocket connection's token while the connection lasts, shared by its
/// operations. It ends when the token stops being valid (the connection then closes with 4403)
/// and narrows when the user's role is lowered; running subscriptions consult it for every
/// event they deliver.
pub struct LiveAccess {
    principal: Principal,
    role: Mutex<Role>,
    ended: tokio::sync::watch::Sender<Option<String>>,
}

impl LiveAccess {
    pub fn new(principal: Principal) -> LiveAccess {
        LiveAccess { role: Mutex::new(principal.role), principal, ended: tokio::sync::watch::channel(None).0 }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// What the token may do now; `None` once its access has ended.
    pub fn role(&self) -> Option<Role> {
        if self.ended.borrow().is_some() {
            return None;
        }
        Some(*self.role.lock().expect("role lock"))
    }

    /// Lowers what the token may do to `role` (never raises it: a wider role takes a new
    /// connection, and a read model that lags the log must not undo a narrowing).
    pub fn narrow(&self, role: Role) {
        let mut current = self.role.lock().expect("role lock");
        *current = (*current).min(role);
    }

    /// Ends the access for `reason` (the first reason given is kept).
    pub fn end(&self, reason: &str) {
        self.ended.send_if_modified(|ended| {
            if ended.is_some() {
                return false;
            }
            *ended = Some(reason.to_owned());
            true
        });
    }

    /// Ends the access for `why`, in the words every path uses (the log's event, the read
    /// model's state, the expiry timer), so the close reason does not depend on which saw it first.
    pub fn refuse(&self, why: TokenRefusal) {
        let session = matches!(self.principal.credential, Credential::Session(_));
        self.end(match why {
            TokenRefusal::UserDisabled => "the user was disabled",
            TokenRefusal::SessionEnded => "the session ended",
            TokenRefusal::PasswordChanged => "the password was changed, which ends every session",
            TokenRefusal::KeyRevoked => "the API key was revoked",
            TokenRefusal::Expired if session => "the session expired",
            TokenRefusal::Expired => "the API key expired",
        });
    }

    /// Resolves with the reason once the access has ended.
    pub async fn ended(&self) -> String {
        let mut ended = self.ended.subscribe();
        let reason = ended.wait_for(Option::is_some).await.map(|r| r.clone()).ok().flatten();
        reason.unwrap_or_else(|| "the connection's access ended".into())
    }

    /// Applies one event from the log, in log order: an event that ends this credential's
    /// access ends it here, before any later event is delivered; a lowered role narrows it.
    /// Returns whether access remains.
    pub fn observe(&self, stream_id: &str, event_type: &str, payload: &serde_json::Value) -> bool {
        let principal = &self.principal;
        let user_stream = format!("user-{}", principal.user_id);
        let ends = match (principal.credential, event_type) {
            (_, "UserDisabled") if stream_id == user_stream => Some(TokenRefusal::UserDisabled),
            (Credential::Session(_), "UserPasswordChanged") if stream_id == user_stream => {
                Some(TokenRefusal::PasswordChanged)
            }
            (Credential::Session(id), "SessionEnded") if stream_id == format!("session-{id}") => {
                Some(TokenRefusal::SessionEnded)
            }
            (Credential::ApiKey(id), "ApiKeyRevoked") if stream_id == format!("api_key-{id}") => {
                Some(TokenRefusal::KeyRevoked)
            }
            (_, "UserRoleChanged") if stream_id == user_stream => {
                if let Some(role) = payload.get("role").and_then(|r| serde_json::from_value::<Role>(r.clone()).ok()) {
                    self.narrow(role);
                }
                None
            }
            _ => None,
        };
        if let Some(why) = ends {
            self.refuse(why);
        }
        self.role().is_some()
    }
}

/// The token of `Authorization: Bearer <token>` (or of a bare token); `None` for nothing.
fn bare_token(header: Option<&str>) -> Option<&str> {
    let header = header.map(str::trim).filter(|h| !h.is_empty())?;
    Some(header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).unwrap_or(header).trim())
}

/// Why a token that no longer authenticates is refused, from the read model (`None` if it is
/// unknown, or the read model cannot say).
pub async fn refusal(pool: &sqlx::PgPool, header: Option<&str>) -> Option<TokenRefusal> {
    let token = bare_token(header)?;
    unity_projections::identity::token_refusal(pool, &token_sha256(token)).await.ok().flatten()
}

pub fn parse_role(stored: &str) -> Result<Role, ApiError> {
    stored.parse().map_err(|e: String| ApiError::internal("stored role", &e))
}

/// Limits on failed logins. A username is locked after `per_username` failures within `window`;
/// an address after `per_source`. The lock lifts as the oldest failure in the window ages out;
/// a successful login clears the username's failures (not the address's).
#[derive(Clone, Copy, Debug)]
pub struct ThrottleConfig {
    pub per_username: usize,
    pub per_source: usize,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig { per_username: 5, per_source: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// Failed logins in the recent window, per username and per source, kept in this process.
pub struct LoginThrottle {
    config: ThrottleConfig,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_username: HashMap<String, Window>,
    by_source: HashMap<String, Window>,
}

#[derive(Default)]
struct Window {
    at: VecDeque<Instant>,
    /// Whether the refusal for this lock has been recorded as an event already (one per lock,
    /// so a flood of refused attempts cannot flood the log).
    refusal_recorded: bool,
}

/// Why a login is refused before its password is even checked.
pub struct Throttled {
    pub retry_after: Duration,
    /// True for the first refusal of this lock: record it as an event.
    pub first_refusal: bool,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle { config, failures: Mutex::default() }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    pub fn check(&self, username: &str, source: &str) -> Result<(), Throttled> {
        let now = Instant::now();
        let window = self.config.window;
        let mut guard = self.failures.lock().expect("throttle lock");
        let failures = &mut *guard;
        let mut verdict = Ok(());
        for (map, key, limit) in [
            (&mut failures.by_username, username, self.config.per_username),
            (&mut failures.by_source, source, self.config.per_source),
        ] {
            let Some(entry) = map.get_mut(key) else { continue };
            while entry.at.front().is_some_and(|t| now.duration_since(*t) >= window) {
                entry.at.pop_front();
            }
            if entry.at.len() < limit {
                entry.refusal_recorded = false;
                continue;
            }
            let oldest = *entry.at.front().expect("a full window has entries");
            let retry_after = window.saturating_sub(now.duration_since(oldest));
            let first_refusal = !std::mem::replace(&mut entry.refusal_recorded, true);
            if verdict.is_ok() {
                verdict = Err(Throttled { retry_after, first_refusal });
            }
        }
        verdict
    }

    pub fn record_failure(&self, username: &str, source: &str) {
        let now = Instant::now();
        let mut guard = self.failures.lock().expect("throttle lock");
        let failures = &mut *guard;
        let window = self.config.window;
        for map in [&mut failures.by_username, &mut failures.by_source] {
            // Bounded memory under a spray of usernames: forget windows that have run out.
            if map.len() > 100_000 {
                map.retain(|_, w| w.at.back().is_some_and(|t| now.duration_since(*t) < window));
            }
        }
        failures.by_username.entry(username.to_owned()).or_default().at.push_back(now);
        failures.by_source.entry(source.to_owned()).or_default().at.push_back(now);
    }

    pub fn record_success(&self, username: &str) {
        self.failures.lock().expect("throttle lock").by_username.remove(username);
    }
}
