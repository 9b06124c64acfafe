use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{credentials::check_name, decider::Decider, SecretRef};

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

crate::domain_event!(
    CertificateEvent,
    "certificate",
    [
        CertificateIssued,
        CertificateRevoked,
        CertificateRenewalConfigured,
        CertificateRenewed,
        CertificateRenewalRequested,
        CertificateRenewalFailed,
        CertificateExpiring,
    ]
);

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

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
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

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
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
