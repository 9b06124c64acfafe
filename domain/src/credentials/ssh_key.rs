use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, SecretRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyAlgorithm {
    Ed25519,
    Rsa,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ED25519",
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::EcdsaP256 => "ECDSA_P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA_P384",
            KeyAlgorithm::EcdsaP521 => "ECDSA_P521",
        }
    }

    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::EcdsaP521,
    ];
}

/// The RSA sizes Unity generates; imports must have at least the smallest.
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];
pub const MIN_RSA_BITS: u32 = 2048;

/// What a key is, as shown to everyone (nothing here is secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    pub algorithm: KeyAlgorithm,
    pub bits: u32,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyOrigin {
    Generated,
    Imported,
    Rotated { from: Uuid },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SshKeyEvent {
    SshKeyCreated {
        key_id: Uuid,
        name: String,
        origin: KeyOrigin,
        #[serde(flatten)]
        key: PublicKeyInfo,
        comment: String,
        tags: Vec<String>,
        /// The private half, sealed; `None` for a public-key-only import.
        private_key: Option<SecretRef>,
    },
    /// Unity's own SSH sessions authenticated with this key (aggregated, not one per command).
    SshKeyUsed {
        last_used_at: DateTime<Utc>,
        sessions: u64,
    },
    SshKeyRotated {
        replaced_by: Uuid,
    },
    /// Removed from every server, and the private half crypto-shredded.
    SshKeyDeleted {
        private_key_shredded: bool,
    },
}

crate::domain_event!(SshKeyEvent, "ssh_key", [SshKeyCreated, SshKeyUsed, SshKeyRotated, SshKeyDeleted]);

#[derive(Clone, Debug, PartialEq)]
pub enum SshKeyCommand {
    Create {
        key_id: Uuid,
        name: String,
        origin: KeyOrigin,
        key: PublicKeyInfo,
        comment: String,
        tags: Vec<String>,
        private_key: Option<SecretRef>,
    },
    RecordUse {
        at: DateTime<Utc>,
        sessions: u64,
    },
    MarkRotated {
        replaced_by: Uuid,
    },
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum SshKeyState {
    #[default]
    Absent,
    Active(Box<SshKeyData>),
    Deleted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SshKeyData {
    pub key_id: Uuid,
    pub name: String,
    pub key: PublicKeyInfo,
    pub comment: String,
    pub tags: Vec<String>,
    pub private_key: Option<SecretRef>,
    pub replaced_by: Option<Uuid>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub struct SshKey;

impl Decider for SshKey {
    type Command = SshKeyCommand;
    type Event = SshKeyEvent;
    type State = SshKeyState;
    type Error = CredentialError;

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
        use SshKeyCommand as C;
        match (command, state) {
            (C::Create { key_id, name, origin, key, comment, tags, private_key }, SshKeyState::Absent) => {
                check_name("an SSH key", name)?;
                check_tags(tags)?;
                // The comment ends up in authorized_keys lines: a newline there would smuggle in
                // another line (or a marker) into Unity's block.
                if comment.chars().count() > 256 || comment.chars().any(char::is_control) {
                    return Err(CredentialError::Invalid(
                        "a key comment is at most 256 printable characters, on one line".into(),
                    ));
                }
                if key.algorithm == KeyAlgorithm::Rsa && key.bits < MIN_RSA_BITS {
                    return Err(CredentialError::RsaTooSmall(key.bits));
                }
                Ok(vec![SshKeyEvent::SshKeyCreated {
                    key_id: *key_id,
                    name: name.trim().to_owned(),
                    origin: origin.clone(),
                    key: key.clone(),
                    comment: comment.clone(),
                    tags: tags.clone(),
                    private_key: private_key.clone(),
                }])
            }
            (C::Create { .. }, _) => Err(CredentialError::KeyExists),
            (_, SshKeyState::Absent) => Err(CredentialError::KeyNotFound),
            (C::Delete, SshKeyState::Deleted) => Ok(vec![]),
            (_, SshKeyState::Deleted) => Err(CredentialError::KeyDeleted),
            (C::RecordUse { at, sessions }, SshKeyState::Active(data)) => {
                // Uses arrive out of order from several sessions; only a later one moves time on.
                if data.last_used_at.is_some_and(|last| last >= *at) {
                    return Ok(vec![]);
                }
                Ok(vec![SshKeyEvent::SshKeyUsed { last_used_at: *at, sessions: *sessions }])
            }
            (C::MarkRotated { replaced_by }, SshKeyState::Active(data)) => match data.replaced_by {
                Some(existing) if existing == *replaced_by => Ok(vec![]),
                Some(existing) => Err(CredentialError::AlreadyRotated(existing)),
                None if data.private_key.is_none() => Err(CredentialError::NoPrivateKey("rotate")),
                None => Ok(vec![SshKeyEvent::SshKeyRotated { replaced_by: *replaced_by }]),
            },
            (C::Delete, SshKeyState::Active(data)) => {
                Ok(vec![SshKeyEvent::SshKeyDeleted { private_key_shredded: data.private_key.is_some() }])
            }
        }
    }

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        match (state, event) {
            (_, SshKeyEvent::SshKeyCreated { key_id, name, key, private_key, comment, tags, .. }) => {
                SshKeyState::Active(Box::new(SshKeyData {
                    key_id: *key_id,
                    name: name.clone(),
                    key: key.clone(),
                    comment: comment.clone(),
                    tags: tags.clone(),
                    private_key: private_key.clone(),
                    replaced_by: None,
                    last_used_at: None,
                }))
            }
            (SshKeyState::Active(mut data), SshKeyEvent::SshKeyUsed { last_used_at, .. }) => {
                data.last_used_at = Some(*last_used_at);
                SshKeyState::Active(data)
            }
            (SshKeyState::Active(mut data), SshKeyEvent::SshKeyRotated { replaced_by }) => {
                data.replaced_by = Some(*replaced_by);
                SshKeyState::Active(data)
            }
            (_, SshKeyEvent::SshKeyDeleted { .. }) => SshKeyState::Deleted,
            (state, _) => state,
        }
    }
}

/// A key in the unused-keys report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedKey {
    pub key_id: Uuid,
    pub name: String,
    pub fingerprint: String,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The scheduled report of keys nobody has used for a while (`ssh_key_report` stream, one per
/// Unity installation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SshKeyReportEvent {
    UnusedSshKeysReported { unused_days: u32, keys: Vec<UnusedKey> },
}

crate::domain_event!(SshKeyReportEvent, "ssh_key_report", [UnusedSshKeysReported]);

/// The report stream's fixed id.
pub const SSH_KEY_REPORT_STREAM: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_5348_4b52_5054);

// ---------------------------------------------------------------------------------------------
// SSH certificate authorities
