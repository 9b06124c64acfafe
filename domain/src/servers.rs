//! Servers: the inventory every later domain builds on, and everything Unity does to one over SSH.
//!
//! One `server` stream per server holds its registration, its host key (pinned on first use or
//! given up front; a mismatch is recorded, never accepted silently), and every SSH operation as
//! a requested / succeeded-or-failed pair: connection tests, installing and removing keys in
//! the managed block of a file, and reading those blocks back to find drift. Keeping a server's
//! operations on its own stream means distributing a key to twenty servers touches twenty
//! streams that never contend, and the server's state always says what is installed where.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{credentials::check_tags, decider::Decider, event::DomainEvent, managed_block::key_blob};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostKeyStatus {
    /// Not contacted yet and no fingerprint given: the first contact will pin it.
    Unknown,
    Pinned,
    /// The server presented another key; connections are refused until someone accepts it.
    Mismatch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ServerEvent {
    ServerRegistered {
        server_id: Uuid,
        #[serde(flatten)]
        spec: ServerSpec,
        host_key_fingerprint: Option<String>,
    },
    ServerUpdated {
        #[serde(flatten)]
        spec: ServerSpec,
    },
    ServerRemoved {},
    HostKeyPinned {
        fingerprint: String,
        trust_on_first_use: bool,
    },
    HostKeyMismatch {
        expected: String,
        presented: String,
    },
    HostKeyAccepted {
        fingerprint: String,
        previous: Option<String>,
    },
    ConnectionTestRequested {
        request_id: Uuid,
    },
    ConnectionTested {
        request_id: Uuid,
        #[serde(flatten)]
        info: SystemInfo,
    },
    ConnectionTestFailed {
        request_id: Uuid,
        error: String,
    },
    KeyInstallRequested {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<Uuid>,
    },
    KeyInstalled {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
    },
    KeyInstallFailed {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
        error: String,
    },
    KeyRemovalRequested {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
    },
    KeyRemoved {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
    },
    KeyRemovalFailed {
        request_id: Uuid,
        file: ManagedFile,
        entry: ManagedEntry,
        error: String,
    },
    KeyCheckRequested {
        request_id: Uuid,
    },
    /// The blocks were read back; `drift` lists the files that differ from what Unity installed.
    KeysChecked {
        request_id: Uuid,
        drift: Vec<FileDrift>,
        /// Deployed certificates whose file no longer holds what Unity wrote.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        certificate_drift: Vec<CertificateDrift>,
    },
    /// A deployed certificate file changed (recorded once per distinct difference).
    CertificateDriftDetected {
        #[serde(flatten)]
        drift: CertificateDrift,
    },
    /// A block changed by hand (recorded once per distinct difference, not at every check).
    KeyDriftDetected {
        #[serde(flatten)]
        drift: FileDrift,
    },
    KeyCheckFailed {
        request_id: Uuid,
        error: String,
    },
    CertificateDeploymentRequested {
        request_id: Uuid,
        deployment: CertificateDeployment,
    },
    /// The files were written; `reload_exit_status` is the reload command's, if there was one.
    CertificateDeployed {
        request_id: Uuid,
        deployment: CertificateDeployment,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reload_exit_status: Option<u32>,
    },
    CertificateDeploymentFailed {
        request_id: Uuid,
        deployment: CertificateDeployment,
        error: String,
    },
}

