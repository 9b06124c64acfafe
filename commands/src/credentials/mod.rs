//! Credential commands: SSH keys, SSH CAs and server credentials.
//!
//! Private key material is sealed in the vault before any event mentions it and leaves the
//! vault only through [`CredentialCommands::reveal_private_key`] (recorded) or to log in
//! (the collectors decrypt it for their own use).

mod server_credential;
mod ssh_ca;
mod ssh_key;
pub mod ssh_keys;

use unity_domain::{
    credentials::{CredentialError, CredentialKind},
    servers::ServerError,
};
use uuid::Uuid;

use crate::{
    handler::CommandError,
    store::{Appended, DecodeError, EventStore, StoreError},
    vault::{Vault, VaultError},
};

use self::ssh_keys::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the stream kept changing underneath this command ({0})")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl<E: std::error::Error + Into<CredentialsError>> From<CommandError<E>> for CredentialsError {
    fn from(e: CommandError<E>) -> CredentialsError {
        match e {
            CommandError::Rejected(e) => e.into(),
            CommandError::Contended(stream) => CredentialsError::Contended(stream),
            CommandError::Store(e) => CredentialsError::Store(e),
            CommandError::Decode(e) => CredentialsError::Decode(e),
        }
    }
}

type Result<T> = std::result::Result<T, CredentialsError>;

/// A new SSH key or CA and where its creation landed.
pub struct Created {
    pub id: Uuid,
    pub appended: Option<Appended>,
}

pub struct SignedCertificate {
    pub serial: u64,
    /// The OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub certificate: String,
    pub appended: Appended,
}

#[derive(Clone)]
pub struct CredentialCommands {
    store: EventStore,
    vault: Vault,
}

impl CredentialCommands {
    pub fn new(store: EventStore, vault: Vault) -> CredentialCommands {
        CredentialCommands { store, vault }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }
}

/// A secret must look like what its kind says, so a mix-up is caught when it is stored.
fn check_credential_secret(kind: CredentialKind, secret: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(CredentialError::Invalid("the secret is empty".into()).into());
    }
    if secret.len() > ssh_keys::MAX_KEY_TEXT {
        return Err(KeyError::TooLarge(secret.len()).into());
    }
    if kind == CredentialKind::PrivateKey {
        ssh_keys::parse_private(secret, None)?;
    }
    Ok(())
}
