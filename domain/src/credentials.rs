//! Credentials, part 1: SSH keys, SSH certificate authorities and server credentials.
//!
//! Three aggregates, each its own stream type:
//! - `ssh_key`: created (generated, imported or made by a rotation), used, rotated, deleted;
//! - `ssh_ca`: created, and one event per certificate it signs (the serial is its position);
//! - `server_credential`: a password, private key or token Unity logs in with, sealed in the vault.
//!
//! Key material is made, parsed and fingerprinted outside (unity-commands); private halves
//! arrive here only as vault references. Where keys are installed lives on the `server` stream
//! (see [`crate::servers`]), so distribution to many servers never contends on one stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{decider::Decider, event::DomainEvent, SecretRef};

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

impl DomainEvent for SshKeyEvent {
    const STREAM_TYPE: &'static str = "ssh_key";
    fn event_type(&self) -> &'static str {
        match self {
            SshKeyEvent::SshKeyCreated { .. } => "SshKeyCreated",
            SshKeyEvent::SshKeyUsed { .. } => "SshKeyUsed",
            SshKeyEvent::SshKeyRotated { .. } => "SshKeyRotated",
            SshKeyEvent::SshKeyDeleted { .. } => "SshKeyDeleted",
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("no such SSH key")]
    KeyNotFound,
    #[error("this SSH key was deleted")]
    KeyDeleted,
    #[error("an SSH key with this id exists already")]
    KeyExists,
    #[error("{0}")]
    Invalid(String),
    #[error("RSA keys need at least {MIN_RSA_BITS} bits; this one has {0}")]
    RsaTooSmall(u32),
    #[error("this key was imported without its private half, so Unity cannot {0} it")]
    NoPrivateKey(&'static str),
    #[error("this key was already rotated (replaced by {0})")]
    AlreadyRotated(Uuid),
    #[error("no such SSH certificate authority")]
    CaNotFound,
    #[error("an SSH certificate authority with this id exists already")]
    CaExists,
    #[error("no such server credential")]
    CredentialNotFound,
    #[error("this server credential was deleted")]
    CredentialDeleted,
}

/// A name: 1–100 characters, no control characters.
pub fn check_name(what: &str, name: &str) -> Result<(), CredentialError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control) {
        return Err(CredentialError::Invalid(format!("{what} needs a name of 1 to 100 printable characters")));
    }
    Ok(())
}

/// Tags: at most 20, each 1–64 characters of letters, digits and `:_.-/=`.
pub fn check_tags(tags: &[String]) -> Result<(), CredentialError> {
    if tags.len() > 20 {
        return Err(CredentialError::Invalid("at most 20 tags".into()));
    }
    for tag in tags {
        let ok = !tag.is_empty()
            && tag.len() <= 64
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || ":_.-/=".contains(c));
        if !ok {
            return Err(CredentialError::Invalid(format!(
                "tag '{}' must be 1 to 64 characters of letters, digits and :_.-/=",
                tag.chars().take(70).collect::<String>()
            )));
        }
    }
    Ok(())
}

pub struct SshKey;

impl Decider for SshKey {
    type Command = SshKeyCommand;
    type Event = SshKeyEvent;
    type State = SshKeyState;
    type Error = CredentialError;

