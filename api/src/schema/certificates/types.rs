//! Internal CAs, certificates and their deployments as the schema shows them, and their inputs.

use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_domain::certificates::{CertificateUsage, RevocationReason, X509KeyAlgorithm};
use unity_projections::certificates::{CertificateRow, X509CaRow};

use crate::schema::common::mirror_enum;
use crate::schema::common::*;

mirror_enum! {
    #[graphql(name = "CertificateKeyAlgorithm")]
    pub enum CertificateKeyAlgorithmValue => X509KeyAlgorithm {
        EcdsaP256,
        EcdsaP384,
        Ed25519,
        #[graphql(name = "RSA_2048")]
        Rsa2048,
        #[graphql(name = "RSA_4096")]
        Rsa4096,
    }
}

mirror_enum! {
    #[graphql(name = "CertificateUsage")]
    pub enum CertificateUsageValue => CertificateUsage {
        Server,
        Client,
        Both,
    }
}

mirror_enum! {
    #[graphql(name = "RevocationReason")]
    pub enum RevocationReasonValue => RevocationReason {
        Unspecified,
        KeyCompromise,
        CaCompromise,
        AffiliationChanged,
        Superseded,
        CessationOfOperation,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum CertificateSourceValue {
    Internal,
    Acme,
    Imported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum CertificateStatus {
    Valid,
    Expiring,
    Expired,
    Revoked,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateCertificateAuthorityInput {
    pub name: String,
    pub common_name: String,
    pub organization: Option<String>,
    /// Default ECDSA_P256.
    pub key_algorithm: Option<CertificateKeyAlgorithmValue>,
    /// Default 3650 (ten years).
    pub validity_days: Option<i32>,
    /// How many CA levels may follow below this one; unset: no limit.
    pub path_length: Option<i32>,
    /// Makes an intermediate signed by that CA.
    pub parent_id: Option<ID>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct IssueCertificateInput {
    pub ca_id: ID,
    pub name: Option<String>,
    pub common_name: String,
    pub dns_names: Option<Vec<String>>,
    pub ip_addresses: Option<Vec<String>>,
    /// Default 90.
    pub validity_days: Option<i32>,
    /// Default SERVER.
    pub usage: Option<CertificateUsageValue>,
    /// Default ECDSA_P256.
    pub key_algorithm: Option<CertificateKeyAlgorithmValue>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ImportCertificateInput {
    pub name: Option<String>,
    /// The certificate; a full chain (leaf first) is accepted too.
    pub certificate_pem: String,
    pub chain_pem: Option<String>,
    /// PKCS#8, PKCS#1 or SEC1, unencrypted.
    pub private_key_pem: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct RevokeCertificateInput {
    pub id: ID,
    /// Default UNSPECIFIED.
    pub reason: Option<RevocationReasonValue>,
}

#[derive(Clone, Debug, Default, GraphQLInputObject)]
pub struct CertificateFilterInput {
    /// Unrevoked certificates whose notAfter is within this many days (expired ones included).
    pub expiring_within_days: Option<i32>,
    pub ca_id: Option<ID>,
    pub source: Option<CertificateSourceValue>,
    pub status: Option<CertificateStatus>,
}

fn id(uuid: uuid::Uuid) -> ID {
    ID::new(uuid.to_string())
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CertificateAuthority {
    pub id: ID,
    pub name: String,
    pub key_algorithm: String,
    pub path_length: Option<i32>,
    pub parent_id: Option<ID>,
    pub subject: String,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub certificate_pem: String,
    /// The parents' certificates, nearest first.
    pub chain_pem: String,
    /// Where its CRL is served (DER; no sign-in needed).
    pub crl_path: String,
    pub created_at: DateTime<Utc>,
}

impl From<X509CaRow> for CertificateAuthority {
    fn from(r: X509CaRow) -> CertificateAuthority {
        CertificateAuthority {
            id: id(r.ca_id),
            name: r.name,
            key_algorithm: r.key_algorithm,
            path_length: r.path_length,
            parent_id: r.parent_id.map(id),
            subject: r.subject,
            serial: r.serial,
            not_before: r.not_before,
            not_after: r.not_after,
            fingerprint: r.fingerprint,
            certificate_pem: r.certificate_pem,
            chain_pem: r.chain_pem,
            crl_path: format!("/ca/{}/crl", r.ca_id),
            created_at: r.created_at,
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct Certificate {
    pub id: ID,
    pub name: String,
    pub source: String,
    pub ca_id: Option<ID>,
    pub usage: Option<String>,
    pub key_algorithm: Option<String>,
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    /// Hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub status: CertificateStatus,
    pub has_private_key: bool,
    /// Downloadable without a reveal: certificates are public.
    pub certificate_pem: String,
    pub chain_pem: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revocation_reason: Option<String>,
    /// The certificate this one renewed.
    pub renewal_of: Option<ID>,
    /// The certificate that renewed this one.
    pub renewed_by: Option<ID>,
    /// Unset: renewal at two thirds of the lifetime.
    pub renew_before_days: Option<i32>,
    pub renewal_failures: i32,
    pub last_renewal_error: Option<String>,
    pub next_renewal_attempt_at: Option<DateTime<Utc>>,
    /// Where it is deployed now.
    pub deployments: Vec<CertificateDeploymentInfo>,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CertificateDeploymentInfo {
    pub server_id: ID,
    pub server_name: String,
    pub cert_path: String,
    pub key_path: Option<String>,
    pub chain_path: Option<String>,
    pub fingerprint: String,
    pub reload_exit_status: Option<i32>,
    pub deployed_at: DateTime<Utc>,
}

impl From<unity_projections::servers::DeploymentRow> for CertificateDeploymentInfo {
    fn from(r: unity_projections::servers::DeploymentRow) -> CertificateDeploymentInfo {
        let spec: Option<unity_domain::servers::CertificateDeployment> = serde_json::from_value(r.deployment).ok();
        CertificateDeploymentInfo {
            server_id: id(r.server_id),
            server_name: r.server_name,
            cert_path: r.cert_path,
            key_path: spec.as_ref().and_then(|s| s.key_path.clone()),
            chain_path: spec.as_ref().and_then(|s| s.chain_path.clone()),
            fingerprint: r.fingerprint,
            reload_exit_status: r.reload_exit_status,
            deployed_at: r.deployed_at,
        }
    }
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct DeployCertificateInput {
    pub certificate_id: ID,
    pub server_id: ID,
    pub cert_path: String,
    /// Where the key goes (mode `mode`, default 0600); left out, the key stays in Unity.
    pub key_path: Option<String>,
    /// A separate chain file; left out, the certificate file holds the full chain.
    pub chain_path: Option<String>,
    /// `user` or `user:group` for the files written.
    pub owner: Option<String>,
    pub mode: Option<String>,
    /// Run with `sh -c` after the files are written (e.g. `systemctl reload nginx`).
    pub reload_command: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ConfigureCertificateRenewalInput {
    pub id: ID,
    /// Renew this many days before expiry; null: at two thirds of the lifetime.
    pub renew_before_days: Option<i32>,
}

impl Certificate {
    pub fn from_row(r: CertificateRow, now: DateTime<Utc>, expiring_days: i64) -> Certificate {
        let status = if r.revoked_at.is_some() {
            CertificateStatus::Revoked
        } else if r.not_after <= now {
            CertificateStatus::Expired
        } else if r.not_after <= now + chrono::Duration::days(expiring_days) {
            CertificateStatus::Expiring
        } else {
            CertificateStatus::Valid
        };
        Certificate {
            id: id(r.certificate_id),
            name: r.name,
            source: r.source,
            ca_id: r.ca_id.map(id),
            usage: r.usage,
            key_algorithm: r.key_algorithm,
            subject: r.subject,
            common_name: r.common_name,
            issuer: r.issuer,
            serial: r.serial,
            not_before: r.not_before,
            not_after: r.not_after,
            dns_names: r.dns_names,
            ip_addresses: r.ip_addresses,
            fingerprint: r.fingerprint,
            status,
            has_private_key: r.has_private_key,
            certificate_pem: r.certificate_pem,
            chain_pem: r.chain_pem,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            revocation_reason: r.revocation_reason,
            renewal_of: r.renewal_of.map(id),
            renewed_by: r.renewed_by.map(id),
            renew_before_days: r.renew_before_days,
            renewal_failures: r.renewal_failures,
            last_renewal_error: r.last_renewal_error,
            next_renewal_attempt_at: r.next_renewal_attempt_at,
            deployments: vec![],
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CertificateEdge {
    pub cursor: String,
    pub node: Certificate,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CertificateConnection {
    pub edges: Vec<CertificateEdge>,
    pub page_info: PageInfo,
}
