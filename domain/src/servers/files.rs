use super::*;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::servers::managed_block::key_blob;

/// A file on a server whose Unity block holds public keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ManagedFile {
    /// The user's authorized_keys, wherever the server's `authorized_keys_file` says it is.
    AuthorizedKeys { user: String },
    /// A `TrustedUserCAKeys` file at an absolute path.
    TrustedUserCaKeys { path: String },
}

impl ManagedFile {
    pub fn check(&self) -> Result<(), ServerError> {
        match self {
            ManagedFile::AuthorizedKeys { user } => check_account(user),
            ManagedFile::TrustedUserCaKeys { path } => {
                let ok = path.starts_with('/')
                    && !path.contains("..")
                    && path.len() <= 512
                    && path.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c));
                if ok {
                    Ok(())
                } else {
                    Err(ServerError::Invalid(format!(
                        "'{}' is not an absolute path of letters, digits and /._-+@",
                        path.chars().take(80).collect::<String>()
                    )))
                }
            }
        }
    }
}

impl std::fmt::Display for ManagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagedFile::AuthorizedKeys { user } => write!(f, "authorized_keys of {user}"),
            ManagedFile::TrustedUserCaKeys { path } => write!(f, "{path}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    SshKey,
    SshCa,
}

/// A public key Unity puts in a managed block: an SSH key, or a CA's key in a trust file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedEntry {
    pub kind: EntryKind,
    pub id: Uuid,
    pub fingerprint: String,
    pub public_key: String,
}

/// Where a certificate goes on a server, and what runs after it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDeployment {
    pub certificate_id: Uuid,
    /// SHA-256 of the certificate's DER, hex: what the server should hold.
    pub fingerprint: String,
    pub cert_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<String>,
    /// `user` or `user:group` for every file written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Octal mode of the key file (the certificate and chain get 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_command: Option<String>,
}

impl CertificateDeployment {
    pub fn check(&self) -> Result<(), ServerError> {
        let path_ok = |p: &str| {
            p.starts_with('/')
                && !p.contains("..")
                && p.len() <= 512
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@".contains(c))
        };
        for path in [Some(&self.cert_path), self.key_path.as_ref(), self.chain_path.as_ref()].into_iter().flatten() {
            if !path_ok(path) {
                return Err(ServerError::Invalid(format!(
                    "'{}' is not an absolute path of letters, digits and /._-+@",
                    path.chars().take(80).collect::<String>()
                )));
            }
        }
        if let Some(owner) = &self.owner {
            let mut parts = owner.splitn(2, ':');
            let user = parts.next().unwrap_or_default();
            check_account(user)?;
            if let Some(group) = parts.next() {
                check_account(group)?;
            }
        }
        if let Some(mode) = &self.mode {
            let digits = mode.strip_prefix('0').unwrap_or(mode);
            if digits.len() != 3 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
                return Err(ServerError::Invalid(format!("mode '{mode}' is not an octal mode such as 0600")));
            }
        }
        if self.reload_command.as_ref().is_some_and(|c| c.trim().is_empty() || c.len() > 1024 || c.contains('\0')) {
            return Err(ServerError::Invalid("reloadCommand must be 1 to 1024 characters".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerRequest {
    TestConnection,
    Install {
        file: ManagedFile,
        entry: ManagedEntry,
        /// Rotation: once this entry is installed, the entry with this id is removed from the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<Uuid>,
    },
    Remove {
        file: ManagedFile,
        entry: ManagedEntry,
    },
    Check,
    DeployCertificate {
        deployment: CertificateDeployment,
    },
}

impl ServerRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            ServerRequest::TestConnection => "TEST_CONNECTION",
            ServerRequest::Install { .. } => "INSTALL",
            ServerRequest::Remove { .. } => "REMOVE",
            ServerRequest::Check => "CHECK",
            ServerRequest::DeployCertificate { .. } => "DEPLOY",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub os: String,
    pub kernel: String,
    pub hostname: String,
    /// One command's round trip, in microseconds (an integer: event hashes need exact values).
    pub rtt_micros: u64,
}

/// What a check found in one managed block that Unity did not put there, or did not find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDrift {
    pub file: ManagedFile,
    /// Lines in the block that no installation explains (added by hand).
    pub unexpected: Vec<String>,
    /// Installed entries whose key is no longer in the block (removed by hand).
    pub missing: Vec<ManagedEntry>,
}

/// Compares a block's lines with what Unity installed there.
pub fn drift(file: &ManagedFile, installed: &[&ManagedEntry], block: &[&str]) -> Option<FileDrift> {
    let unexpected: Vec<String> = block
        .iter()
        .filter(|line| {
            let blob = key_blob(line);
            blob.is_none() || !installed.iter().any(|e| key_blob(&e.public_key) == blob)
        })
        .map(|l| l.to_string())
        .collect();
    let missing: Vec<ManagedEntry> = installed
        .iter()
        .filter(|e| !block.iter().any(|line| key_blob(line).is_some() && key_blob(line) == key_blob(&e.public_key)))
        .map(|e| (*e).clone())
        .collect();
    (!unexpected.is_empty() || !missing.is_empty()).then(|| FileDrift { file: file.clone(), unexpected, missing })
}
