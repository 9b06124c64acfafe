//! X.509: internal certificate authorities and the certificates Unity keeps (issued by those CAs,
//! obtained over ACME, or imported).
//!
//! Two aggregates:
//! - `x509_ca`: a CA's creation (root or intermediate); its key is sealed in the vault;
//! - `certificate`: one certificate's life: issued or imported, revoked.
//!
//! Certificates and keys are made and parsed outside (unity-commands, rcgen and x509-parser);
//! what arrives here are their facts and the sealed private key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{credentials::check_name, decider::Decider, event::DomainEvent, SecretRef};

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
    Internal { ca_id: Uuid },
    Acme { account_id: Uuid },
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum X509CaEvent {
    CertificateAuthorityCreated {
        ca_id: Uuid,
        name: String,
        key_algorithm: X509KeyAlgorithm,
        path_length: Option<u8>,
        parent_id: Option<Uuid>,
        #[serde(flatten)]
        facts: CertificateFacts,
        certificate_pem: String,
        /// The parents' certificates, nearest first (empty for a root).
        chain_pem: String,
        private_key: SecretRef,
    },
}

impl DomainEvent for X509CaEvent {
    const STREAM_TYPE: &'static str = "x509_ca";
    fn event_type(&self) -> &'static str {
        "CertificateAuthorityCreated"
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("no such certificate authority")]
    CaNotFound,
    #[error("a certificate authority with this id exists already")]
    CaExists,
    #[error("no such certificate")]
    NotFound,
    #[error("a certificate with this id exists already")]
    Exists,
    #[error("this certificate is revoked")]
    Revoked,
    #[error("{0}")]
    Invalid(String),
}

/// Validity in days: 1 to 36,500.
pub fn check_validity_days(days: i64) -> Result<(), X509Error> {
    if !(1..=36_500).contains(&days) {
        return Err(X509Error::Invalid(format!("validityDays must be between 1 and 36500, not {days}")));
    }
    Ok(())
}

