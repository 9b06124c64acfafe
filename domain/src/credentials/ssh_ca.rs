use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, SecretRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CertType {
    User,
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalOption {
    pub name: String,
    pub value: String,
}

/// What a certificate says, as asked for and as `ssh-keygen -L` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRequest {
    pub cert_type: CertType,
    /// The certificate's key id (free text, shown in sshd's logs).
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    pub extensions: Vec<String>,
    pub critical_options: Vec<CriticalOption>,
}

impl CertificateRequest {
    pub fn check(&self) -> Result<(), CredentialError> {
        if self.valid_before <= self.valid_after {
            return Err(CredentialError::Invalid("validBefore must be after validAfter".into()));
        }
        if self.key_id.len() > 256 {
            return Err(CredentialError::Invalid("keyId is at most 256 characters".into()));
        }
        if self.principals.is_empty()
            || self.principals.len() > 256
            || self.principals.iter().any(|p| p.is_empty() || p.len() > 256)
        {
            return Err(CredentialError::Invalid("principals: 1 to 256 of them, each 1 to 256 characters".into()));
        }
        let mut names: Vec<&str> = self.extensions.iter().map(String::as_str).collect();
        names.extend(self.critical_options.iter().map(|o| o.name.as_str()));
        if names.iter().any(|n| n.is_empty() || n.len() > 128 || n.chars().any(|c| c.is_whitespace())) {
            return Err(CredentialError::Invalid(
                "extension and option names are 1 to 128 non-blank characters".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SshCaEvent {
    SshCaCreated {
        ca_id: Uuid,
        name: String,
        #[serde(flatten)]
        key: PublicKeyInfo,
        private_key: SecretRef,
    },
    SshCertificateSigned {
        serial: u64,
        #[serde(flatten)]
        request: CertificateRequest,
        /// The certified public key's fingerprint.
        subject_fingerprint: String,
    },
}

crate::domain_event!(SshCaEvent, "ssh_ca", [SshCaCreated, SshCertificateSigned]);

#[derive(Clone, Debug, PartialEq)]
pub enum SshCaCommand {
    Create {
        ca_id: Uuid,
        name: String,
        key: PublicKeyInfo,
        private_key: SecretRef,
    },
    /// Records a signature made with `serial`, which must be the CA's next serial.
    RecordSignature {
        serial: u64,
        request: CertificateRequest,
        subject_fingerprint: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum SshCaState {
    #[default]
    Absent,
    Active {
        ca_id: Uuid,
        key: PublicKeyInfo,
        private_key: SecretRef,
        signed: u64,
    },
}

impl SshCaState {
    /// Serials start at 1 and count up: the n-th certificate has serial n.
    pub fn next_serial(&self) -> u64 {
        match self {
            SshCaState::Absent => 1,
            SshCaState::Active { signed, .. } => signed + 1,
        }
    }
}

pub struct SshCa;

impl Decider for SshCa {
    type Command = SshCaCommand;
    type Event = SshCaEvent;
    type State = SshCaState;
    type Error = CredentialError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, state) {
            (SshCaCommand::Create { ca_id, name, key, private_key }, SshCaState::Absent) => {
                check_name("an SSH certificate authority", name)?;
                Ok(vec![SshCaEvent::SshCaCreated {
                    ca_id: *ca_id,
                    name: name.trim().to_owned(),
                    key: key.clone(),
                    private_key: private_key.clone(),
                }])
            }
            (SshCaCommand::Create { .. }, _) => Err(CredentialError::CaExists),
            (SshCaCommand::RecordSignature { .. }, SshCaState::Absent) => Err(CredentialError::CaNotFound),
            (SshCaCommand::RecordSignature { serial, request, subject_fingerprint }, state) => {
                request.check()?;
                if *serial != state.next_serial() {
                    return Err(CredentialError::Invalid(format!(
                        "serial {serial} is not this CA's next ({})",
                        state.next_serial()
                    )));
                }
                Ok(vec![SshCaEvent::SshCertificateSigned {
                    serial: *serial,
                    request: request.clone(),
                    subject_fingerprint: subject_fingerprint.clone(),
                }])
            }
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        match (state, event) {
            (_, SshCaEvent::SshCaCreated { ca_id, key, private_key, .. }) => {
                SshCaState::Active { ca_id: *ca_id, key: key.clone(), private_key: private_key.clone(), signed: 0 }
            }
            (SshCaState::Active { ca_id, key, private_key, .. }, SshCaEvent::SshCertificateSigned { serial, .. }) => {
                SshCaState::Active { ca_id, key, private_key, signed: *serial }
            }
            (state, _) => state,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// server credentials
