//! What the API and the reactors read about SSH keys, SSH CAs, server credentials and reports.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SshKeyRow {
    pub key_id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub bits: i32,
    pub fingerprint: String,
    pub public_key: String,
    pub comment: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub rotated_from: Option<Uuid>,
    pub replaced_by: Option<Uuid>,
    pub has_private_key: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Keys in creation order after `after`; deleted keys only if asked for.
pub async fn ssh_keys(
    pool: &PgPool,
    after: Option<Uuid>,
    limit: i64,
    include_deleted: bool,
) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_keys WHERE ($1::uuid IS NULL OR key_id > $1) AND ($3 OR deleted_at IS NULL) \
         ORDER BY key_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(include_deleted)
    .fetch_all(pool)
    .await
}

pub async fn ssh_key(pool: &PgPool, key_id: Uuid) -> Result<Option<SshKeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_keys WHERE key_id = $1").bind(key_id).fetch_optional(pool).await
}

/// Keys not used by Unity's sessions (nor created) in the last `days` days.
pub async fn unused_ssh_keys(pool: &PgPool, days: i32) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_keys WHERE deleted_at IS NULL AND replaced_by IS NULL \
         AND coalesce(last_used_at, created_at) < now() - make_interval(days => $1) ORDER BY key_id",
    )
    .bind(days)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SshCaRow {
    pub ca_id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    pub certificates: i64,
}

pub async fn ssh_cas(pool: &PgPool) -> Result<Vec<SshCaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_cas ORDER BY ca_id").fetch_all(pool).await
}

pub async fn ssh_ca(pool: &PgPool, ca_id: Uuid) -> Result<Option<SshCaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_cas WHERE ca_id = $1").bind(ca_id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CertificateRow {
    pub ca_id: Uuid,
    pub serial: i64,
    pub cert_type: String,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    pub extensions: Vec<String>,
    pub critical_options: Value,
    pub subject_fingerprint: String,
    pub signed_at: DateTime<Utc>,
    pub signed_by: String,
}

/// A CA's certificates, newest first, before serial `before`.
pub async fn certificates(
    pool: &PgPool,
    ca_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<CertificateRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ssh_certificates WHERE ca_id = $1 AND ($2::bigint IS NULL OR serial < $2) \
         ORDER BY serial DESC LIMIT $3",
    )
    .bind(ca_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerCredentialRow {
    pub credential_id: Uuid,
    pub name: String,
    pub kind: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub async fn server_credentials(pool: &PgPool) -> Result<Vec<ServerCredentialRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM server_credentials WHERE deleted_at IS NULL ORDER BY name, credential_id")
        .fetch_all(pool)
        .await
}

pub async fn server_credential(pool: &PgPool, id: Uuid) -> Result<Option<ServerCredentialRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM server_credentials WHERE credential_id = $1").bind(id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyReportRow {
    pub reported_at: DateTime<Utc>,
    pub unused_days: i32,
    pub keys: Value,
}

pub async fn latest_key_report(pool: &PgPool) -> Result<Option<KeyReportRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM ssh_key_reports ORDER BY reported_at DESC LIMIT 1").fetch_optional(pool).await
}

/// Counts for /metrics.
#[derive(Clone, Debug, Default)]
pub struct CredentialCounts {
    pub keys_by_algorithm: Vec<(String, i64)>,
    pub servers_by_host_key_status: Vec<(String, i64)>,
    /// (INSTALL | REMOVE, SUCCEEDED | FAILED, count)
    pub distributions: Vec<(String, String, i64)>,
    pub certificates_signed: i64,
}

pub async fn counts(pool: &PgPool) -> Result<CredentialCounts, sqlx::Error> {
    Ok(CredentialCounts {
        keys_by_algorithm: sqlx::query_as(
            "SELECT algorithm, count(*) FROM ssh_keys WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await?,
        servers_by_host_key_status: sqlx::query_as(
            "SELECT host_key_status, count(*) FROM servers WHERE removed_at IS NULL GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await?,
        distributions: sqlx::query_as(
            "SELECT kind, state, count(*) FROM ssh_requests WHERE kind IN ('INSTALL', 'REMOVE') \
             AND state <> 'PENDING' GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await?,
        certificates_signed: sqlx::query_scalar("SELECT count(*) FROM ssh_certificates").fetch_one(pool).await?,
    })
}
