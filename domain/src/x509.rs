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
        /// The certificate this one renews.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renewal_of: Option<Uuid>,
    },
    CertificateRevoked {
        reason: RevocationReason,
        revoked_at: DateTime<Utc>,
    },
    /// `None`: renew at two thirds of the lifetime.
    CertificateRenewalConfigured {
        renew_before_days: Option<u32>,
    },
    CertificateRenewed {
        replaced_by: Uuid,
    },
    /// A renewal that takes a while (an ACME order) is under way; no second one starts meanwhile.
    CertificateRenewalRequested {
        order_id: Uuid,
    },
    CertificateRenewalFailed {
        attempt: u32,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// A warning: the certificate expires soon (a threshold crossed, or a renewal failed).
    CertificateExpiring {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold_days: Option<u32>,
        not_after: DateTime<Utc>,
        cause: ExpiryCause,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryCause {
    Threshold,
    RenewalFailed,
}

impl DomainEvent for CertificateEvent {
    const STREAM_TYPE: &'static str = "certificate";
    fn event_type(&self) -> &'static str {
        match self {
            CertificateEvent::CertificateIssued { .. } => "CertificateIssued",
            CertificateEvent::CertificateRevoked { .. } => "CertificateRevoked",
            CertificateEvent::CertificateRenewalConfigured { .. } => "CertificateRenewalConfigured",
            CertificateEvent::CertificateRenewed { .. } => "CertificateRenewed",
            CertificateEvent::CertificateRenewalRequested { .. } => "CertificateRenewalRequested",
            CertificateEvent::CertificateRenewalFailed { .. } => "CertificateRenewalFailed",
            CertificateEvent::CertificateExpiring { .. } => "CertificateExpiring",
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
        renewal_of: Option<Uuid>,
    },
    Revoke {
        reason: RevocationReason,
        at: DateTime<Utc>,
    },
    ConfigureRenewal {
        renew_before_days: Option<u32>,
    },
    RecordRenewal {
        replaced_by: Uuid,
    },
    RequestRenewal {
        order_id: Uuid,
    },
    RecordRenewalFailure {
        error: String,
        now: DateTime<Utc>,
    },
    /// The daily check: warns once per threshold crossed (the tightest one, if several).
    CheckExpiry {
        now: DateTime<Utc>,
        thresholds: Vec<u32>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum CertificateState {
    #[default]
    Absent,
    Present(Box<CertificateData>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CertificateData {
    pub source: CertificateSource,
    pub private_key: Option<SecretRef>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub revoked: bool,
    pub replaced_by: Option<Uuid>,
    pub renew_before_days: Option<u32>,
    pub failed_attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The ACME order renewing it, while that order runs.
    pub renewal_order: Option<Uuid>,
    /// The tightest expiry threshold warned about so far.
    pub warned_threshold: Option<u32>,
}

impl CertificateData {
    /// When renewal is due: `renew_before_days` before expiry, or at two thirds of the lifetime.
    pub fn renew_at(&self) -> DateTime<Utc> {
        match self.renew_before_days {
            Some(days) => self.not_after - chrono::Duration::days(i64::from(days)),
            None => self.not_before + (self.not_after - self.not_before) * 2 / 3,
        }
    }

    /// Whether the renewal worker should renew it now.
    pub fn renewal_due(&self, now: DateTime<Utc>) -> bool {
        !self.revoked
            && self.replaced_by.is_none()
            && self.renewal_order.is_none()
            && now >= self.renew_at()
            && self.next_attempt_at.is_none_or(|at| now >= at)
    }
}

/// Retries after a failed renewal: 1 h, 2 h, 4 h, … at most a day apart.
pub fn renewal_backoff(attempt: u32) -> chrono::Duration {
    chrono::Duration::hours(1i64 << attempt.saturating_sub(1).min(5)).min(chrono::Duration::hours(24))
}

pub struct Certificate;

impl Decider for Certificate {
    type Command = CertificateCommand;
    type Event = CertificateEvent;
    type State = CertificateState;
    type Error = X509Error;

    fn decide(command: &CertificateCommand, state: &CertificateState) -> Result<Vec<CertificateEvent>, X509Error> {
        use CertificateCommand as C;
        use CertificateEvent as E;
        let data = match (command, state) {
            (
                C::Record {
                    certificate_id,
                    name,
                    source,
                    usage,
                    key_algorithm,
                    facts,
                    certificate_pem,
                    chain_pem,
                    private_key,
                    renewal_of,
                },
                CertificateState::Absent,
            ) => {
                check_name("a certificate", name).map_err(|e| X509Error::Invalid(e.to_string()))?;
                if facts.not_after <= facts.not_before {
                    return Err(X509Error::Invalid("the certificate's notAfter is not after its notBefore".into()));
                }
                return Ok(vec![E::CertificateIssued {
                    certificate_id: *certificate_id,
                    name: name.trim().to_owned(),
                    source: source.clone(),
                    usage: *usage,
                    key_algorithm: *key_algorithm,
                    facts: facts.clone(),
                    certificate_pem: certificate_pem.clone(),
                    chain_pem: chain_pem.clone(),
                    private_key: private_key.clone(),
                    renewal_of: *renewal_of,
                }]);
            }
            (C::Record { .. }, _) => return Err(X509Error::Exists),
            (_, CertificateState::Absent) => return Err(X509Error::NotFound),
            (_, CertificateState::Present(data)) => data,
        };
        match command {
            C::Record { .. } => unreachable!("handled above"),
            C::Revoke { .. } if data.revoked => Ok(vec![]),
            C::Revoke { reason, at } => Ok(vec![E::CertificateRevoked { reason: *reason, revoked_at: *at }]),
            _ if data.revoked => Err(X509Error::Revoked),
            C::ConfigureRenewal { renew_before_days } => {
                let lifetime_days = (data.not_after - data.not_before).num_days();
                if renew_before_days.is_some_and(|d| d == 0 || i64::from(d) >= lifetime_days) {
                    return Err(X509Error::Invalid(format!(
                        "renewBeforeDays must be between 1 and {} (the certificate lives {lifetime_days} days)",
                        (lifetime_days - 1).max(1)
                    )));
                }
                if *renew_before_days == data.renew_before_days {
                    return Ok(vec![]);
                }
                Ok(vec![E::CertificateRenewalConfigured { renew_before_days: *renew_before_days }])
            }
            C::RecordRenewal { replaced_by } => match data.replaced_by {
                Some(existing) if existing == *replaced_by => Ok(vec![]),
                Some(_) => Err(X509Error::Invalid("this certificate was renewed already".into())),
                None => Ok(vec![E::CertificateRenewed { replaced_by: *replaced_by }]),
            },
            C::RequestRenewal { order_id } => match (data.replaced_by, data.renewal_order) {
                (Some(_), _) => Err(X509Error::Invalid("this certificate was renewed already".into())),
                (None, Some(running)) if running == *order_id => Ok(vec![]),
                (None, Some(_)) => Err(X509Error::Invalid("a renewal of this certificate is under way".into())),
                (None, None) => Ok(vec![E::CertificateRenewalRequested { order_id: *order_id }]),
            },
            C::RecordRenewalFailure { error, now } => {
                let attempt = data.failed_attempts + 1;
                Ok(vec![
                    E::CertificateRenewalFailed {
                        attempt,
                        error: error.clone(),
                        next_attempt_at: *now + renewal_backoff(attempt),
                    },
                    E::CertificateExpiring {
                        threshold_days: None,
                        not_after: data.not_after,
                        cause: ExpiryCause::RenewalFailed,
                    },
                ])
            }
            C::CheckExpiry { now, thresholds } => {
                if data.replaced_by.is_some() || data.not_after <= *now {
                    return Ok(vec![]);
                }
                let days_left = (data.not_after - *now).num_seconds() as f64 / 86_400.0;
                let tightest = thresholds.iter().copied().filter(|t| days_left <= f64::from(*t)).min();
                match tightest {
                    Some(t) if data.warned_threshold.is_none_or(|w| t < w) => Ok(vec![E::CertificateExpiring {
                        threshold_days: Some(t),
                        not_after: data.not_after,
                        cause: ExpiryCause::Threshold,
                    }]),
                    _ => Ok(vec![]),
                }
            }
        }
    }

    fn evolve(state: CertificateState, event: &CertificateEvent) -> CertificateState {
        use CertificateEvent as E;
        let mut data = match (state, event) {
            (_, E::CertificateIssued { source, private_key, facts, .. }) => {
                return CertificateState::Present(Box::new(CertificateData {
                    source: source.clone(),
                    private_key: private_key.clone(),
                    not_before: facts.not_before,
                    not_after: facts.not_after,
                    revoked: false,
                    replaced_by: None,
                    renew_before_days: None,
                    failed_attempts: 0,
                    next_attempt_at: None,
                    renewal_order: None,
                    warned_threshold: None,
                }))
            }
            (CertificateState::Present(data), _) => data,
            (state, _) => return state,
        };
        match event {
            E::CertificateIssued { .. } => {}
            E::CertificateRevoked { .. } => data.revoked = true,
            E::CertificateRenewalConfigured { renew_before_days } => data.renew_before_days = *renew_before_days,
            E::CertificateRenewed { replaced_by } => {
                data.replaced_by = Some(*replaced_by);
                data.renewal_order = None;
            }
            E::CertificateRenewalRequested { order_id } => data.renewal_order = Some(*order_id),
            E::CertificateRenewalFailed { attempt, next_attempt_at, .. } => {
                data.renewal_order = None;
                data.failed_attempts = *attempt;
                data.next_attempt_at = Some(*next_attempt_at);
            }
            E::CertificateExpiring { threshold_days: Some(t), .. } => data.warned_threshold = Some(*t),
            E::CertificateExpiring { .. } => {}
        }
        CertificateState::Present(data)
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
            renewal_of: None,
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

    fn lived(days: i64) -> Vec<CertificateEvent> {
        let CertificateCommand::Record { certificate_id, name, source, facts, certificate_pem, chain_pem, .. } =
            record()
        else {
            unreachable!()
        };
        let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let facts = CertificateFacts { not_before: t0, not_after: t0 + chrono::Duration::days(days), ..facts };
        vec![CertificateEvent::CertificateIssued {
            certificate_id,
            name,
            source,
            usage: None,
            key_algorithm: None,
            facts,
            certificate_pem,
            chain_pem,
            private_key: None,
            renewal_of: None,
        }]
    }

    #[test]
    fn renewal_is_due_at_two_thirds_or_as_configured_and_backs_off_after_failures() {
        let history = lived(90);
        let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
        let t0 = data.not_before;
        assert_eq!(data.renew_at(), t0 + chrono::Duration::days(60));
        assert!(
            !data.renewal_due(t0 + chrono::Duration::days(59)) && data.renewal_due(t0 + chrono::Duration::days(60))
        );
        given::<Certificate>(&history)
            .when(CertificateCommand::ConfigureRenewal { renew_before_days: Some(90) })
            .then_error(X509Error::Invalid(
                "renewBeforeDays must be between 1 and 89 (the certificate lives 90 days)".into(),
            ));
        let mut configured = history.clone();
        configured.extend(
            Certificate::decide(
                &CertificateCommand::ConfigureRenewal { renew_before_days: Some(10) },
                &Certificate::fold(&history),
            )
            .unwrap(),
        );
        let CertificateState::Present(data) = Certificate::fold(&configured) else { panic!() };
        assert_eq!(data.renew_at(), t0 + chrono::Duration::days(80));
        let now = t0 + chrono::Duration::days(81);
        let failed = Certificate::decide(
            &CertificateCommand::RecordRenewalFailure { error: "CA expired".into(), now },
            &Certificate::fold(&configured),
        )
        .unwrap();
        assert!(matches!(failed[1], CertificateEvent::CertificateExpiring { cause: ExpiryCause::RenewalFailed, .. }));
        configured.extend(failed);
        let CertificateState::Present(data) = Certificate::fold(&configured) else { panic!() };
        assert!(!data.renewal_due(now) && data.renewal_due(now + chrono::Duration::hours(1)));
        assert_eq!(renewal_backoff(3), chrono::Duration::hours(4));
        assert_eq!(renewal_backoff(30), chrono::Duration::hours(24));
    }

    #[test]
    fn an_ordered_renewal_runs_once_and_is_closed_by_its_outcome() {
        let history = lived(90);
        let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let due = t0 + chrono::Duration::days(61);
        let order_id = Uuid::from_u128(7);
        let mut history = history;
        history.extend(
            Certificate::decide(&CertificateCommand::RequestRenewal { order_id }, &Certificate::fold(&history))
                .unwrap(),
        );
        let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
        assert!(!data.renewal_due(due), "not twice while the order runs");
        given::<Certificate>(&history).when(CertificateCommand::RequestRenewal { order_id }).then(&[]);
        given::<Certificate>(&history)
            .when(CertificateCommand::RequestRenewal { order_id: Uuid::from_u128(8) })
            .then_error(X509Error::Invalid("a renewal of this certificate is under way".into()));
        let failed = Certificate::decide(
            &CertificateCommand::RecordRenewalFailure { error: "refused".into(), now: due },
            &Certificate::fold(&history),
        )
        .unwrap();
        history.extend(failed);
        let CertificateState::Present(data) = Certificate::fold(&history) else { panic!() };
        assert_eq!(data.renewal_order, None);
        assert!(!data.renewal_due(due) && data.renewal_due(due + chrono::Duration::hours(1)), "backed off, then due");
    }

    #[test]
    fn expiry_warnings_come_once_per_threshold() {
        let mut history = lived(90);
        let t0 = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let thresholds = vec![30, 14, 7, 1];
        let check = |history: &[CertificateEvent], day: i64| {
            Certificate::decide(
                &CertificateCommand::CheckExpiry {
                    now: t0 + chrono::Duration::days(day),
                    thresholds: thresholds.clone(),
                },
                &Certificate::fold(history),
            )
            .unwrap()
        };
        assert!(check(&history, 59).is_empty(), "31 days left");
        let warned = check(&history, 61);
        assert!(matches!(warned[..], [CertificateEvent::CertificateExpiring { threshold_days: Some(30), .. }]));
        history.extend(warned);
        assert!(check(&history, 62).is_empty(), "not every day");
        // Checks missed for a while: only the tightest threshold crossed is reported.
        let warned = check(&history, 85);
        assert!(matches!(warned[..], [CertificateEvent::CertificateExpiring { threshold_days: Some(7), .. }]));
        history.extend(warned);
        assert!(check(&history, 86).is_empty());
        assert_eq!(check(&history, 89).len(), 1);
        assert!(check(&history, 91).is_empty(), "expired: nothing more to warn about");
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
