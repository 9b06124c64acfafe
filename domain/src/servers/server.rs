use super::*;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decider::Decider;

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

impl crate::Refuse for ServerError {
    fn refusal(&self) -> crate::Refusal {
        use crate::Refusal as R;
        match self {
            ServerError::NotFound => R::NotFound,
            ServerError::Removed | ServerError::Exists | ServerError::RequestNotPending(_) => R::Conflict,
            ServerError::Invalid(_) => R::Invalid,
        }
    }
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

    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Self::Event>, Self::Error> {
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

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
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
