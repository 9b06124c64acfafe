//! Users, API keys and sessions, as the API reads them: who exists, their role, whether they are
//! disabled, their sealed password hash, their last login, and which bearer tokens are live.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use unity_commands::store::RecordedEvent;
use unity_domain::{
    identity::{username_stream_uuid, ApiKeyEvent, LoginEvent, SessionEvent, UserEvent},
    DomainEvent, SecretRef,
};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, Projection, IN_BATCH};

pub struct UsersProjection;

impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn model_version(&self) -> i32 {
        // 3: each user's login stream, which the logins fold groups by.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users", "api_keys", "sessions"]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE users (
                id            uuid        PRIMARY KEY,
                username      text        NOT NULL UNIQUE,
                role          text        NOT NULL,
                disabled      boolean     NOT NULL DEFAULT false,
                password_hash jsonb       NOT NULL,
                password_secret uuid      NOT NULL,
                created_at    timestamptz NOT NULL,
                updated_at    timestamptz NOT NULL,
                last_login_at timestamptz,
                failed_logins bigint      NOT NULL DEFAULT 0,
                -- The UUID of the user's `login` stream (from the username, which never changes).
                login_stream  uuid        NOT NULL UNIQUE,
                version       bigint      NOT NULL)",
            "CREATE TABLE api_keys (
                id           uuid        PRIMARY KEY,
                owner_id     uuid        NOT NULL,
                name         text        NOT NULL,
                role         text        NOT NULL,
                token_sha256 text        NOT NULL UNIQUE,
                expires_at   timestamptz,
                created_at   timestamptz NOT NULL,
                revoked_at   timestamptz)",
            "CREATE TABLE sessions (
                id              uuid        PRIMARY KEY,
                user_id         uuid        NOT NULL,
                token_sha256    text        NOT NULL UNIQUE,
                password_secret uuid        NOT NULL,
                expires_at      timestamptz NOT NULL,
                source          text        NOT NULL,
                created_at      timestamptz NOT NULL,
                ended_at        timestamptz)",
        ]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX api_keys_by_owner ON api_keys (owner_id)",
            "CREATE INDEX sessions_by_user ON sessions (user_id)",
        ]
    }

    /// User and API key events come to Rust; logins, by far the most, are tallied in SQL.
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[UserEvent::STREAM_TYPE, ApiKeyEvent::STREAM_TYPE, SessionEvent::STREAM_TYPE])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(apply(conn, batch))
    }
}

