//! ACME: accounts at a directory (Let's Encrypt, ZeroSSL, step-ca, Pebble, …), orders for
//! certificates, and the DNS providers that answer DNS-01 challenges.
//!
//! Three aggregates, all driven by the same request/outcome shape as servers: the API records
//! what is wanted (`…Requested`), the ACME reactor in unity-collectors talks to the directory and
//! records what happened. An order's progress (created, each challenge published, each
//! authorization valid, completed or failed) is a series of events on its own stream, so the
//! audit log and event consumers see it step by step.
//!
//! Nothing here is secret: an account's key and an EAB or TSIG key are `SecretRef`s; a
//! challenge's key authorization is public by design (the directory fetches it over plain HTTP
//! or reads it from public DNS).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    credentials::check_name,
    decider::Decider,
    event::DomainEvent,
    x509::{check_dns_name, X509KeyAlgorithm},
    SecretRef,
};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcmeError {
    #[error("no such ACME account")]
    AccountNotFound,
    #[error("this ACME account is not registered ({0})")]
    AccountNotRegistered(String),
    #[error("no such ACME order")]
    OrderNotFound,
    #[error("no such DNS provider")]
    DnsProviderNotFound,
    #[error("a record with this id exists already")]
    Exists,
    #[error("this ACME order is finished already")]
    OrderFinished,
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> AcmeError {
    AcmeError::Invalid(message.into())
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// What an account is registered with. The EAB HMAC key is sealed; the CA bundle is public.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeAccountSpec {
    pub name: String,
    pub directory_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_hmac_key: Option<SecretRef>,
    /// PEM certificates to trust for the directory's TLS, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_pem: Option<String>,
    pub terms_agreed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum AcmeAccountEvent {
    AcmeAccountRequested {
        account_id: Uuid,
        #[serde(flatten)]
        spec: AcmeAccountSpec,
    },
    AcmeAccountRegistered {
        /// The account's URL at the directory (its `kid`).
        account_url: String,
        /// instant-acme's account credentials (the account's private key inside), sealed.
        credentials: SecretRef,
    },
    AcmeAccountRegistrationFailed {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        problem_type: Option<String>,
    },
}

impl DomainEvent for AcmeAccountEvent {
    const STREAM_TYPE: &'static str = "acme_account";
    fn event_type(&self) -> &'static str {
        match self {
            AcmeAccountEvent::AcmeAccountRequested { .. } => "AcmeAccountRequested",
            AcmeAccountEvent::AcmeAccountRegistered { .. } => "AcmeAccountRegistered",
            AcmeAccountEvent::AcmeAccountRegistrationFailed { .. } => "AcmeAccountRegistrationFailed",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AcmeAccountCommand {
    Request { account_id: Uuid, spec: AcmeAccountSpec },
    RecordRegistered { account_url: String, credentials: SecretRef },
    RecordFailure { error: String, problem_type: Option<String> },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum AcmeAccountState {
    #[default]
    Absent,
    Pending(Box<AcmeAccountSpec>),
    Registered {
        spec: Box<AcmeAccountSpec>,
        account_url: String,
        credentials: SecretRef,
    },
    Failed {
        spec: Box<AcmeAccountSpec>,
        error: String,
    },
}

impl AcmeAccountState {
    pub fn spec(&self) -> Option<&AcmeAccountSpec> {
        match self {
            AcmeAccountState::Absent => None,
            AcmeAccountState::Pending(spec)
            | AcmeAccountState::Registered { spec, .. }
            | AcmeAccountState::Failed { spec, .. } => Some(spec),
        }
    }
}

/// A directory URL: absolute https (http only for a directory on this machine, as in tests).
pub fn check_directory_url(url: &str) -> Result<(), AcmeError> {
    let url = url.trim();
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| url.starts_with(p));
    if url.len() > 2048 || !(url.starts_with("https://") || local) || url.contains(char::is_whitespace) {
        return Err(invalid(format!(
            "directoryUrl must be an https:// URL, not '{}'",
            url.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

pub fn check_email(email: &str) -> Result<(), AcmeError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '<' || c == '>');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("'{}' is not an email address", email.chars().take(80).collect::<String>())))
    }
}

pub struct AcmeAccount;

impl Decider for AcmeAccount {
    type Command = AcmeAccountCommand;
    type Event = AcmeAccountEvent;
    type State = AcmeAccountState;
    type Error = AcmeError;

    fn decide(command: &AcmeAccountCommand, state: &AcmeAccountState) -> Result<Vec<AcmeAccountEvent>, AcmeError> {
        use AcmeAccountCommand as C;
        use AcmeAccountEvent as E;
        match (command, state) {
            (C::Request { account_id, spec }, AcmeAccountState::Absent) => {
                check_name("an ACME account", &spec.name).map_err(|e| invalid(e.to_string()))?;
                check_directory_url(&spec.directory_url)?;
                if let Some(email) = &spec.email {
                    check_email(email)?;
                }
                if spec.eab_kid.is_some() != spec.eab_hmac_key.is_some() {
                    return Err(invalid("external account binding needs both kid and hmacKey"));
                }
                if spec.eab_kid.as_ref().is_some_and(|k| k.trim().is_empty() || k.len() > 256) {
                    return Err(invalid("eab.kid must be 1 to 256 characters"));
                }
                let mut spec = spec.clone();
                spec.name = spec.name.trim().to_owned();
                spec.directory_url = spec.directory_url.trim().to_owned();
                Ok(vec![E::AcmeAccountRequested { account_id: *account_id, spec }])
            }
            (C::Request { .. }, _) => Err(AcmeError::Exists),
            (_, AcmeAccountState::Absent) => Err(AcmeError::AccountNotFound),
            // Outcomes close a pending registration once; a repeat (a reactor restarted after
            // recording it) changes nothing.
            (C::RecordRegistered { account_url, credentials }, AcmeAccountState::Pending(_)) => {
                Ok(vec![E::AcmeAccountRegistered {
                    account_url: account_url.clone(),
                    credentials: credentials.clone(),
                }])
            }
            (C::RecordFailure { error, problem_type }, AcmeAccountState::Pending(_)) => {
                Ok(vec![E::AcmeAccountRegistrationFailed { error: error.clone(), problem_type: problem_type.clone() }])
            }
            (_, _) => Ok(vec![]),
        }
    }

    fn evolve(state: AcmeAccountState, event: &AcmeAccountEvent) -> AcmeAccountState {
        use AcmeAccountEvent as E;
        match (state, event) {
            (_, E::AcmeAccountRequested { spec, .. }) => AcmeAccountState::Pending(Box::new(spec.clone())),
            (AcmeAccountState::Pending(spec), E::AcmeAccountRegistered { account_url, credentials }) => {
                AcmeAccountState::Registered {
                    spec,
                    account_url: account_url.clone(),
                    credentials: credentials.clone(),
                }
            }
            (AcmeAccountState::Pending(spec), E::AcmeAccountRegistrationFailed { error, .. }) => {
                AcmeAccountState::Failed { spec, error: error.clone() }
            }
            (state, _) => state,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Orders

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

impl DomainEvent for AcmeOrderEvent {
    const STREAM_TYPE: &'static str = "acme_order";
    fn event_type(&self) -> &'static str {
        match self {
            AcmeOrderEvent::AcmeOrderRequested { .. } => "AcmeOrderRequested",
            AcmeOrderEvent::AcmeOrderCreated { .. } => "AcmeOrderCreated",
            AcmeOrderEvent::AcmeChallengePublished { .. } => "AcmeChallengePublished",
            AcmeOrderEvent::AcmeAuthorizationValid { .. } => "AcmeAuthorizationValid",
            AcmeOrderEvent::AcmeOrderCompleted { .. } => "AcmeOrderCompleted",
            AcmeOrderEvent::AcmeOrderFailed { .. } => "AcmeOrderFailed",
        }
    }
}

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

    fn decide(command: &AcmeOrderCommand, state: &AcmeOrderState) -> Result<Vec<AcmeOrderEvent>, AcmeError> {
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

    fn evolve(state: AcmeOrderState, event: &AcmeOrderEvent) -> AcmeOrderState {
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

/// TSIG algorithms for RFC 2136 updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsProviderConfig {
    /// RFC 2136 dynamic updates (BIND, Knot, PowerDNS, Technitium), TSIG-signed if a key is given.
    Rfc2136 {
        /// host:port of the primary server.
        server: String,
        zone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_key_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_algorithm: Option<TsigAlgorithm>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_secret: Option<SecretRef>,
    },
    /// An HTTP endpoint that publishes and removes TXT records on Unity's behalf.
    Webhook {
        url: String,
        /// Sent as `Authorization: Bearer …` if set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token: Option<SecretRef>,
    },
}

impl DnsProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DnsProviderConfig::Rfc2136 { .. } => "RFC2136",
            DnsProviderConfig::Webhook { .. } => "WEBHOOK",
        }
    }

    /// The secrets it holds, to shred when it is deleted.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        match self {
            DnsProviderConfig::Rfc2136 { tsig_secret, .. } => tsig_secret.iter().collect(),
            DnsProviderConfig::Webhook { bearer_token, .. } => bearer_token.iter().collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum DnsProviderEvent {
    DnsProviderCreated { provider_id: Uuid, name: String, config: DnsProviderConfig },
    DnsProviderDeleted {},
}

impl DomainEvent for DnsProviderEvent {
    const STREAM_TYPE: &'static str = "dns_provider";
    fn event_type(&self) -> &'static str {
        match self {
            DnsProviderEvent::DnsProviderCreated { .. } => "DnsProviderCreated",
            DnsProviderEvent::DnsProviderDeleted { .. } => "DnsProviderDeleted",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DnsProviderCommand {
    Create { provider_id: Uuid, name: String, config: DnsProviderConfig },
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum DnsProviderState {
    #[default]
    Absent,
    Active {
        name: String,
        config: DnsProviderConfig,
    },
    Deleted,
}

fn check_host_port(server: &str) -> Result<(), AcmeError> {
    let ok = server.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("server must be host:port, not '{}'", server.chars().take(80).collect::<String>())))
    }
}

pub struct DnsProvider;

impl Decider for DnsProvider {
    type Command = DnsProviderCommand;
    type Event = DnsProviderEvent;
    type State = DnsProviderState;
    type Error = AcmeError;

    fn decide(command: &DnsProviderCommand, state: &DnsProviderState) -> Result<Vec<DnsProviderEvent>, AcmeError> {
        match (command, state) {
            (DnsProviderCommand::Create { provider_id, name, config }, DnsProviderState::Absent) => {
                check_name("a DNS provider", name).map_err(|e| invalid(e.to_string()))?;
                match config {
                    DnsProviderConfig::Rfc2136 { server, zone, tsig_key_name, tsig_algorithm, tsig_secret } => {
                        check_host_port(server)?;
                        check_dns_name(zone.trim_end_matches('.')).map_err(|e| invalid(e.to_string()))?;
                        let parts = [tsig_key_name.is_some(), tsig_algorithm.is_some(), tsig_secret.is_some()];
                        if parts.iter().any(|p| *p) && !parts.iter().all(|p| *p) {
                            return Err(invalid("a TSIG key needs its name, algorithm and secret"));
                        }
                        if let Some(key) = tsig_key_name {
                            check_dns_name(key.trim_end_matches('.'))
                                .map_err(|_| invalid(format!("'{key}' is not a TSIG key name")))?;
                        }
                    }
                    DnsProviderConfig::Webhook { url, .. } => {
                        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
                            return Err(invalid("the webhook url must be an http:// or https:// URL"));
                        }
                    }
                }
                Ok(vec![DnsProviderEvent::DnsProviderCreated {
                    provider_id: *provider_id,
                    name: name.trim().to_owned(),
                    config: config.clone(),
                }])
            }
            (DnsProviderCommand::Create { .. }, _) => Err(AcmeError::Exists),
            (DnsProviderCommand::Delete, DnsProviderState::Active { .. }) => {
                Ok(vec![DnsProviderEvent::DnsProviderDeleted {}])
            }
            (DnsProviderCommand::Delete, DnsProviderState::Deleted) => Ok(vec![]),
            (DnsProviderCommand::Delete, DnsProviderState::Absent) => Err(AcmeError::DnsProviderNotFound),
        }
    }

    fn evolve(state: DnsProviderState, event: &DnsProviderEvent) -> DnsProviderState {
        match event {
            DnsProviderEvent::DnsProviderCreated { name, config, .. } => {
                DnsProviderState::Active { name: name.clone(), config: config.clone() }
            }
            DnsProviderEvent::DnsProviderDeleted {} => match state {
                DnsProviderState::Absent => DnsProviderState::Absent,
                _ => DnsProviderState::Deleted,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::spec::given;

    fn spec() -> AcmeOrderSpec {
        AcmeOrderSpec {
            account_id: Uuid::from_u128(1),
            name: "www".into(),
            domains: vec!["www.lab.example".into()],
            challenge: ChallengeKind::Http01,
            key_algorithm: X509KeyAlgorithm::EcdsaP256,
            dns_provider_id: None,
            renewal_of: None,
        }
    }

    #[test]
    fn orders_are_checked_and_closed_once() {
        let order_id = Uuid::from_u128(9);
        let request = |spec| AcmeOrderCommand::Request { order_id, spec };
        let wildcard = AcmeOrderSpec { domains: vec!["*.lab.example".into()], ..spec() };
        assert!(matches!(AcmeOrder::decide(&request(wildcard), &AcmeOrderState::Absent), Err(AcmeError::Invalid(_))));
        let twice = AcmeOrderSpec { domains: vec!["a.example".into(), "A.example".into()], ..spec() };
        assert!(matches!(AcmeOrder::decide(&request(twice), &AcmeOrderState::Absent), Err(AcmeError::Invalid(_))));
        let dns = AcmeOrderSpec { challenge: ChallengeKind::Dns01, ..spec() };
        assert_eq!(
            AcmeOrder::decide(&request(dns), &AcmeOrderState::Absent),
            Err(AcmeError::Invalid("DNS01 needs a dnsProviderId".into()))
        );

        let requested = AcmeOrder::decide(&request(spec()), &AcmeOrderState::Absent).unwrap();
        let completed = AcmeOrderEvent::AcmeOrderCompleted { certificate_id: Uuid::from_u128(3) };
        given::<AcmeOrder>(&requested)
            .when(AcmeOrderCommand::Progress(completed.clone()))
            .then(std::slice::from_ref(&completed));
        let mut history = requested.clone();
        history.push(completed);
        let failed = AcmeOrderEvent::AcmeOrderFailed { error: "x".into(), problem_type: None, authorizations: vec![] };
        given::<AcmeOrder>(&history).when(AcmeOrderCommand::Progress(failed)).then_error(AcmeError::OrderFinished);
        given::<AcmeOrder>(&history).when(request(spec())).then_error(AcmeError::Exists);
    }

    #[test]
    fn accounts_close_their_registration_once() {
        let spec = AcmeAccountSpec {
            name: "le".into(),
            directory_url: "https://acme.example/dir".into(),
            email: Some("ops@lab.example".into()),
            eab_kid: None,
            eab_hmac_key: None,
            ca_bundle_pem: None,
            terms_agreed: true,
        };
        let request = |spec| AcmeAccountCommand::Request { account_id: Uuid::from_u128(1), spec };
        let bad_url = AcmeAccountSpec { directory_url: "ftp://x".into(), ..spec.clone() };
        assert!(AcmeAccount::decide(&request(bad_url), &AcmeAccountState::Absent).is_err());
        let bad_mail = AcmeAccountSpec { email: Some("nobody".into()), ..spec.clone() };
        assert!(AcmeAccount::decide(&request(bad_mail), &AcmeAccountState::Absent).is_err());
        let half_eab = AcmeAccountSpec { eab_kid: Some("kid".into()), ..spec.clone() };
        assert!(AcmeAccount::decide(&request(half_eab), &AcmeAccountState::Absent).is_err());

        let requested = AcmeAccount::decide(&request(spec), &AcmeAccountState::Absent).unwrap();
        let failure = AcmeAccountCommand::RecordFailure { error: "no".into(), problem_type: None };
        let failed = AcmeAccount::decide(&failure, &AcmeAccount::fold(&requested)).unwrap();
        let mut history = requested;
        history.extend(failed);
        assert!(matches!(AcmeAccount::fold(&history), AcmeAccountState::Failed { .. }));
        given::<AcmeAccount>(&history).when(failure).then(&[]);
    }

    #[test]
    fn dns_providers_need_whole_tsig_keys() {
        let create =
            |config| DnsProviderCommand::Create { provider_id: Uuid::from_u128(1), name: "knot".into(), config };
        let half = DnsProviderConfig::Rfc2136 {
            server: "127.0.0.1:53".into(),
            zone: "lab.example".into(),
            tsig_key_name: Some("unity".into()),
            tsig_algorithm: None,
            tsig_secret: None,
        };
        assert!(DnsProvider::decide(&create(half), &DnsProviderState::Absent).is_err());
        let no_port = DnsProviderConfig::Rfc2136 {
            server: "ns1.lab.example".into(),
            zone: "lab.example".into(),
            tsig_key_name: None,
            tsig_algorithm: None,
            tsig_secret: None,
        };
        assert!(DnsProvider::decide(&create(no_port), &DnsProviderState::Absent).is_err());
        let hook = DnsProviderConfig::Webhook { url: "https://dns.lab.example/hook".into(), bearer_token: None };
        let created = DnsProvider::decide(&create(hook), &DnsProviderState::Absent).unwrap();
        given::<DnsProvider>(&created)
            .when(DnsProviderCommand::Delete)
            .then(&[DnsProviderEvent::DnsProviderDeleted {}]);
    }
}