    fn decide(command: &SshKeyCommand, state: &SshKeyState) -> Result<Vec<SshKeyEvent>, CredentialError> {
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

    fn evolve(state: SshKeyState, event: &SshKeyEvent) -> SshKeyState {
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

impl DomainEvent for SshKeyReportEvent {
    const STREAM_TYPE: &'static str = "ssh_key_report";
    fn event_type(&self) -> &'static str {
        "UnusedSshKeysReported"
    }
}

/// The report stream's fixed id.
pub const SSH_KEY_REPORT_STREAM: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_5348_4b52_5054);

// ---------------------------------------------------------------------------------------------
// SSH certificate authorities

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

impl DomainEvent for SshCaEvent {
    const STREAM_TYPE: &'static str = "ssh_ca";
    fn event_type(&self) -> &'static str {
        match self {
            SshCaEvent::SshCaCreated { .. } => "SshCaCreated",
            SshCaEvent::SshCertificateSigned { .. } => "SshCertificateSigned",
        }
    }
}

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

    fn decide(command: &SshCaCommand, state: &SshCaState) -> Result<Vec<SshCaEvent>, CredentialError> {
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

    fn evolve(state: SshCaState, event: &SshCaEvent) -> SshCaState {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialKind {
    Password,
    PrivateKey,
    Token,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ServerCredentialEvent {
    ServerCredentialCreated {
        credential_id: Uuid,
        name: String,
        kind: CredentialKind,
        username: String,
        secret: SecretRef,
    },
    /// Only the fields that changed are present; a new secret replaces (and shreds) the old one.
    ServerCredentialUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<SecretRef>,
    },
    ServerCredentialDeleted {},
}

impl DomainEvent for ServerCredentialEvent {
    const STREAM_TYPE: &'static str = "server_credential";
    fn event_type(&self) -> &'static str {
        match self {
            ServerCredentialEvent::ServerCredentialCreated { .. } => "ServerCredentialCreated",
            ServerCredentialEvent::ServerCredentialUpdated { .. } => "ServerCredentialUpdated",
            ServerCredentialEvent::ServerCredentialDeleted { .. } => "ServerCredentialDeleted",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServerCredentialCommand {
    Create { credential_id: Uuid, name: String, kind: CredentialKind, username: String, secret: SecretRef },
    Update { name: Option<String>, username: Option<String>, secret: Option<SecretRef> },
    Delete,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ServerCredentialState {
    #[default]
    Absent,
    Active {
        kind: CredentialKind,
        username: String,
        secret: SecretRef,
    },
    Deleted,
}

fn check_login(username: &str) -> Result<(), CredentialError> {
    if username.is_empty() || username.len() > 64 || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CredentialError::Invalid("a username is 1 to 64 characters without spaces".into()));
    }
    Ok(())
}

pub struct ServerCredential;

impl Decider for ServerCredential {
    type Command = ServerCredentialCommand;
    type Event = ServerCredentialEvent;
    type State = ServerCredentialState;
    type Error = CredentialError;

    fn decide(
        command: &ServerCredentialCommand,
        state: &ServerCredentialState,
    ) -> Result<Vec<ServerCredentialEvent>, CredentialError> {
        use ServerCredentialCommand as C;
        use ServerCredentialState as S;
        match (command, state) {
            (C::Create { credential_id, name, kind, username, secret }, S::Absent) => {
                check_name("a server credential", name)?;
                check_login(username)?;
                Ok(vec![ServerCredentialEvent::ServerCredentialCreated {
                    credential_id: *credential_id,
                    name: name.trim().to_owned(),
                    kind: *kind,
                    username: username.clone(),
                    secret: secret.clone(),
                }])
            }
            (C::Create { .. }, _) => Err(CredentialError::Invalid("this credential exists already".into())),
            (_, S::Absent) => Err(CredentialError::CredentialNotFound),
            (C::Delete, S::Deleted) => Ok(vec![]),
            (_, S::Deleted) => Err(CredentialError::CredentialDeleted),
            (C::Update { name, username, secret }, S::Active { .. }) => {
                if let Some(name) = name {
                    check_name("a server credential", name)?;
                }
                if let Some(username) = username {
                    check_login(username)?;
                }
                if name.is_none() && username.is_none() && secret.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ServerCredentialEvent::ServerCredentialUpdated {
                    name: name.as_ref().map(|n| n.trim().to_owned()),
                    username: username.clone(),
                    secret: secret.clone(),
                }])
            }
            (C::Delete, S::Active { .. }) => Ok(vec![ServerCredentialEvent::ServerCredentialDeleted {}]),
        }
    }

    fn evolve(state: ServerCredentialState, event: &ServerCredentialEvent) -> ServerCredentialState {
        use ServerCredentialEvent as E;
        use ServerCredentialState as S;
        match (state, event) {
            (_, E::ServerCredentialCreated { kind, username, secret, .. }) => {
                S::Active { kind: *kind, username: username.clone(), secret: secret.clone() }
            }
            (
                S::Active { kind, username: old_username, secret: old_secret },
                E::ServerCredentialUpdated { username, secret, .. },
            ) => S::Active {
                kind,
                username: username.clone().unwrap_or(old_username),
                secret: secret.clone().unwrap_or(old_secret),
            },
            (_, E::ServerCredentialDeleted {}) => S::Deleted,
            (state, _) => state,
        }
    }
}

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::decider::spec::given;

    fn secret(n: u128) -> SecretRef {
        SecretRef { secret_id: Uuid::from_u128(n), ciphertext: format!("ct{n}") }
    }

    fn info(algorithm: KeyAlgorithm, bits: u32) -> PublicKeyInfo {
        PublicKeyInfo { algorithm, bits, fingerprint: "SHA256:abc".into(), public_key: "ssh-ed25519 AAAA".into() }
    }

    fn create(private: bool) -> SshKeyCommand {
        SshKeyCommand::Create {
            key_id: Uuid::from_u128(1),
            name: " deploy ".into(),
            origin: KeyOrigin::Generated,
            key: info(KeyAlgorithm::Ed25519, 256),
            comment: "c".into(),
            tags: vec!["env:lab".into()],
            private_key: private.then(|| secret(2)),
        }
    }

    fn created(private: bool) -> SshKeyEvent {
        SshKeyEvent::SshKeyCreated {
            key_id: Uuid::from_u128(1),
            name: "deploy".into(),
            origin: KeyOrigin::Generated,
            key: info(KeyAlgorithm::Ed25519, 256),
            comment: "c".into(),
            tags: vec!["env:lab".into()],
            private_key: private.then(|| secret(2)),
        }
    }

    #[test]
    fn keys_are_created_once_with_valid_names_tags_and_sizes() {
        given::<SshKey>(&[]).when(create(true)).then(&[created(true)]);
        given::<SshKey>(&[created(true)]).when(create(true)).then_error(CredentialError::KeyExists);
        let SshKeyCommand::Create { key_id, origin, comment, private_key, .. } = create(true) else { unreachable!() };
        let with = |name: &str, tags: Vec<String>, key: PublicKeyInfo| SshKeyCommand::Create {
            key_id,
            name: name.into(),
            origin: origin.clone(),
            key,
            comment: comment.clone(),
            tags,
            private_key: private_key.clone(),
        };
        given::<SshKey>(&[])
            .when(with("k", vec![], info(KeyAlgorithm::Rsa, 1024)))
            .then_error(CredentialError::RsaTooSmall(1024));
        assert!(SshKey::decide(&with("  ", vec![], info(KeyAlgorithm::Ed25519, 256)), &SshKeyState::Absent).is_err());
        assert!(SshKey::decide(&with("k", vec!["a b".into()], info(KeyAlgorithm::Ed25519, 256)), &SshKeyState::Absent)
            .is_err());
        let sneaky = SshKeyCommand::Create {
            key_id,
            name: "k".into(),
            origin: origin.clone(),
            key: info(KeyAlgorithm::Ed25519, 256),
            comment: "x\n# END UNITY MANAGED BLOCK".into(),
            tags: vec![],
            private_key: None,
        };
        assert!(SshKey::decide(&sneaky, &SshKeyState::Absent).is_err(), "no newlines in comments");
    }

    #[test]
    fn uses_only_move_forward_and_rotation_needs_the_private_half() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let used = SshKeyEvent::SshKeyUsed { last_used_at: t(100), sessions: 1 };
        given::<SshKey>(&[created(true)])
            .when(SshKeyCommand::RecordUse { at: t(100), sessions: 1 })
            .then(&[used.clone()]);
        given::<SshKey>(&[created(true), used]).when(SshKeyCommand::RecordUse { at: t(50), sessions: 3 }).then(&[]);
        given::<SshKey>(&[created(false)])
            .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(9) })
            .then_error(CredentialError::NoPrivateKey("rotate"));
        let rotated = SshKeyEvent::SshKeyRotated { replaced_by: Uuid::from_u128(9) };
        given::<SshKey>(&[created(true)])
            .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(9) })
            .then(&[rotated.clone()]);
        given::<SshKey>(&[created(true), rotated])
            .when(SshKeyCommand::MarkRotated { replaced_by: Uuid::from_u128(8) })
            .then_error(CredentialError::AlreadyRotated(Uuid::from_u128(9)));
    }

    #[test]
    fn deletion_is_final_and_says_whether_a_private_half_was_shredded() {
        let deleted = SshKeyEvent::SshKeyDeleted { private_key_shredded: false };
        given::<SshKey>(&[created(false)]).when(SshKeyCommand::Delete).then(&[deleted.clone()]);
        given::<SshKey>(&[created(false), deleted.clone()]).when(SshKeyCommand::Delete).then(&[]);
        given::<SshKey>(&[created(false), deleted])
            .when(SshKeyCommand::RecordUse { at: Utc::now(), sessions: 1 })
            .then_error(CredentialError::KeyDeleted);
    }

    #[test]
    fn certificate_serials_count_up_and_requests_are_checked() {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        let created = SshCaEvent::SshCaCreated {
            ca_id: Uuid::from_u128(1),
            name: "users".into(),
            key: info(KeyAlgorithm::Ed25519, 256),
            private_key: secret(2),
        };
        let request = CertificateRequest {
            cert_type: CertType::User,
            key_id: "ada@laptop".into(),
            principals: vec!["ada".into()],
            valid_after: t(0),
            valid_before: t(3600),
            extensions: vec!["permit-pty".into()],
            critical_options: vec![],
        };
        let sign = |serial| SshCaCommand::RecordSignature {
            serial,
            request: request.clone(),
            subject_fingerprint: "SHA256:x".into(),
        };
        let signed = SshCaEvent::SshCertificateSigned {
            serial: 1,
            request: request.clone(),
            subject_fingerprint: "SHA256:x".into(),
        };
        given::<SshCa>(&[created.clone()]).when(sign(1)).then(&[signed.clone()]);
        assert_eq!(SshCa::fold(&[created.clone(), signed.clone()]).next_serial(), 2);
        assert!(SshCa::decide(&sign(1), &SshCa::fold(&[created.clone(), signed])).is_err());
        let backwards = CertificateRequest { valid_before: t(0), ..request };
        assert!(SshCa::decide(
            &SshCaCommand::RecordSignature { serial: 1, request: backwards, subject_fingerprint: "f".into() },
            &SshCa::fold(&[created])
        )
        .is_err());
    }

    #[test]
    fn credential_updates_carry_only_what_changed() {
        let created = ServerCredentialEvent::ServerCredentialCreated {
            credential_id: Uuid::from_u128(1),
            name: "root pw".into(),
            kind: CredentialKind::Password,
            username: "root".into(),
            secret: secret(3),
        };
        given::<ServerCredential>(&[created.clone()])
            .when(ServerCredentialCommand::Update { name: None, username: None, secret: Some(secret(4)) })
            .then(&[ServerCredentialEvent::ServerCredentialUpdated {
                name: None,
                username: None,
                secret: Some(secret(4)),
            }]);
        given::<ServerCredential>(&[created])
            .when(ServerCredentialCommand::Update { name: None, username: Some("bad user".into()), secret: None })
            .then_error(CredentialError::Invalid("a username is 1 to 64 characters without spaces".into()));
    }
}
