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

mod server_credential;
mod ssh_ca;
mod ssh_key;

pub use server_credential::*;
pub use ssh_ca::*;
pub use ssh_key::*;

use uuid::Uuid;

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

impl crate::Refuse for CredentialError {
    fn refusal(&self) -> crate::Refusal {
        use crate::Refusal as R;
        use CredentialError as E;
        match self {
            E::KeyNotFound | E::CaNotFound | E::CredentialNotFound => R::NotFound,
            E::KeyExists | E::CaExists | E::AlreadyRotated(_) | E::KeyDeleted | E::CredentialDeleted => R::Conflict,
            E::Invalid(_) | E::RsaTooSmall(_) | E::NoPrivateKey(_) => R::Invalid,
        }
    }
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

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests;