impl DomainEvent for ServerEvent {
    const STREAM_TYPE: &'static str = "server";
    fn event_type(&self) -> &'static str {
        use ServerEvent as E;
        match self {
            E::ServerRegistered { .. } => "ServerRegistered",
            E::ServerUpdated { .. } => "ServerUpdated",
            E::ServerRemoved { .. } => "ServerRemoved",
            E::HostKeyPinned { .. } => "HostKeyPinned",
            E::HostKeyMismatch { .. } => "HostKeyMismatch",
            E::HostKeyAccepted { .. } => "HostKeyAccepted",
            E::ConnectionTestRequested { .. } => "ConnectionTestRequested",
            E::ConnectionTested { .. } => "ConnectionTested",
            E::ConnectionTestFailed { .. } => "ConnectionTestFailed",
            E::KeyInstallRequested { .. } => "KeyInstallRequested",
            E::KeyInstalled { .. } => "KeyInstalled",
            E::KeyInstallFailed { .. } => "KeyInstallFailed",
            E::KeyRemovalRequested { .. } => "KeyRemovalRequested",
            E::KeyRemoved { .. } => "KeyRemoved",
            E::KeyRemovalFailed { .. } => "KeyRemovalFailed",
            E::KeyCheckRequested { .. } => "KeyCheckRequested",
            E::KeysChecked { .. } => "KeysChecked",
            E::CertificateDriftDetected { .. } => "CertificateDriftDetected",
            E::KeyDriftDetected { .. } => "KeyDriftDetected",
            E::KeyCheckFailed { .. } => "KeyCheckFailed",
            E::CertificateDeploymentRequested { .. } => "CertificateDeploymentRequested",
            E::CertificateDeployed { .. } => "CertificateDeployed",
            E::CertificateDeploymentFailed { .. } => "CertificateDeploymentFailed",
        }
    }
}

impl ServerEvent {
    /// The request this event opens, if it is a `…Requested` event.
    pub fn opened_request(&self) -> Option<(Uuid, ServerRequest)> {
        use ServerEvent as E;
        match self {
            E::ConnectionTestRequested { request_id } => Some((*request_id, ServerRequest::TestConnection)),
            E::KeyInstallRequested { request_id, file, entry, replaces } => Some((
                *request_id,
                ServerRequest::Install { file: file.clone(), entry: entry.clone(), replaces: *replaces },
            )),
            E::KeyRemovalRequested { request_id, file, entry } => {
                Some((*request_id, ServerRequest::Remove { file: file.clone(), entry: entry.clone() }))
            }
            E::KeyCheckRequested { request_id } => Some((*request_id, ServerRequest::Check)),
            E::CertificateDeploymentRequested { request_id, deployment } => {
                Some((*request_id, ServerRequest::DeployCertificate { deployment: deployment.clone() }))
            }
            _ => None,
        }
    }