async fn apply(conn: &mut PgConnection, batch: &Batch<'_>) -> Result<(), ApplyError> {
    for e in batch.events {
        match e.stream_type.as_str() {
            UserEvent::STREAM_TYPE => apply_user(conn, e).await?,
            ApiKeyEvent::STREAM_TYPE => apply_api_key(conn, e).await?,
            SessionEvent::STREAM_TYPE => apply_session(conn, e).await?,
            _ => {}
        }
    }
    // Logins folded per user: one UPDATE per batch, however many attempts it holds, grouped by
    // login stream (no payload to read for the bulk of them). A failure counts only with a
    // user_id: one recorded before the username was taken is no user's. Reads
    // `LoginSucceeded`/`LoginFailed` at schema version 1 (their only version so far); a new
    // version needs its shape handled here too.
    let [a, b, c, d] = batch.bounds();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE users u SET last_login_at = greatest(u.last_login_at, t.last_success), failed_logins = u.failed_logins + t.failures \
         FROM (SELECT stream_uuid, \
                      max(recorded_at) FILTER (WHERE event_type = (SELECT key FROM event_types WHERE name = 'LoginSucceeded')) \
                          AS last_success, \
                      count(*) FILTER (WHERE event_type = (SELECT key FROM event_types WHERE name = 'LoginFailed') \
                                         AND payload->>'user_id' IS NOT NULL) AS failures \
               FROM event_log_permanent \
               WHERE stream_type = (SELECT key FROM stream_types WHERE name = '{login}') AND {IN_BATCH} \
               GROUP BY 1) t \
         WHERE u.login_stream = t.stream_uuid",
        login = LoginEvent::STREAM_TYPE
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_user(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    let user_id = e.stream_id.rsplit_once("user-").and_then(|(_, id)| id.parse::<Uuid>().ok());
    let user_id = user_id
        .ok_or_else(|| ApplyError::Poison { event_id: e.event_id, reason: "malformed user stream id".into() })?;
    let query = match e.decode::<UserEvent>()? {
        UserEvent::UserCreated { user_id, username, role, password_hash } => sqlx::query(
            "INSERT INTO users (id, username, role, password_hash, password_secret, login_stream, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(user_id)
        .bind(username.as_str().to_owned())
        .bind(role.as_str())
        .bind(serde_json::to_value(&password_hash).expect("secret refs serialize"))
        .bind(password_hash.secret_id)
        .bind(username_stream_uuid(&username)),
        UserEvent::UserRoleChanged { role, .. } => {
            sqlx::query("UPDATE users SET role = $2, updated_at = $3, version = $4 WHERE id = $1 AND version < $4")
                .bind(user_id)
                .bind(role.as_str())
        }
        UserEvent::UserPasswordChanged { password_hash } => sqlx::query(
            "UPDATE users SET password_hash = $2, password_secret = $3, updated_at = $4, version = $5 \
             WHERE id = $1 AND version < $5",
        )
        .bind(user_id)
        .bind(serde_json::to_value(&password_hash).expect("secret refs serialize"))
        .bind(password_hash.secret_id),
        UserEvent::UserDisabled { .. } => sqlx::query(
            "UPDATE users SET disabled = true, updated_at = $2, version = $3 WHERE id = $1 AND version < $3",
        )
        .bind(user_id),
    };
    query.bind(e.recorded_at).bind(e.stream_version).execute(&mut *conn).await?;
    Ok(())
}

async fn apply_api_key(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    match e.decode::<ApiKeyEvent>()? {
        ApiKeyEvent::ApiKeyIssued { key_id, owner_id, name, role, token_sha256, expires_at } => {
            sqlx::query(
                "INSERT INTO api_keys (id, owner_id, name, role, token_sha256, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(key_id)
            .bind(owner_id)
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(expires_at)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        ApiKeyEvent::ApiKeyRevoked {} => {
            let key_id = e.stream_id.strip_prefix("api_key-").and_then(|id| id.parse::<Uuid>().ok());
            sqlx::query("UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
                .bind(key_id)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn apply_session(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    match e.decode::<SessionEvent>()? {
        SessionEvent::SessionStarted { session_id, user_id, token_sha256, password_secret, expires_at, source } => {
            sqlx::query(
                "INSERT INTO sessions (id, user_id, token_sha256, password_secret, expires_at, source, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            )
            .bind(session_id)
            .bind(user_id)
            .bind(token_sha256)
            .bind(password_secret)
            .bind(expires_at)
            .bind(source)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        SessionEvent::SessionEnded { .. } => {
            let session_id = e.stream_id.strip_prefix("session-").and_then(|id| id.parse::<Uuid>().ok());
            sqlx::query("UPDATE sessions SET ended_at = coalesce(ended_at, $2) WHERE id = $1")
                .bind(session_id)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// A user as the read model holds it.
#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub disabled: bool,
    pub password_hash: SecretRef,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub failed_logins: i64,
}

const USER_COLUMNS: &str = "id, username, role, disabled, password_hash, created_at, last_login_at, failed_logins";

fn user_from_row(r: &sqlx::postgres::PgRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.get(0),
        username: r.get(1),
        role: r.get(2),
        disabled: r.get(3),
        password_hash: serde_json::from_value(r.get(4)).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        created_at: r.get(5),
        last_login_at: r.get(6),
        failed_logins: r.get(7),
    })
}

pub async fn user_by_username(pool: &PgPool, username: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1")))
        .bind(username.to_ascii_lowercase())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Users ordered by username, after `after` (a username), at most `limit`.
pub async fn users(pool: &PgPool, after: Option<&str>, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username > coalesce($1, '') ORDER BY username LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn user_by_id(pool: &PgPool, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Whose a live bearer token is. `role` is what the token grants: the user's role for a session,
/// and for an API key the lower of the key's role and its owner's current role.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenOwner {
    pub user_id: Uuid,
    pub username: String,
    /// The session's user's role, or the API key's own role.
    pub role: String,
    /// The user's role.
    pub user_role: String,
    /// The session's or the API key's id.
    pub credential_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// When the session or the API key expires by time (never, for a key without expiry).
    pub expires_at: Option<DateTime<Utc>>,
}

fn token_owner(r: &sqlx::postgres::PgRow) -> TokenOwner {
    TokenOwner {
        user_id: r.get(0),
        username: r.get(1),
        role: r.get(2),
        user_role: r.get(3),
        credential_id: r.get(4),
        created_at: r.get(5),
        last_login_at: r.get(6),
        expires_at: r.get(7),
    }
}

/// The owner of a session token's hash, if the session is open, unexpired, opened with the user's
/// current password, and the user is not disabled.
pub async fn session_owner(pool: &PgPool, token_sha256: &str) -> Result<Option<TokenOwner>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.username, u.role, u.role, s.id, u.created_at, u.last_login_at, s.expires_at \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_sha256 = $1 AND s.ended_at IS NULL AND s.expires_at > now() \
           AND NOT u.disabled AND u.password_secret = s.password_secret",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(token_owner))
}

/// The owner of an API key's hash, if the key is neither revoked nor expired and its owner is not
/// disabled. `role` is the key's role; the caller caps it at the owner's (`user_role`).
pub async fn api_key_owner(pool: &PgPool, token_sha256: &str) -> Result<Option<TokenOwner>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.username, k.role, u.role, k.id, u.created_at, u.last_login_at, k.expires_at \
         FROM api_keys k JOIN users u ON u.id = k.owner_id \
         WHERE k.token_sha256 = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) \
           AND NOT u.disabled",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(token_owner))
}

/// Why the read model no longer accepts a token: the first of these that holds, in the order a
/// person would name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    UserDisabled,
    SessionEnded,
    PasswordChanged,
    KeyRevoked,
    Expired,
}

/// Why the session or API key with this hash is refused now (`None`: it is not, or it is
/// unknown).
pub async fn token_refusal(pool: &PgPool, token_sha256: &str) -> Result<Option<TokenRefusal>, sqlx::Error> {
    let session: Option<(bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT u.disabled, s.ended_at IS NOT NULL, u.password_secret <> s.password_secret, s.expires_at <= now() \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = $1",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await?;
    if let Some((disabled, ended, password_changed, expired)) = session {
        return Ok([
            (disabled, TokenRefusal::UserDisabled),
            (ended, TokenRefusal::SessionEnded),
            (password_changed, TokenRefusal::PasswordChanged),
            (expired, TokenRefusal::Expired),
        ]
        .into_iter()
        .find_map(|(holds, why)| holds.then_some(why)));
    }
    let key: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT u.disabled, k.revoked_at IS NOT NULL, coalesce(k.expires_at <= now(), false) \
         FROM api_keys k JOIN users u ON u.id = k.owner_id WHERE k.token_sha256 = $1",
    )
    .bind(token_sha256)
    .fetch_optional(pool)
    .await?;
    Ok(key.and_then(|(disabled, revoked, expired)| {
        [(disabled, TokenRefusal::UserDisabled), (revoked, TokenRefusal::KeyRevoked), (expired, TokenRefusal::Expired)]
            .into_iter()
            .find_map(|(holds, why)| holds.then_some(why))
    }))
}

/// An API key as the read model holds it (never its token).
#[derive(Clone, Debug)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn api_key_by_id(pool: &PgPool, id: Uuid) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, owner_id, name, role, expires_at, created_at, revoked_at FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| ApiKeyRow {
        id: r.get(0),
        owner_id: r.get(1),
        name: r.get(2),
        role: r.get(3),
        expires_at: r.get(4),
        created_at: r.get(5),
        revoked_at: r.get(6),
    }))
}
