//! Servers, what Unity installed on them, drift, and operations on them, as the schema shows them; and their inputs.

use chrono::{DateTime, Utc};
use juniper::{graphql_object, GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_domain::servers::ManagedFile;
use unity_projections::servers::{self as read, InstallationRow, RequestRow, ServerRow};

use crate::{
    errors::ApiError,
    schema::{common::*, Context},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum OperationState {
    Pending,
    Succeeded,
    Failed,
}

/// Exactly one of the two.
#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ServerAuthenticationInput {
    pub ssh_key_id: Option<ID>,
    pub credential_id: Option<ID>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct RegisterServerInput {
    pub name: String,
    pub address: String,
    /// Default 22.
    pub port: Option<i32>,
    pub username: String,
    pub authentication: ServerAuthenticationInput,
    /// `SHA256:…` as `ssh-keygen -l` prints it; without it the first contact pins the host key.
    pub host_key_fingerprint: Option<String>,
    /// The server's sshd `AuthorizedKeysFile` (`%h` home, `%u` user); default `%h/.ssh/authorized_keys`.
    pub authorized_keys_file: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct UpdateServerInput {
    pub id: ID,
    pub name: Option<String>,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub username: Option<String>,
    pub authentication: Option<ServerAuthenticationInput>,
    pub authorized_keys_file: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct AcceptServerHostKeyInput {
    pub server_id: ID,
    pub fingerprint: String,
}

/// A file on a server holding a Unity block.
#[derive(Clone, Debug, GraphQLObject)]
pub struct ManagedFileInfo {
    /// AUTHORIZED_KEYS or TRUSTED_USER_CA_KEYS.
    pub kind: String,
    /// For AUTHORIZED_KEYS: whose.
    pub user: Option<String>,
    /// For TRUSTED_USER_CA_KEYS: where.
    pub path: Option<String>,
}

impl From<&ManagedFile> for ManagedFileInfo {
    fn from(f: &ManagedFile) -> ManagedFileInfo {
        match f {
            ManagedFile::AuthorizedKeys { user } => {
                ManagedFileInfo { kind: "AUTHORIZED_KEYS".into(), user: Some(user.clone()), path: None }
            }
            ManagedFile::TrustedUserCaKeys { path } => {
                ManagedFileInfo { kind: "TRUSTED_USER_CA_KEYS".into(), user: None, path: Some(path.clone()) }
            }
        }
    }
}

fn file_info(value: &serde_json::Value) -> ManagedFileInfo {
    serde_json::from_value::<ManagedFile>(value.clone()).map(|f| ManagedFileInfo::from(&f)).unwrap_or(ManagedFileInfo {
        kind: "UNKNOWN".into(),
        user: None,
        path: None,
    })
}

/// One stay of a key (or CA key) on a server.
#[derive(Clone, Debug, GraphQLObject)]
pub struct KeyInstallation {
    pub server_id: ID,
    pub server_name: String,
    pub file: ManagedFileInfo,
    /// SSH_KEY or SSH_CA.
    pub entry_kind: String,
    pub entry_id: ID,
    pub fingerprint: String,
    pub installed_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

impl From<InstallationRow> for KeyInstallation {
    fn from(r: InstallationRow) -> KeyInstallation {
        KeyInstallation {
            server_id: id(r.server_id),
            server_name: r.server_name,
            file: file_info(&r.file),
            entry_kind: r.entry_kind.to_ascii_uppercase(),
            entry_id: id(r.entry_id),
            fingerprint: r.fingerprint,
            installed_at: r.installed_at,
            removed_at: r.removed_at,
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct MissingKey {
    pub id: ID,
    pub fingerprint: String,
}

/// A managed block that differs from what Unity installed: edited by hand.
#[derive(Clone, Debug, GraphQLObject)]
pub struct KeyDrift {
    pub file: ManagedFileInfo,
    /// Lines found in the block that Unity did not put there.
    pub unexpected_lines: Vec<String>,
    /// Keys Unity installed that are no longer in the block.
    pub missing_keys: Vec<MissingKey>,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CertificateDriftInfo {
    pub cert_path: String,
    pub certificate_id: ID,
    pub expected_fingerprint: String,
    /// Null: the file is gone or holds no certificate.
    pub found_fingerprint: Option<String>,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct ServerAuthentication {
    pub ssh_key_id: Option<ID>,
    pub credential_id: Option<ID>,
}

pub struct Server(pub ServerRow);

#[graphql_object(context = Context)]
impl Server {
    fn id(&self) -> ID {
        id(self.0.server_id)
    }
    fn name(&self) -> &str {
        &self.0.name
    }
    fn address(&self) -> &str {
        &self.0.address
    }
    fn port(&self) -> i32 {
        self.0.port
    }
    fn username(&self) -> &str {
        &self.0.username
    }
    fn authentication(&self) -> ServerAuthentication {
        let (key, credential) = match self.0.auth_kind.as_str() {
            "SSH_KEY" => (Some(id(self.0.auth_id)), None),
            _ => (None, Some(id(self.0.auth_id))),
        };
        ServerAuthentication { ssh_key_id: key, credential_id: credential }
    }
    fn authorized_keys_file(&self) -> &str {
        &self.0.authorized_keys_file
    }
    fn tags(&self) -> &[String] {
        &self.0.tags
    }
    /// The pinned host key.
    fn host_key_fingerprint(&self) -> Option<&str> {
        self.0.host_key.as_deref()
    }
    /// Agentless monitoring of this server: configuration, status, samples, disks, pools, arrays.
    async fn monitoring(&self, ctx: &Context) -> Result<crate::schema::monitoring::ServerMonitoring, ApiError> {
        crate::schema::monitoring::monitoring_of(ctx, self.0.server_id).await
    }
    /// UNKNOWN (not contacted yet), PINNED, or MISMATCH (connections refused until
    /// acceptServerHostKey).
    fn host_key_status(&self) -> &str {
        &self.0.host_key_status
    }
    /// The key presented instead of the pinned one, while MISMATCH.
    fn presented_host_key_fingerprint(&self) -> Option<&str> {
        self.0.presented_host_key.as_deref()
    }
    fn os(&self) -> Option<&str> {
        self.0.os.as_deref()
    }
    fn kernel(&self) -> Option<&str> {
        self.0.kernel.as_deref()
    }
    fn hostname(&self) -> Option<&str> {
        self.0.hostname.as_deref()
    }
    /// Round trip of one command over SSH at the last connection test.
    fn rtt_ms(&self) -> Option<f64> {
        self.0.rtt_ms
    }
    fn last_tested_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_test_at
    }
    fn last_test_error(&self) -> Option<&str> {
        self.0.last_test_error.as_deref()
    }
    /// Hand edits found in managed blocks by the last check.
    fn key_drift(&self) -> Vec<KeyDrift> {
        let drift: Vec<unity_domain::servers::FileDrift> =
            serde_json::from_value(self.0.drift.clone()).unwrap_or_default();
        drift
            .iter()
            .map(|d| KeyDrift {
                file: ManagedFileInfo::from(&d.file),
                unexpected_lines: d.unexpected.clone(),
                missing_keys: d
                    .missing
                    .iter()
                    .map(|m| MissingKey { id: id(m.id), fingerprint: m.fingerprint.clone() })
                    .collect(),
            })
            .collect()
    }
    /// Deployed certificates whose file no longer holds what Unity wrote (last check).
    fn certificate_drift(&self) -> Vec<CertificateDriftInfo> {
        let drift: Vec<unity_domain::servers::CertificateDrift> =
            serde_json::from_value(self.0.certificate_drift.clone()).unwrap_or_default();
        drift
            .into_iter()
            .map(|d| CertificateDriftInfo {
                cert_path: d.cert_path,
                certificate_id: id(d.certificate_id),
                expected_fingerprint: d.expected_fingerprint,
                found_fingerprint: d.found_fingerprint,
            })
            .collect()
    }
    fn last_checked_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_checked_at
    }
    fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }
    fn removed_at(&self) -> Option<DateTime<Utc>> {
        self.0.removed_at
    }
    /// What Unity has installed on this server now.
    async fn installed_keys(&self, ctx: &Context) -> Result<Vec<KeyInstallation>, ApiError> {
        Ok(read::installations_on(ctx.state.store.pool(), self.0.server_id)
            .await?
            .into_iter()
            .map(KeyInstallation::from)
            .collect())
    }
}

/// The outcome of one request on one server.
pub struct ServerOperation(pub RequestRow);

#[graphql_object(context = Context)]
impl ServerOperation {
    fn request_id(&self) -> ID {
        id(self.0.request_id)
    }
    fn server_id(&self) -> ID {
        id(self.0.server_id)
    }
    /// TEST_CONNECTION, INSTALL, REMOVE or CHECK.
    fn kind(&self) -> &str {
        &self.0.kind
    }
    fn state(&self) -> OperationState {
        match self.0.state.as_str() {
            "SUCCEEDED" => OperationState::Succeeded,
            "FAILED" => OperationState::Failed,
            _ => OperationState::Pending,
        }
    }
    fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    fn requested_at(&self) -> DateTime<Utc> {
        self.0.requested_at
    }
    fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    async fn server(&self, ctx: &Context) -> Result<Option<Server>, ApiError> {
        Ok(read::server(ctx.state.store.pool(), self.0.server_id).await?.map(Server))
    }
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct ConnectionTest {
    pub succeeded: bool,
    pub error: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    pub rtt_ms: Option<f64>,
    pub server: Server,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct ServerEdge {
    pub cursor: String,
    pub node: Server,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct ServerConnection {
    pub edges: Vec<ServerEdge>,
    pub page_info: PageInfo,
}
