use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    certificates::{check_dns_name, X509KeyAlgorithm},
    credentials::check_name,
    decider::Decider,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeKind {
    Http01,
    Dns01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "HTTP01",
            ChallengeKind::Dns01 => "DNS01",
        }
    }
}

/// What an order asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeOrderSpec {
    pub account_id: Uuid,
    /// The certificate's name in Unity (the first domain unless given).
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: ChallengeKind,
    pub key_algorithm: X509KeyAlgorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_provider_id: Option<Uuid>,
    /// The certificate this order renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_of: Option<Uuid>,
}

/// Why one identifier's authorization failed, in the directory's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationFailure {
    pub domain: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum AcmeOrderEvent {
    AcmeOrderRequested {
        order_id: Uuid,
        #[serde(flatten)]
        spec: AcmeOrderSpec,
    },
    AcmeOrderCreated {
        order_url: String,
    },
    /// A challenge is being answered: for HTTP-01 Unity serves `key_authorization` at
    /// `/.well-known/acme-challenge/{token}`; for DNS-01 it is the TXT value at `record`.
    AcmeChallengePublished {
        domain: String,
        challenge: ChallengeKind,
        token: String,
        key_authorization: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record: Option<String>,
    },
    AcmeAuthorizationValid {
        domain: String,
    },
    AcmeOrderCompleted {
        certificate_id: Uuid,
    },
    AcmeOrderFailed {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem_type: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        authorizations: Vec<AuthorizationFailure>,
    },
}

crate::domain_event!(
    AcmeOrderEvent,
    "acme_order",
    [
        AcmeOrderRequested,
        AcmeOrderCreated,
        AcmeChallengePublished,
        AcmeAuthorizationValid,
        AcmeOrderCompleted,
        AcmeOrderFailed,
    ]
);

#[derive(Clone, Debug, PartialEq)]
pub enum AcmeOrderCommand {
    Request {
        order_id: Uuid,
        spec: AcmeOrderSpec,
    },
    /// A step of a pending order, recorded by the reactor (any event but the request).
    Progress(AcmeOrderEvent),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum AcmeOrderState {
    #[default]
    Absent,
    Pending(Box<AcmeOrderSpec>),
    Completed {
        spec: Box<AcmeOrderSpec>,
        certificate_id: Uuid,
    },
    Failed {
        spec: Box<AcmeOrderSpec>,
        error: String,
    },
}

/// At most this many names in one order (Let's Encrypt's limit).
pub const MAX_ORDER_DOMAINS: usize = 100;

pub struct AcmeOrder;

impl Decider for AcmeOrder {
    type Command = AcmeOrderCommand;
    type Event = AcmeOrderEvent;
    type State = AcmeOrderState;
    type Error = AcmeError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        use AcmeOrderCommand as C;
        match (command, state) {
            (C::Request { order_id, spec }, AcmeOrderState::Absent) => {
                check_name("a certificate", &spec.name).map_err(|e| invalid(e.to_string()))?;
                if spec.domains.is_empty() || spec.domains.len() > MAX_ORDER_DOMAINS {
                    return Err(invalid(format!("an order needs 1 to {MAX_ORDER_DOMAINS} domains")));
                }
                for domain in &spec.domains {
                    check_dns_name(domain).map_err(|e| invalid(e.to_string()))?;
                    if domain.starts_with("*.") && spec.challenge == ChallengeKind::Http01 {
                        return Err(invalid(format!("{domain}: a wildcard name can only be validated with DNS01")));
                    }
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = spec.domains.iter().find(|d| !seen.insert(d.to_ascii_lowercase())) {
                    return Err(invalid(format!("{dup} is listed twice")));
                }
                if spec.challenge == ChallengeKind::Dns01 && spec.dns_provider_id.is_none() {
                    return Err(invalid("DNS01 needs a dnsProviderId"));
                }
                Ok(vec![AcmeOrderEvent::AcmeOrderRequested { order_id: *order_id, spec: spec.clone() }])
            }
            (C::Request { .. }, _) => Err(AcmeError::Exists),
            (C::Progress(_), AcmeOrderState::Absent) => Err(AcmeError::OrderNotFound),
            (C::Progress(AcmeOrderEvent::AcmeOrderRequested { .. }), _) => Err(invalid("an order is requested once")),
            (C::Progress(event), AcmeOrderState::Pending(_)) => Ok(vec![event.clone()]),
            (C::Progress(_), _) => Err(AcmeError::OrderFinished),
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        use AcmeOrderEvent as E;
        match (state, event) {
            (_, E::AcmeOrderRequested { spec, .. }) => AcmeOrderState::Pending(Box::new(spec.clone())),
            (AcmeOrderState::Pending(spec), E::AcmeOrderCompleted { certificate_id }) => {
                AcmeOrderState::Completed { spec, certificate_id: *certificate_id }
            }
            (AcmeOrderState::Pending(spec), E::AcmeOrderFailed { error, .. }) => {
                AcmeOrderState::Failed { spec, error: error.clone() }
            }
            (state, _) => state,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DNS providers (DNS-01)