    /// The request this event closes, if it is an outcome.
    pub fn closed_request(&self) -> Option<Uuid> {
        use ServerEvent as E;
        match self {
            E::ConnectionTested { request_id, .. }
            | E::ConnectionTestFailed { request_id, .. }
            | E::KeyInstalled { request_id, .. }
            | E::KeyInstallFailed { request_id, .. }
            | E::KeyRemoved { request_id, .. }
            | E::KeyRemovalFailed { request_id, .. }
            | E::KeysChecked { request_id, .. }
            | E::KeyCheckFailed { request_id, .. }
            | E::CertificateDeployed { request_id, .. }
            | E::CertificateDeploymentFailed { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Tested(SystemInfo),
    /// An install or removal was carried out.
    Done,
    Checked(Vec<FileDrift>, Vec<CertificateDrift>),
    /// A certificate's files were written; the reload command's exit status, if any.
    Deployed {
        reload_exit_status: Option<u32>,
    },
    Failed(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServerCommand {
    Register {
        server_id: Uuid,
        spec: ServerSpec,
        host_key_fingerprint: Option<String>,
    },
    Update {
        spec: ServerSpec,
    },
    Remove,
    /// The fingerprint a connection attempt was shown.
    ObserveHostKey {
        presented: String,
    },
    AcceptHostKey {
        fingerprint: String,
    },
    Request {
        request_id: Uuid,
        request: ServerRequest,
    },
    /// `follow_up_id` names the removal a completed rotation install opens.
    Complete {
        request_id: Uuid,
        outcome: Outcome,
        follow_up_id: Uuid,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ServerState {
    #[default]
    Absent,
    Active(Box<ServerData>),
    Removed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerData {
    pub server_id: Uuid,
    pub spec: ServerSpec,
    pub host_key: Option<String>,
    pub host_key_status: HostKeyStatus,
    /// The key last presented instead of the pinned one.
    pub presented_host_key: Option<String>,
    pub pending: BTreeMap<Uuid, ServerRequest>,
    /// What Unity installed, by file and entry id.
    pub installed: BTreeMap<(ManagedFile, Uuid), ManagedEntry>,
    pub drift: Vec<FileDrift>,
    /// Certificates deployed here, by certificate path.
    pub certificates: BTreeMap<String, CertificateDeployment>,
    pub certificate_drift: Vec<CertificateDrift>,
}

/// A deployed certificate file that holds something else than Unity wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDrift {
    pub cert_path: String,
    pub certificate_id: Uuid,
    pub expected_fingerprint: String,
    /// `None`: the file is gone or holds no certificate.
    pub found_fingerprint: Option<String>,
}

impl ServerData {
    pub fn installed_in<'a>(&'a self, file: &'a ManagedFile) -> impl Iterator<Item = &'a ManagedEntry> + 'a {
        self.installed.iter().filter(move |((f, _), _)| f == file).map(|(_, e)| e)
    }

    /// Every file that holds a Unity block on this server.
    pub fn managed_files(&self) -> Vec<ManagedFile> {
        let mut files: Vec<ManagedFile> = self.installed.keys().map(|(f, _)| f.clone()).collect();
        files.dedup();
        files
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("no such server")]
    NotFound,
    #[error("this server was removed")]
    Removed,
    #[error("a server with this id exists already")]
    Exists,
    #[error("{0}")]
    Invalid(String),
    #[error("request {0} is not pending on this server")]
    RequestNotPending(Uuid),
}

/// `SHA256:` and 43 characters of unpadded base64, as `ssh-keygen -l` prints.
pub fn check_fingerprint(fingerprint: &str) -> Result<(), ServerError> {
    let ok = fingerprint
        .strip_prefix("SHA256:")
        .is_some_and(|b64| b64.len() == 43 && b64.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
    if ok {
        Ok(())
    } else {
        Err(ServerError::Invalid(format!(
            "'{}' is not a SHA256 fingerprint as ssh-keygen -l prints it (SHA256:…)",
            fingerprint.chars().take(80).collect::<String>()
        )))
    }
}

pub struct Server;

impl Decider for Server {
    type Command = ServerCommand;
    type Event = ServerEvent;
    type State = ServerState;
    type Error = ServerError;

    fn decide(command: &ServerCommand, state: &ServerState) -> Result<Vec<ServerEvent>, ServerError> {
        use ServerCommand as C;
        use ServerEvent as E;
        let data = match (command, state) {
            (C::Register { server_id, spec, host_key_fingerprint }, ServerState::Absent) => {
                spec.check()?;
                if let Some(fingerprint) = host_key_fingerprint {
                    check_fingerprint(fingerprint)?;
                }
                return Ok(vec![E::ServerRegistered {
                    server_id: *server_id,
                    spec: ServerSpec { name: spec.name.trim().to_owned(), ..spec.clone() },
                    host_key_fingerprint: host_key_fingerprint.clone(),
                }]);
            }
            (C::Register { .. }, _) => return Err(ServerError::Exists),
            (_, ServerState::Absent) => return Err(ServerError::NotFound),
            (C::Remove, ServerState::Removed) => return Ok(vec![]),
            (_, ServerState::Removed) => return Err(ServerError::Removed),
            (_, ServerState::Active(data)) => data,
        };
        match command {
            C::Register { .. } => unreachable!("handled above"),
            C::Update { spec } => {
                spec.check()?;
                let spec = ServerSpec { name: spec.name.trim().to_owned(), ..spec.clone() };
                Ok(if spec == data.spec { vec![] } else { vec![E::ServerUpdated { spec }] })
            }
            C::Remove => Ok(vec![E::ServerRemoved {}]),
            C::ObserveHostKey { presented } => match &data.host_key {
                None => Ok(vec![E::HostKeyPinned { fingerprint: presented.clone(), trust_on_first_use: true }]),
                Some(pinned) if pinned == presented => Ok(vec![]),
                Some(_) if data.presented_host_key.as_ref() == Some(presented) => Ok(vec![]),
                Some(pinned) => Ok(vec![E::HostKeyMismatch { expected: pinned.clone(), presented: presented.clone() }]),
            },
            C::AcceptHostKey { fingerprint } => {
                check_fingerprint(fingerprint)?;
                if data.host_key.as_ref() == Some(fingerprint) && data.host_key_status == HostKeyStatus::Pinned {
                    return Ok(vec![]);
                }
                Ok(vec![E::HostKeyAccepted { fingerprint: fingerprint.clone(), previous: data.host_key.clone() }])
            }
            C::Request { request_id, request } => {
                if data.pending.contains_key(request_id) {
                    return Err(ServerError::Invalid(format!("request {request_id} exists already")));
                }
                let request_id = *request_id;
                Ok(vec![match request {
                    ServerRequest::TestConnection => E::ConnectionTestRequested { request_id },
                    ServerRequest::Check => E::KeyCheckRequested { request_id },
                    ServerRequest::Install { file, entry, replaces } => {
                        file.check()?;
                        E::KeyInstallRequested {
                            request_id,
                            file: file.clone(),
                            entry: entry.clone(),
                            replaces: *replaces,
                        }
                    }
                    ServerRequest::Remove { file, entry } => {
                        file.check()?;
                        E::KeyRemovalRequested { request_id, file: file.clone(), entry: entry.clone() }
                    }
                    ServerRequest::DeployCertificate { deployment } => {
                        deployment.check()?;
                        E::CertificateDeploymentRequested { request_id, deployment: deployment.clone() }
                    }
                }])
            }
            C::Complete { request_id, outcome, follow_up_id } => {
                let request = data.pending.get(request_id).ok_or(ServerError::RequestNotPending(*request_id))?;
                let request_id = *request_id;
                let mismatch =
                    || ServerError::Invalid(format!("outcome {outcome:?} does not fit a {} request", request.kind()));
                match (request, outcome) {
                    (ServerRequest::TestConnection, Outcome::Tested(info)) => {
                        Ok(vec![E::ConnectionTested { request_id, info: info.clone() }])
                    }
                    (ServerRequest::TestConnection, Outcome::Failed(error)) => {
                        Ok(vec![E::ConnectionTestFailed { request_id, error: error.clone() }])
                    }
                    (ServerRequest::Install { file, entry, replaces }, Outcome::Done) => {
                        let mut events = vec![E::KeyInstalled { request_id, file: file.clone(), entry: entry.clone() }];
                        // A server that logs in with the rotated key switches to its
                        // replacement once that is in the login user's authorized_keys, before
                        // the old key is removed there.
                        let login_file = ManagedFile::AuthorizedKeys { user: data.spec.username.clone() };
                        let logs_in_with_old =
                            replaces.is_some_and(|old| data.spec.authentication == ServerAuth::SshKey { key_id: old });
                        if logs_in_with_old && *file == login_file && entry.kind == EntryKind::SshKey {
                            let spec = ServerSpec {
                                authentication: ServerAuth::SshKey { key_id: entry.id },
                                ..data.spec.clone()
                            };
                            events.push(E::ServerUpdated { spec });
                        }
                        let old = replaces.and_then(|old| data.installed.get(&(file.clone(), old)));
                        if let Some(old) = old {
                            events.push(E::KeyRemovalRequested {
                                request_id: *follow_up_id,
                                file: file.clone(),
                                entry: old.clone(),
                            });
                        }
                        Ok(events)
                    }
                    (ServerRequest::Install { file, entry, .. }, Outcome::Failed(error)) => {
                        Ok(vec![E::KeyInstallFailed {
                            request_id,
                            file: file.clone(),
                            entry: entry.clone(),
                            error: error.clone(),
                        }])
                    }
                    (ServerRequest::Remove { file, entry }, Outcome::Done) => {
                        Ok(vec![E::KeyRemoved { request_id, file: file.clone(), entry: entry.clone() }])
                    }
                    (ServerRequest::Remove { file, entry }, Outcome::Failed(error)) => Ok(vec![E::KeyRemovalFailed {
                        request_id,
                        file: file.clone(),
                        entry: entry.clone(),
                        error: error.clone(),
                    }]),
                    (ServerRequest::Check, Outcome::Checked(drift, certificate_drift)) => {
                        let mut events: Vec<ServerEvent> = drift
                            .iter()
                            .filter(|d| !data.drift.contains(d))
                            .map(|d| E::KeyDriftDetected { drift: d.clone() })
                            .collect();
                        events.extend(
                            certificate_drift
                                .iter()
                                .filter(|d| !data.certificate_drift.contains(d))
                                .map(|d| E::CertificateDriftDetected { drift: d.clone() }),
                        );
                        events.insert(
                            0,
                            E::KeysChecked {
                                request_id,
                                drift: drift.clone(),
                                certificate_drift: certificate_drift.clone(),
                            },
                        );
                        Ok(events)
                    }
                    (ServerRequest::Check, Outcome::Failed(error)) => {
                        Ok(vec![E::KeyCheckFailed { request_id, error: error.clone() }])
                    }
                    (ServerRequest::DeployCertificate { deployment }, Outcome::Deployed { reload_exit_status }) => {
                        Ok(vec![E::CertificateDeployed {
                            request_id,
                            deployment: deployment.clone(),
                            reload_exit_status: *reload_exit_status,
                        }])
                    }
                    (ServerRequest::DeployCertificate { deployment }, Outcome::Failed(error)) => {
                        Ok(vec![E::CertificateDeploymentFailed {
                            request_id,
                            deployment: deployment.clone(),
                            error: error.clone(),
                        }])
                    }
                    _ => Err(mismatch()),
                }
            }
        }
    }

    fn evolve(state: ServerState, event: &ServerEvent) -> ServerState {
        use ServerEvent as E;
        let mut data = match (state, event) {
            (_, E::ServerRegistered { server_id, spec, host_key_fingerprint }) => {
                return ServerState::Active(Box::new(ServerData {
                    server_id: *server_id,
                    spec: spec.clone(),
                    host_key: host_key_fingerprint.clone(),
                    host_key_status: if host_key_fingerprint.is_some() {
                        HostKeyStatus::Pinned
                    } else {
                        HostKeyStatus::Unknown
                    },
                    presented_host_key: None,
                    pending: BTreeMap::new(),
                    installed: BTreeMap::new(),
                    drift: vec![],
                    certificates: BTreeMap::new(),
                    certificate_drift: vec![],
                }))
            }
            (_, E::ServerRemoved {}) => return ServerState::Removed,
            (ServerState::Active(data), _) => data,
            (state, _) => return state,
        };
        if let Some((request_id, request)) = event.opened_request() {
            data.pending.insert(request_id, request);
        }
        if let Some(request_id) = event.closed_request() {
            data.pending.remove(&request_id);
        }
        match event {
            E::ServerUpdated { spec } => data.spec = spec.clone(),
            E::HostKeyPinned { fingerprint, .. } => {
                data.host_key = Some(fingerprint.clone());
                data.host_key_status = HostKeyStatus::Pinned;
            }
            E::HostKeyMismatch { presented, .. } => {
                data.host_key_status = HostKeyStatus::Mismatch;
                data.presented_host_key = Some(presented.clone());
            }
            E::HostKeyAccepted { fingerprint, .. } => {
                data.host_key = Some(fingerprint.clone());
                data.host_key_status = HostKeyStatus::Pinned;
                data.presented_host_key = None;
            }
            E::KeyInstalled { file, entry, .. } => {
                data.installed.insert((file.clone(), entry.id), entry.clone());
            }
            E::KeyRemoved { file, entry, .. } => {
                data.installed.remove(&(file.clone(), entry.id));
            }
            E::KeysChecked { drift, certificate_drift, .. } => {
                data.drift = drift.clone();
                data.certificate_drift = certificate_drift.clone();
            }
            E::CertificateDeployed { deployment, .. } => {
                data.certificates.insert(deployment.cert_path.clone(), deployment.clone());
            }
            _ => {}
        }
        ServerState::Active(data)
    }
}

#[cfg(test)]
// Expected events are built once and cloned into each expectation: clearer than from_ref here.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;
    use crate::decider::spec::given;

    const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    const OTHER: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

    fn spec() -> ServerSpec {
        ServerSpec {
            name: "nas".into(),
            address: "127.0.0.1".into(),
            port: 2222,
            username: "root".into(),
            authentication: ServerAuth::SshKey { key_id: Uuid::from_u128(7) },
            authorized_keys_file: DEFAULT_AUTHORIZED_KEYS_FILE.into(),
            tags: vec![],
        }
    }

    fn registered(host_key: Option<&str>) -> ServerEvent {
        ServerEvent::ServerRegistered {
            server_id: Uuid::from_u128(1),
            spec: spec(),
            host_key_fingerprint: host_key.map(str::to_owned),
        }
    }

    fn entry(n: u128) -> ManagedEntry {
        ManagedEntry {
            kind: EntryKind::SshKey,
            id: Uuid::from_u128(n),
            fingerprint: format!("SHA256:{n}"),
            public_key: format!("ssh-ed25519 AAAA{n} k{n}"),
        }
    }

    fn file() -> ManagedFile {
        ManagedFile::AuthorizedKeys { user: "root".into() }
    }

    #[test]
    fn specs_are_checked() {
        let bad = [
            ServerSpec { address: "host; rm -rf /".into(), ..spec() },
            ServerSpec { port: 0, ..spec() },
            ServerSpec { username: "-oProxyCommand".into(), ..spec() },
            ServerSpec { authorized_keys_file: "relative/keys".into(), ..spec() },
            ServerSpec { authorized_keys_file: "%h/../../etc/shadow".into(), ..spec() },
        ];
        for spec in bad {
            let register = ServerCommand::Register { server_id: Uuid::from_u128(1), spec, host_key_fingerprint: None };
            assert!(matches!(Server::decide(&register, &ServerState::Absent), Err(ServerError::Invalid(_))));
        }
        let register = ServerCommand::Register {
            server_id: Uuid::from_u128(1),
            spec: spec(),
            host_key_fingerprint: Some("md5:aa:bb".into()),
        };
        assert!(Server::decide(&register, &ServerState::Absent).is_err());
    }

    #[test]
    fn the_first_host_key_is_pinned_and_a_different_one_is_recorded_once_until_accepted() {
        given::<Server>(&[registered(None)])
            .when(ServerCommand::ObserveHostKey { presented: FP.into() })
            .then(&[ServerEvent::HostKeyPinned { fingerprint: FP.into(), trust_on_first_use: true }]);
        given::<Server>(&[registered(Some(FP))]).when(ServerCommand::ObserveHostKey { presented: FP.into() }).then(&[]);
        let mismatch = ServerEvent::HostKeyMismatch { expected: FP.into(), presented: OTHER.into() };
        given::<Server>(&[registered(Some(FP))])
            .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
            .then(&[mismatch.clone()]);
        given::<Server>(&[registered(Some(FP)), mismatch.clone()])
            .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
            .then(&[]);
        let state = Server::fold(&[registered(Some(FP)), mismatch.clone()]);
        let ServerState::Active(data) = &state else { panic!() };
        assert_eq!(data.host_key_status, HostKeyStatus::Mismatch);
        assert_eq!(data.host_key.as_deref(), Some(FP), "the pinned key does not change by itself");
        let accepted = ServerEvent::HostKeyAccepted { fingerprint: OTHER.into(), previous: Some(FP.into()) };
        given::<Server>(&[registered(Some(FP)), mismatch.clone()])
            .when(ServerCommand::AcceptHostKey { fingerprint: OTHER.into() })
            .then(&[accepted.clone()]);
        given::<Server>(&[registered(Some(FP)), mismatch, accepted])
            .when(ServerCommand::ObserveHostKey { presented: OTHER.into() })
            .then(&[]);
    }

    #[test]
    fn requests_pair_with_their_outcomes_and_rotation_opens_the_old_keys_removal() {
        let r = |n: u128| Uuid::from_u128(100 + n);
        let install = |n, e, replaces| ServerEvent::KeyInstallRequested {
            request_id: r(n),
            file: file(),
            entry: entry(e),
            replaces,
        };
        let installed = |n, e| ServerEvent::KeyInstalled { request_id: r(n), file: file(), entry: entry(e) };
        let history = vec![
            registered(Some(FP)),
            install(1, 10, None),
            installed(1, 10),
            install(2, 11, Some(Uuid::from_u128(10))),
        ];
        given::<Server>(&history)
            .when(ServerCommand::Complete { request_id: r(2), outcome: Outcome::Done, follow_up_id: r(3) })
            .then(&[
                installed(2, 11),
                ServerEvent::KeyRemovalRequested { request_id: r(3), file: file(), entry: entry(10) },
            ]);
        given::<Server>(&history)
            .when(ServerCommand::Complete {
                request_id: r(2),
                outcome: Outcome::Failed("refused".into()),
                follow_up_id: r(3),
            })
            .then(&[ServerEvent::KeyInstallFailed {
                request_id: r(2),
                file: file(),
                entry: entry(11),
                error: "refused".into(),
            }]);
        given::<Server>(&history)
            .when(ServerCommand::Complete { request_id: r(1), outcome: Outcome::Done, follow_up_id: r(3) })
            .then_error(ServerError::RequestNotPending(r(1)));
        let state = Server::fold(&history);
        let ServerState::Active(data) = &state else { panic!() };
        assert_eq!(data.installed_in(&file()).count(), 1);
        assert_eq!(data.pending.len(), 1);
    }

    #[test]
    fn drift_is_recorded_once_per_distinct_difference() {
        let e10 = entry(10);
        let found = ["ssh-ed25519 AAAAhand by-hand"];
        let d = drift(&file(), &[&e10], &found).unwrap();
        assert_eq!(d.unexpected, vec!["ssh-ed25519 AAAAhand by-hand".to_string()]);
        assert_eq!(d.missing, vec![e10.clone()]);
        assert_eq!(drift(&file(), &[&e10], &["ssh-ed25519 AAAA10 renamed"]), None, "comments do not matter");
        let check = |n| ServerEvent::KeyCheckRequested { request_id: Uuid::from_u128(n) };
        let checked = |n, d: Vec<FileDrift>| ServerEvent::KeysChecked {
            request_id: Uuid::from_u128(n),
            drift: d,
            certificate_drift: vec![],
        };
        given::<Server>(&[registered(None), check(1)])
            .when(ServerCommand::Complete {
                request_id: Uuid::from_u128(1),
                outcome: Outcome::Checked(vec![d.clone()], vec![]),
                follow_up_id: Uuid::nil(),
            })
            .then(&[checked(1, vec![d.clone()]), ServerEvent::KeyDriftDetected { drift: d.clone() }]);
        given::<Server>(&[registered(None), check(1), checked(1, vec![d.clone()]), check(2)])
            .when(ServerCommand::Complete {
                request_id: Uuid::from_u128(2),
                outcome: Outcome::Checked(vec![d.clone()], vec![]),
                follow_up_id: Uuid::nil(),
            })
            .then(&[checked(2, vec![d])]);
    }
}
