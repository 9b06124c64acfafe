use super::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{credentials::check_name, decider::Decider, SecretRef};

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

crate::domain_event!(
    AcmeAccountEvent,
    "acme_account",
    [AcmeAccountRequested, AcmeAccountRegistered, AcmeAccountRegistrationFailed,]
);

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

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
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

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
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
