use super::*;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::credentials::check_tags;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerAuth {
    SshKey { key_id: Uuid },
    Credential { credential_id: Uuid },
}

/// Where sshd reads a user's keys, as its `AuthorizedKeysFile`: `%h` is the user's home, `%u` the
/// user name.
pub const DEFAULT_AUTHORIZED_KEYS_FILE: &str = "%h/.ssh/authorized_keys";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// The account Unity logs in as.
    pub username: String,
    pub authentication: ServerAuth,
    pub authorized_keys_file: String,
    pub tags: Vec<String>,
}

impl ServerSpec {
    pub fn check(&self) -> Result<(), ServerError> {
        crate::credentials::check_name("a server", &self.name).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let address_ok = !self.address.is_empty()
            && self.address.len() <= 253
            && self.address.chars().all(|c| c.is_ascii_alphanumeric() || ".-:_[]%".contains(c));
        if !address_ok {
            return Err(ServerError::Invalid(format!(
                "'{}' is not a host name or IP address",
                self.address.chars().take(80).collect::<String>()
            )));
        }
        if self.port == 0 {
            return Err(ServerError::Invalid("port must be between 1 and 65535".into()));
        }
        check_account(&self.username)?;
        let file = &self.authorized_keys_file;
        if !(file.starts_with('/') || file.starts_with("%h/")) || file.contains("..") || file.contains('\n') {
            return Err(ServerError::Invalid(
                "authorizedKeysFile must be an absolute path or start with %h/, without '..'".into(),
            ));
        }
        check_tags(&self.tags).map_err(|e| ServerError::Invalid(e.to_string()))
    }
}

/// A login name on a server: what `useradd` accepts, and nothing a shell would interpret.
pub fn check_account(user: &str) -> Result<(), ServerError> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ServerError::Invalid(format!(
            "'{}' is not a valid account name (letters, digits, . _ -)",
            user.chars().take(40).collect::<String>()
        )))
    }
}
