use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum X509KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa4096,
}

impl X509KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            X509KeyAlgorithm::EcdsaP256 => "ECDSA_P256",
            X509KeyAlgorithm::EcdsaP384 => "ECDSA_P384",
            X509KeyAlgorithm::Ed25519 => "ED25519",
            X509KeyAlgorithm::Rsa2048 => "RSA_2048",
            X509KeyAlgorithm::Rsa4096 => "RSA_4096",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateUsage {
    Server,
    Client,
    Both,
}

/// Where a certificate came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateSource {
    Internal {
        ca_id: Uuid,
    },
    Acme {
        account_id: Uuid,
        /// The order that obtained it (its renewals are ordered the same way).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<Uuid>,
    },
    Imported,
}

impl CertificateSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            CertificateSource::Internal { .. } => "INTERNAL",
            CertificateSource::Acme { .. } => "ACME",
            CertificateSource::Imported => "IMPORTED",
        }
    }
}

/// What a certificate says, as parsed from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFacts {
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    /// Lower-case hex, whole bytes (as openssl prints it, without colons).
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    pub is_ca: bool,
}
