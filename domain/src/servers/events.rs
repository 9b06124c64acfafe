use super::*;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

crate::domain_event!(
    ServerEvent,
    "server",
    [
        ServerRegistered,
        ServerUpdated,
        ServerRemoved,
        HostKeyPinned,
        HostKeyMismatch,
        HostKeyAccepted,
        ConnectionTestRequested,
        ConnectionTested,
        ConnectionTestFailed,
        KeyInstallRequested,
        KeyInstalled,
        KeyInstallFailed,
        KeyRemovalRequested,
        KeyRemoved,
        KeyRemovalFailed,
        KeyCheckRequested,
        KeysChecked,
        CertificateDriftDetected,
        KeyDriftDetected,
        KeyCheckFailed,
        CertificateDeploymentRequested,
        CertificateDeployed,
        CertificateDeploymentFailed,
    ]
);

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
