//! X.509 CAs and certificates, as the API reads them (and the CRL endpoint, its revocations).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use unity_commands::store::RecordedEvent;
use unity_domain::{
    certificates::{CertificateEvent, CertificateSource, X509CaEvent},
    DomainEvent, StreamId,
};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, Projection};

pub struct CertificatesProjection;

impl Projection for CertificatesProjection {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn model_version(&self) -> i32 {
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["x509_cas", "certificates"]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE x509_cas (
                ca_id        uuid        PRIMARY KEY,
                name         text        NOT NULL,
                key_algorithm text       NOT NULL,
                path_length  integer,
                parent_id    uuid,
                subject      text        NOT NULL,
                serial       text        NOT NULL,
                not_before   timestamptz NOT NULL,
                not_after    timestamptz NOT NULL,
                fingerprint  text        NOT NULL,
                certificate_pem text     NOT NULL,
                chain_pem    text        NOT NULL,
                created_at   timestamptz NOT NULL)",
            "CREATE TABLE certificates (
                certificate_id uuid      PRIMARY KEY,
                name         text        NOT NULL,
                source       text        NOT NULL,
                ca_id        uuid,
                account_id   uuid,
                usage        text,
                key_algorithm text,
                subject      text        NOT NULL,
                common_name  text,
                issuer       text        NOT NULL,
                serial       text        NOT NULL,
                not_before   timestamptz NOT NULL,
                not_after    timestamptz NOT NULL,
                dns_names    text[]      NOT NULL,
                ip_addresses text[]      NOT NULL,
                fingerprint  text        NOT NULL,
                has_private_key boolean  NOT NULL,
                certificate_pem text     NOT NULL,
                chain_pem    text        NOT NULL,
                created_at   timestamptz NOT NULL,
                revoked_at   timestamptz,
                revocation_reason text,
                renewal_of   uuid,
                renewed_by   uuid,
                renew_before_days integer,
                renewal_failures integer NOT NULL DEFAULT 0,
                last_renewal_error text,
                next_renewal_attempt_at timestamptz,
                renewal_order_id uuid,
                warned_threshold_days integer)",
        ]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE INDEX certificates_by_expiry ON certificates (not_after)",
            "CREATE INDEX certificates_by_ca ON certificates (ca_id) WHERE ca_id IS NOT NULL",
        ]
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[X509CaEvent::STREAM_TYPE, CertificateEvent::STREAM_TYPE])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in batch.events {
                let id = e
                    .stream_id
                    .parse::<StreamId>()
                    .map_err(|reason| ApplyError::Poison { event_id: e.event_id, reason })?
                    .id();
                match e.stream_type.as_str() {
                    X509CaEvent::STREAM_TYPE => apply_ca(conn, e, id).await?,
                    CertificateEvent::STREAM_TYPE => apply_certificate(conn, e, id).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

fn text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

async fn apply_ca(conn: &mut PgConnection, e: &RecordedEvent, ca_id: Uuid) -> Result<(), ApplyError> {
    let X509CaEvent::CertificateAuthorityCreated {
        name,
        key_algorithm,
        path_length,
        parent_id,
        facts,
        certificate_pem,
        chain_pem,
        ..
    } = e.decode::<X509CaEvent>()?;
    sqlx::query(
        "INSERT INTO x509_cas (ca_id, name, key_algorithm, path_length, parent_id, subject, serial, not_before, \
         not_after, fingerprint, certificate_pem, chain_pem, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) \
         ON CONFLICT DO NOTHING",
    )
    .bind(ca_id)
    .bind(name)
    .bind(key_algorithm.as_str())
    .bind(path_length.map(i32::from))
    .bind(parent_id)
    .bind(facts.subject)
    .bind(facts.serial)
    .bind(facts.not_before)
    .bind(facts.not_after)
    .bind(facts.fingerprint)
    .bind(certificate_pem)
    .bind(chain_pem)
    .bind(e.recorded_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_certificate(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<CertificateEvent>()? {
        CertificateEvent::CertificateIssued {
            name,
            source,
            usage,
            key_algorithm,
            facts,
            certificate_pem,
            chain_pem,
            private_key,
            renewal_of,
            ..
        } => {
            let (ca_id, account_id) = match &source {
                CertificateSource::Internal { ca_id } => (Some(*ca_id), None),
                CertificateSource::Acme { account_id, .. } => (None, Some(*account_id)),
                CertificateSource::Imported => (None, None),
            };
            sqlx::query(
                "INSERT INTO certificates (certificate_id, name, source, ca_id, account_id, usage, key_algorithm, subject, \
                 common_name, issuer, serial, not_before, not_after, dns_names, ip_addresses, fingerprint, has_private_key, \
                 certificate_pem, chain_pem, created_at, renewal_of) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(source.as_str())
            .bind(ca_id)
            .bind(account_id)
            .bind(usage.map(|u| text(&u)))
            .bind(key_algorithm.map(|k| k.as_str()))
            .bind(facts.subject)
            .bind(facts.common_name)
            .bind(facts.issuer)
            .bind(facts.serial)
            .bind(facts.not_before)
            .bind(facts.not_after)
            .bind(facts.dns_names)
            .bind(facts.ip_addresses)
            .bind(facts.fingerprint)
            .bind(private_key.is_some())
            .bind(certificate_pem)
            .bind(chain_pem)
            .bind(e.recorded_at)
            .bind(renewal_of)
            .execute(&mut *conn)
            .await?;
        }
        CertificateEvent::CertificateRenewalConfigured { renew_before_days } => {
            sqlx::query("UPDATE certificates SET renew_before_days = $2 WHERE certificate_id = $1")
                .bind(id)
                .bind(renew_before_days.map(|d| d as i32))
                .execute(&mut *conn)
                .await?;
        }
        CertificateEvent::CertificateRenewed { replaced_by } => {
            sqlx::query(
                "UPDATE certificates SET renewed_by = $2, last_renewal_error = NULL, next_renewal_attempt_at = NULL, \
                 renewal_order_id = NULL WHERE certificate_id = $1",
            )
            .bind(id)
            .bind(replaced_by)
            .execute(&mut *conn)
            .await?;
        }
        CertificateEvent::CertificateRenewalRequested { order_id } => {
            sqlx::query("UPDATE certificates SET renewal_order_id = $2 WHERE certificate_id = $1")
                .bind(id)
                .bind(order_id)
                .execute(&mut *conn)
                .await?;
        }
        CertificateEvent::CertificateRenewalFailed { attempt, error, next_attempt_at } => {
            sqlx::query(
                "UPDATE certificates SET renewal_failures = $2, last_renewal_error = $3, next_renewal_attempt_at = $4, \
                 renewal_order_id = NULL WHERE certificate_id = $1",
            )
            .bind(id)
            .bind(attempt as i32)
            .bind(error)
            .bind(next_attempt_at)
            .execute(&mut *conn)
            .await?;
        }
        CertificateEvent::CertificateExpiring { threshold_days, .. } => {
            if let Some(days) = threshold_days {
                sqlx::query("UPDATE certificates SET warned_threshold_days = $2 WHERE certificate_id = $1")
                    .bind(id)
                    .bind(days as i32)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        CertificateEvent::CertificateRevoked { reason, revoked_at } => {
            sqlx::query(
                "UPDATE certificates SET revoked_at = coalesce(revoked_at, $2), \
                 revocation_reason = coalesce(revocation_reason, $3) WHERE certificate_id = $1",
            )
            .bind(id)
            .bind(revoked_at)
            .bind(text(&reason))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct X509CaRow {
    pub ca_id: Uuid,
    pub name: String,
    pub key_algorithm: String,
    pub path_length: Option<i32>,
    pub parent_id: Option<Uuid>,
    pub subject: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub fingerprint: String,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub created_at: DateTime<Utc>,
}

pub async fn x509_cas(pool: &PgPool) -> Result<Vec<X509CaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM x509_cas ORDER BY ca_id").fetch_all(pool).await
}

pub async fn x509_ca(pool: &PgPool, ca_id: Uuid) -> Result<Option<X509CaRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM x509_cas WHERE ca_id = $1").bind(ca_id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CertificateRow {
    pub certificate_id: Uuid,
    pub name: String,
    pub source: String,
    pub ca_id: Option<Uuid>,
    pub account_id: Option<Uuid>,
    pub usage: Option<String>,
    pub key_algorithm: Option<String>,
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub fingerprint: String,
    pub has_private_key: bool,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
    pub renewal_of: Option<Uuid>,
    pub renewed_by: Option<Uuid>,
    pub renew_before_days: Option<i32>,
    pub renewal_failures: i32,
    pub last_renewal_error: Option<String>,
    pub next_renewal_attempt_at: Option<DateTime<Utc>>,
    pub renewal_order_id: Option<Uuid>,
    pub warned_threshold_days: Option<i32>,
}

/// Certificates Unity can renew by itself that are still current (not revoked, not renewed).
pub async fn renewable(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT certificate_id FROM certificates WHERE source IN ('INTERNAL', 'ACME') AND revoked_at IS NULL \
         AND renewed_by IS NULL ORDER BY not_after",
    )
    .fetch_all(pool)
    .await
}

/// Current certificates expiring within `days` of `now` (and not yet expired).
pub async fn expiring_within(pool: &PgPool, now: DateTime<Utc>, days: i32) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT certificate_id FROM certificates WHERE revoked_at IS NULL AND renewed_by IS NULL \
         AND not_after > $1 AND not_after <= $1 + make_interval(days => $2) ORDER BY not_after",
    )
    .bind(now)
    .bind(days)
    .fetch_all(pool)
    .await
}

/// What `certificates(filter:)` narrows by. `status` is computed from `now` and
/// `expiring_days`: REVOKED, EXPIRED, EXPIRING (within `expiring_days`) or VALID.
#[derive(Clone, Debug, Default)]
pub struct CertificateFilter {
    pub expiring_within_days: Option<i32>,
    pub ca_id: Option<Uuid>,
    pub source: Option<String>,
    pub status: Option<String>,
}

pub const STATUS_SQL: &str = "CASE WHEN revoked_at IS NOT NULL THEN 'REVOKED' WHEN not_after <= $1 THEN 'EXPIRED' \
     WHEN not_after <= $1 + make_interval(days => $2) THEN 'EXPIRING' ELSE 'VALID' END";

pub async fn certificates(
    pool: &PgPool,
    filter: &CertificateFilter,
    now: DateTime<Utc>,
    expiring_days: i32,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CertificateRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM certificates WHERE ($3::int IS NULL OR (not_after <= $1 + make_interval(days => $3) AND revoked_at IS NULL)) \
         AND ($4::uuid IS NULL OR ca_id = $4) AND ($5::text IS NULL OR source = $5) \
         AND ($6::text IS NULL OR {STATUS_SQL} = $6) AND ($7::uuid IS NULL OR certificate_id > $7) \
         ORDER BY certificate_id LIMIT $8"
    )))
    .bind(now)
    .bind(expiring_days)
    .bind(filter.expiring_within_days)
    .bind(filter.ca_id)
    .bind(&filter.source)
    .bind(&filter.status)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn certificate(pool: &PgPool, id: Uuid) -> Result<Option<CertificateRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM certificates WHERE certificate_id = $1").bind(id).fetch_optional(pool).await
}

/// A CA's revoked certificates: serial (hex), when, why.
pub async fn revoked_by(pool: &PgPool, ca_id: Uuid) -> Result<Vec<(String, DateTime<Utc>, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT serial, revoked_at, revocation_reason FROM certificates \
         WHERE ca_id = $1 AND revoked_at IS NOT NULL ORDER BY revoked_at",
    )
    .bind(ca_id)
    .fetch_all(pool)
    .await
}

/// Renewals that produced a certificate, and failed renewal attempts, for /metrics.
pub async fn renewal_counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE renewal_of IS NOT NULL), coalesce(sum(renewal_failures), 0)::bigint FROM certificates",
    )
    .fetch_one(pool)
    .await
}

/// Counts for /metrics: certificates by status, and seconds until the soonest unrevoked expiry.
pub async fn certificate_counts(
    pool: &PgPool,
    now: DateTime<Utc>,
    expiring_days: i32,
) -> Result<(Vec<(String, i64)>, Option<f64>), sqlx::Error> {
    let by_status: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STATUS_SQL} AS s, count(*) FROM certificates GROUP BY 1 ORDER BY 1"
    )))
    .bind(now)
    .bind(expiring_days)
    .fetch_all(pool)
    .await?;
    let soonest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM min(not_after) - $1)::float8 FROM certificates \
         WHERE revoked_at IS NULL AND not_after > $1",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok((by_status, soonest))
}
