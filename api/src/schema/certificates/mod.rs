//! The certificates part of the schema: internal X.509 CAs, certificates (issued, ACME, imported),
//! revocation, deployment and renewal.

use unity_commands::certificates::X509CommandError;
use unity_domain::certificates::RevocationReason;
use uuid::Uuid;

use crate::{
    errors::{ApiError, Code},
    schema::Context,
};

mod mutation;
mod query;
mod types;

pub use mutation::*;
pub use query::*;
pub use types::*;

impl From<X509CommandError> for ApiError {
    fn from(e: X509CommandError) -> ApiError {
        match e {
            X509CommandError::Rejected(e) => ApiError::refused(&e),
            X509CommandError::BadInput(message) => ApiError::bad_input(message),
            X509CommandError::Crypto(e) => ApiError::internal("x509", &e),
            X509CommandError::AlreadyImported(id) => {
                ApiError::new(Code::Conflict, format!("this certificate was imported already as certificate {id}"))
            }
            X509CommandError::Contended(_) => ApiError::contended(),
            X509CommandError::Store(e) => e.into(),
            X509CommandError::Vault(e) => e.into(),
        }
    }
}

pub fn status_text(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Valid => "VALID",
        CertificateStatus::Expiring => "EXPIRING",
        CertificateStatus::Expired => "EXPIRED",
        CertificateStatus::Revoked => "REVOKED",
    }
}

pub fn source_text(source: CertificateSourceValue) -> &'static str {
    match source {
        CertificateSourceValue::Internal => "INTERNAL",
        CertificateSourceValue::Acme => "ACME",
        CertificateSourceValue::Imported => "IMPORTED",
    }
}

/// IP addresses as given, each checked.
pub fn parse_ips(raw: &[String]) -> Result<Vec<std::net::IpAddr>, ApiError> {
    raw.iter()
        .map(|s| {
            s.trim().parse().map_err(|_| {
                ApiError::bad_input(format!("'{}' is not an IP address", s.chars().take(60).collect::<String>()))
            })
        })
        .collect()
}

pub fn days(value: Option<i32>, default: i64) -> i64 {
    value.map_or(default, i64::from)
}

/// Fills in where each certificate is deployed.
pub async fn with_deployments(pool: &sqlx::PgPool, mut certificate: Certificate) -> Result<Certificate, ApiError> {
    let certificate_id: uuid::Uuid = certificate.id.parse().map_err(|e| ApiError::internal("certificate id", &e))?;
    certificate.deployments = unity_projections::servers::deployments_of(pool, certificate_id)
        .await?
        .into_iter()
        .map(CertificateDeploymentInfo::from)
        .collect();
    Ok(certificate)
}

/// Parses a stored reason (the domain's SCREAMING_SNAKE_CASE name).
pub fn stored_reason(text: &str) -> RevocationReason {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).unwrap_or(RevocationReason::Unspecified)
}

/// A certificate by id, with its status as of now and its deployments.
pub async fn certificate_by_id(ctx: &Context, id: Uuid) -> Result<Certificate, ApiError> {
    let row = unity_projections::certificates::certificate(ctx.state.store.pool(), id).await?;
    let row = row.ok_or_else(|| ApiError::not_found("certificate"))?;
    let certificate = Certificate::from_row(row, chrono::Utc::now(), ctx.state.config.expiring_days);
    with_deployments(ctx.state.store.pool(), certificate).await
}