/// A DNS name in a SAN: labels of letters, digits and hyphens, optionally a leading `*.`.
pub fn check_dns_name(name: &str) -> Result<(), X509Error> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(X509Error::Invalid(format!("'{}' is not a DNS name", name.chars().take(80).collect::<String>())))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CreateCa {
    pub ca_id: Uuid,
    pub name: String,
    pub key_algorithm: X509KeyAlgorithm,
    pub path_length: Option<u8>,
    pub parent_id: Option<Uuid>,
    pub facts: CertificateFacts,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub private_key: SecretRef,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum X509CaState {
    #[default]
    Absent,
    Active(Box<CaData>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CaData {
    pub ca_id: Uuid,
    pub name: String,
    pub key_algorithm: X509KeyAlgorithm,
    pub path_length: Option<u8>,
    pub facts: CertificateFacts,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub private_key: SecretRef,
}

pub struct X509Ca;

impl Decider for X509Ca {
    type Command = CreateCa;
    type Event = X509CaEvent;
    type State = X509CaState;
    type Error = X509Error;

    fn decide(c: &CreateCa, state: &X509CaState) -> Result<Vec<X509CaEvent>, X509Error> {
        if *state != X509CaState::Absent {
            return Err(X509Error::CaExists);
        }
        check_name("a certificate authority", &c.name).map_err(|e| X509Error::Invalid(e.to_string()))?;
        if !c.facts.is_ca {
            return Err(X509Error::Invalid("a CA's certificate must say it is a CA".into()));
        }
        Ok(vec![X509CaEvent::CertificateAuthorityCreated {
            ca_id: c.ca_id,
            name: c.name.trim().to_owned(),
            key_algorithm: c.key_algorithm,
            path_length: c.path_length,
            parent_id: c.parent_id,
            facts: c.facts.clone(),
            certificate_pem: c.certificate_pem.clone(),
            chain_pem: c.chain_pem.clone(),
            private_key: c.private_key.clone(),
        }])
    }

    fn evolve(_: X509CaState, event: &X509CaEvent) -> X509CaState {
        let X509CaEvent::CertificateAuthorityCreated {
            ca_id,
            name,
            key_algorithm,
            path_length,
            facts,
            certificate_pem,
            chain_pem,
            private_key,
            ..
        } = event;
        X509CaState::Active(Box::new(CaData {
            ca_id: *ca_id,
            name: name.clone(),
            key_algorithm: *key_algorithm,
            path_length: *path_length,
            facts: facts.clone(),
            certificate_pem: certificate_pem.clone(),
            chain_pem: chain_pem.clone(),
            private_key: private_key.clone(),
        }))
    }
}

/// RFC 5280 revocation reasons Unity accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

// Issued carries the certificate itself; events are few and built once, so no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum CertificateEvent {
    CertificateIssued {
        certificate_id: Uuid,
        name: String,
        source: CertificateSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<CertificateUsage>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_algorithm: Option<X509KeyAlgorithm>,
        #[serde(flatten)]
        facts: CertificateFacts,
        certificate_pem: String,
        chain_pem: String,
        private_key: Option<SecretRef>,
    },
    CertificateRevoked {
        reason: RevocationReason,
        revoked_at: DateTime<Utc>,
    },
}

impl DomainEvent for CertificateEvent {
    const STREAM_TYPE: &'static str = "certificate";
    fn event_type(&self) -> &'static str {
        match self {
            CertificateEvent::CertificateIssued { .. } => "CertificateIssued",
            CertificateEvent::CertificateRevoked { .. } => "CertificateRevoked",
        }
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum CertificateCommand {
    Record {
        certificate_id: Uuid,
        name: String,
        source: CertificateSource,
        usage: Option<CertificateUsage>,
        key_algorithm: Option<X509KeyAlgorithm>,
        facts: CertificateFacts,
        certificate_pem: String,
        chain_pem: String,
        private_key: Option<SecretRef>,
    },
    Revoke {
        reason: RevocationReason,
        at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum CertificateState {
    #[default]
    Absent,
    Active {
        source: CertificateSource,
        private_key: Option<SecretRef>,
        serial: String,
    },
    Revoked {
        source: CertificateSource,
        private_key: Option<SecretRef>,
    },
}

pub struct Certificate;

impl Decider for Certificate {
    type Command = CertificateCommand;
    type Event = CertificateEvent;
    type State = CertificateState;
    type Error = X509Error;

    fn decide(command: &CertificateCommand, state: &CertificateState) -> Result<Vec<CertificateEvent>, X509Error> {
        match (command, state) {
            (
                CertificateCommand::Record {
                    certificate_id,
                    name,
                    source,
                    usage,
                    key_algorithm,
                    facts,
                    certificate_pem,
                    chain_pem,
                    private_key,
                },
                CertificateState::Absent,
            ) => {
                check_name("a certificate", name).map_err(|e| X509Error::Invalid(e.to_string()))?;
                if facts.not_after <= facts.not_before {
                    return Err(X509Error::Invalid("the certificate's notAfter is not after its notBefore".into()));
                }
                Ok(vec![CertificateEvent::CertificateIssued {
                    certificate_id: *certificate_id,
                    name: name.trim().to_owned(),
                    source: source.clone(),
                    usage: *usage,
                    key_algorithm: *key_algorithm,
                    facts: facts.clone(),
                    certificate_pem: certificate_pem.clone(),
                    chain_pem: chain_pem.clone(),
                    private_key: private_key.clone(),
                }])
            }
            (CertificateCommand::Record { .. }, _) => Err(X509Error::Exists),
            (_, CertificateState::Absent) => Err(X509Error::NotFound),
            (CertificateCommand::Revoke { .. }, CertificateState::Revoked { .. }) => Ok(vec![]),
            (CertificateCommand::Revoke { reason, at }, CertificateState::Active { .. }) => {
                Ok(vec![CertificateEvent::CertificateRevoked { reason: *reason, revoked_at: *at }])
            }
        }
    }

    fn evolve(state: CertificateState, event: &CertificateEvent) -> CertificateState {
        match (state, event) {
            (_, CertificateEvent::CertificateIssued { source, private_key, facts, .. }) => CertificateState::Active {
                source: source.clone(),
                private_key: private_key.clone(),
                serial: facts.serial.clone(),
            },
            (CertificateState::Active { source, private_key, .. }, CertificateEvent::CertificateRevoked { .. }) => {
                CertificateState::Revoked { source, private_key }
            }
            (state, _) => state,
        }
    }
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::decider::spec::given;

    fn facts(is_ca: bool) -> CertificateFacts {
        CertificateFacts {
            subject: "CN=lab".into(),
            common_name: Some("lab".into()),
            issuer: "CN=lab".into(),
            serial: "01".into(),
            not_before: Utc.timestamp_opt(0, 0).unwrap(),
            not_after: Utc.timestamp_opt(1000, 0).unwrap(),
            dns_names: vec![],
            ip_addresses: vec![],
            fingerprint: "ab".into(),
            is_ca,
        }
    }

    fn record() -> CertificateCommand {
        CertificateCommand::Record {
            certificate_id: Uuid::from_u128(1),
            name: "web".into(),
            source: CertificateSource::Imported,
            usage: None,
            key_algorithm: None,
            facts: facts(false),
            certificate_pem: "pem".into(),
            chain_pem: String::new(),
            private_key: None,
        }
    }

    #[test]
    fn names_and_labels_are_checked() {
        for good in ["lab.example", "*.lab.example", "nas", "a-b.c1"] {
            assert!(check_dns_name(good).is_ok(), "{good}");
        }
        for bad in ["", "*.", "-a.b", "a..b", "a b", "a_b.c", "*.*.a"] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
        assert!(
            check_validity_days(0).is_err() && check_validity_days(36_501).is_err() && check_validity_days(90).is_ok()
        );
    }

    #[test]
    fn certificates_are_recorded_once_and_revoked_once() {
        let issued = Certificate::decide(&record(), &CertificateState::Absent).unwrap();
        given::<Certificate>(&issued).when(record()).then_error(X509Error::Exists);
        let at = Utc.timestamp_opt(500, 0).unwrap();
        let revoked = CertificateEvent::CertificateRevoked { reason: RevocationReason::KeyCompromise, revoked_at: at };
        given::<Certificate>(&issued)
            .when(CertificateCommand::Revoke { reason: RevocationReason::KeyCompromise, at })
            .then(&[revoked.clone()]);
        let mut history = issued.clone();
        history.push(revoked);
        given::<Certificate>(&history)
            .when(CertificateCommand::Revoke { reason: RevocationReason::Superseded, at })
            .then(&[]);
        given::<Certificate>(&[])
            .when(CertificateCommand::Revoke { reason: RevocationReason::Superseded, at })
            .then_error(X509Error::NotFound);
    }

    #[test]
    fn a_ca_must_be_a_ca() {
        let create = CreateCa {
            ca_id: Uuid::from_u128(1),
            name: "lab root".into(),
            key_algorithm: X509KeyAlgorithm::EcdsaP256,
            path_length: Some(1),
            parent_id: None,
            facts: facts(false),
            certificate_pem: "pem".into(),
            chain_pem: String::new(),
            private_key: SecretRef { secret_id: Uuid::from_u128(2), ciphertext: "c".into() },
        };
        assert!(matches!(X509Ca::decide(&create, &X509CaState::Absent), Err(X509Error::Invalid(_))));
        let create = CreateCa { facts: facts(true), ..create };
        let events = X509Ca::decide(&create, &X509CaState::Absent).unwrap();
        given::<X509Ca>(&events).when(create).then_error(X509Error::CaExists);
    }
}
