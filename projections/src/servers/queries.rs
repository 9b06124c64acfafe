//! What the API and the reactors read about servers.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InstallationRow {
    pub server_id: Uuid,
    pub server_name: String,
    pub file: Value,
    pub entry_kind: String,
    pub entry_id: Uuid,
    pub fingerprint: String,
    pub installed_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

const INSTALLATION: &str =
    "SELECT i.server_id, s.name AS server_name, i.file, i.entry_kind, i.entry_id, i.fingerprint, \
     i.installed_at, i.removed_at FROM ssh_installations i JOIN servers s USING (server_id)";

/// Where a key (or CA) is installed now.
pub async fn installations_of(pool: &PgPool, entry_id: Uuid) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.entry_id = $1 AND i.removed_at IS NULL AND s.removed_at IS NULL ORDER BY s.name, i.installed_at"
    )))
    .bind(entry_id)
    .fetch_all(pool)
    .await
}

/// What Unity has installed on a server now.
pub async fn installations_on(pool: &PgPool, server_id: Uuid) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.server_id = $1 AND i.removed_at IS NULL ORDER BY i.installed_at"
    )))
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// Every stay of the key on any server that overlaps `[from, to]`.
pub async fn key_exposure(
    pool: &PgPool,
    entry_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<InstallationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{INSTALLATION} WHERE i.entry_id = $1 AND i.installed_at <= $3 AND (i.removed_at IS NULL OR i.removed_at >= $2) \
         ORDER BY i.installed_at, s.name"
    )))
    .bind(entry_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerRow {
    pub server_id: Uuid,
    pub name: String,
    pub address: String,
    pub port: i32,
    pub username: String,
    pub auth_kind: String,
    pub auth_id: Uuid,
    pub authorized_keys_file: String,
    pub tags: Vec<String>,
    pub host_key: Option<String>,
    pub host_key_status: String,
    pub presented_host_key: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    pub rtt_ms: Option<f64>,
    pub last_test_at: Option<DateTime<Utc>>,
    pub last_test_error: Option<String>,
    pub drift: Value,
    pub certificate_drift: Value,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

pub async fn servers(pool: &PgPool, after: Option<Uuid>, limit: i64) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM servers WHERE removed_at IS NULL AND ($1::uuid IS NULL OR server_id > $1) \
         ORDER BY server_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn server(pool: &PgPool, server_id: Uuid) -> Result<Option<ServerRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM servers WHERE server_id = $1").bind(server_id).fetch_optional(pool).await
}

/// Servers (not removed) that log in with this key or credential.
pub async fn servers_authenticating_with(pool: &PgPool, auth_id: Uuid) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM servers WHERE auth_id = $1 AND removed_at IS NULL ORDER BY name")
        .bind(auth_id)
        .fetch_all(pool)
        .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RequestRow {
    pub request_id: Uuid,
    pub server_id: Uuid,
    pub kind: String,
    pub state: String,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn requests(pool: &PgPool, request_ids: &[Uuid]) -> Result<Vec<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_id, server_id, kind, state, error, requested_at, finished_at FROM ssh_requests \
         WHERE request_id = ANY($1)",
    )
    .bind(request_ids)
    .fetch_all(pool)
    .await
}

/// Follow-up requests opened by the given ones' outcomes (a rotation's removal of the old key).
pub async fn removal_of(
    pool: &PgPool,
    server_id: Uuid,
    entry_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_id, server_id, kind, state, error, requested_at, finished_at FROM ssh_requests \
         WHERE server_id = $1 AND entry_id = $2 AND kind = 'REMOVE' AND requested_at >= $3 \
         ORDER BY requested_at DESC LIMIT 1",
    )
    .bind(server_id)
    .bind(entry_id)
    .bind(since)
    .fetch_optional(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeploymentRow {
    pub server_id: Uuid,
    pub server_name: String,
    pub cert_path: String,
    pub certificate_id: Uuid,
    pub deployment: Value,
    pub fingerprint: String,
    pub reload_exit_status: Option<i32>,
    pub deployed_at: DateTime<Utc>,
}

/// Where a certificate is deployed now.
pub async fn deployments_of(pool: &PgPool, certificate_id: Uuid) -> Result<Vec<DeploymentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.server_id, s.name AS server_name, d.cert_path, d.certificate_id, d.deployment, d.fingerprint, \
         d.reload_exit_status, d.deployed_at FROM certificate_deployments d JOIN servers s USING (server_id) \
         WHERE d.certificate_id = $1 AND s.removed_at IS NULL ORDER BY s.name, d.cert_path",
    )
    .bind(certificate_id)
    .fetch_all(pool)
    .await
}

/// A deployment of a certificate that has since been renewed: where it is, and the newest
/// certificate in its line of renewals (current, not revoked).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StaleDeploymentRow {
    pub server_id: Uuid,
    pub cert_path: String,
    pub certificate_id: Uuid,
    pub deployment: serde_json::Value,
    pub newest_id: Uuid,
}

/// Deployments to bring up to date: the deployed certificate was renewed, and no deployment of
/// the newest renewal to that server is pending. Reads the certificates read model too.
pub async fn stale_deployments(pool: &PgPool) -> Result<Vec<StaleDeploymentRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH RECURSIVE line(start_id, current_id) AS ( \
             SELECT certificate_id, renewed_by FROM certificates WHERE renewed_by IS NOT NULL \
             UNION ALL \
             SELECT line.start_id, c.renewed_by FROM line JOIN certificates c ON c.certificate_id = line.current_id \
             WHERE c.renewed_by IS NOT NULL) \
         SELECT d.server_id, d.cert_path, d.certificate_id, d.deployment, line.current_id AS newest_id \
         FROM certificate_deployments d \
         JOIN servers s ON s.server_id = d.server_id AND s.removed_at IS NULL \
         JOIN line ON line.start_id = d.certificate_id \
         JOIN certificates newest ON newest.certificate_id = line.current_id \
              AND newest.renewed_by IS NULL AND newest.revoked_at IS NULL \
         WHERE NOT EXISTS (SELECT 1 FROM ssh_requests r WHERE r.server_id = d.server_id AND r.kind = 'DEPLOY' \
              AND r.entry_id = line.current_id AND r.state = 'PENDING') \
         ORDER BY d.server_id, d.cert_path",
    )
    .fetch_all(pool)
    .await
}
