//! The credentials part of the schema: SSH keys, servers, server credentials, distribution, SSH
//! certificate authorities. The root fields in `mod.rs` check roles and call in here.
//!
//! Operations on servers are carried out by the SSH reactor (unity-collectors): a mutation records
//! the requests, then waits (bounded by `ApiConfig::ssh_wait`) for their outcomes and reports
//! each server's as SUCCEEDED, FAILED (with the reason) or, past the wait, PENDING.

use chrono::{DateTime, Utc};
use juniper::{graphql_object, GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_commands::{credentials::CredentialsError, servers::Requested};
use unity_domain::{
    credentials::{CertType, CertificateRequest, CredentialError, CredentialKind, CriticalOption, KeyAlgorithm},
    servers::{
        EntryKind, ManagedEntry, ManagedFile, ServerAuth, ServerError, ServerRequest, ServerSpec,
        DEFAULT_AUTHORIZED_KEYS_FILE,
    },
};
use unity_projections::credentials::{
    self as read, CertificateRow, InstallationRow, RequestRow, ServerCredentialRow, ServerRow, SshCaRow, SshKeyRow,
};
use uuid::Uuid;

use super::{
    types::{decode_cursor, encode_cursor, page_size, paginate, parse_id, BigInt, PageInfo},
    Context,
};
use crate::errors::{ApiError, Code};

/// At most this many servers in one distribution.
pub const MAX_TARGETS: usize = 500;
/// Where installSshCaOnServers writes when no path is given.
pub const DEFAULT_CA_PATH: &str = "/etc/ssh/unity_trusted_user_ca_keys";
/// What a USER certificate permits when the request names no extensions (as `ssh-keygen -s`).
pub const DEFAULT_USER_EXTENSIONS: [&str; 5] =
    ["permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc"];

impl From<CredentialsError> for ApiError {
    fn from(e: CredentialsError) -> ApiError {
        use CredentialsError as E;
        match e {
            E::Credential(e) => {
                let code = match &e {
                    CredentialError::KeyNotFound
                    | CredentialError::CaNotFound
                    | CredentialError::CredentialNotFound => Code::NotFound,
                    CredentialError::KeyExists
                    | CredentialError::CaExists
                    | CredentialError::AlreadyRotated(_)
                    | CredentialError::KeyDeleted
                    | CredentialError::CredentialDeleted => Code::Conflict,
                    CredentialError::Invalid(_)
                    | CredentialError::RsaTooSmall(_)
                    | CredentialError::NoPrivateKey(_) => Code::BadUserInput,
                };
                ApiError::new(code, e.to_string())
            }
            E::Server(e) => {
                let code = match &e {
                    ServerError::NotFound => Code::NotFound,
                    ServerError::Removed | ServerError::Exists | ServerError::RequestNotPending(_) => Code::Conflict,
                    ServerError::Invalid(_) => Code::BadUserInput,
                };
                ApiError::new(code, e.to_string())
            }
            E::Key(unity_commands::credentials::ssh_keys::KeyError::Signing(reason)) => {
                ApiError::internal("ssh key", &reason)
            }
            E::Key(e) => ApiError::bad_input(e.to_string()),
            E::Contended(_) => ApiError::new(Code::Conflict, "too many concurrent changes to this record; try again"),
            E::Store(e) => e.into(),
            E::Vault(unity_commands::vault::VaultError::Store(e)) => e.into(),
            E::Vault(e) => ApiError::internal("vault", &e),
            E::Decode(e) => ApiError::internal("decode", &e),
        }
    }
}

// -------------------------------------------------------------------------------------------
// enums and inputs

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "KeyAlgorithm")]
pub enum KeyAlgorithmValue {
    Ed25519,
    Rsa,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

impl From<KeyAlgorithmValue> for KeyAlgorithm {
    fn from(a: KeyAlgorithmValue) -> KeyAlgorithm {
        match a {
            KeyAlgorithmValue::Ed25519 => KeyAlgorithm::Ed25519,
            KeyAlgorithmValue::Rsa => KeyAlgorithm::Rsa,
            KeyAlgorithmValue::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            KeyAlgorithmValue::EcdsaP384 => KeyAlgorithm::EcdsaP384,
            KeyAlgorithmValue::EcdsaP521 => KeyAlgorithm::EcdsaP521,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "CredentialKind")]
pub enum CredentialKindValue {
    Password,
    PrivateKey,
    Token,
}

impl From<CredentialKindValue> for CredentialKind {
    fn from(k: CredentialKindValue) -> CredentialKind {
        match k {
            CredentialKindValue::Password => CredentialKind::Password,
            CredentialKindValue::PrivateKey => CredentialKind::PrivateKey,
            CredentialKindValue::Token => CredentialKind::Token,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "CertificateType")]
pub enum CertTypeValue {
    User,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum OperationState {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct GenerateSshKeyInput {
    pub name: String,
    pub algorithm: KeyAlgorithmValue,
    /// RSA only: 2048, 3072 or 4096 (the default).
    pub bits: Option<i32>,
    pub comment: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct ImportSshKeyInput {
    pub name: String,
    /// OpenSSH (`BEGIN OPENSSH PRIVATE KEY`) or PEM (PKCS#1, PKCS#8, SEC1), encrypted or not.
    pub private_key: Option<String>,
    pub passphrase: Option<String>,
    /// An OpenSSH public key line; alone, for a key whose private half stays with its owner.
    pub public_key: Option<String>,
    pub comment: Option<String>,
    pub tags: Option<Vec<String>>,
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

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateServerCredentialInput {
    pub name: String,
    pub kind: CredentialKindValue,
    pub username: String,
    pub secret: String,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct UpdateServerCredentialInput {
    pub id: ID,
    pub name: Option<String>,
    pub username: Option<String>,
    pub secret: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct DistributeSshKeyInput {
    pub key_id: ID,
    pub server_ids: Vec<ID>,
    /// The account whose authorized_keys receives the key; default: each server's login user.
    pub user: Option<String>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct RemoveSshKeyFromServersInput {
    pub key_id: ID,
    pub server_ids: Vec<ID>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct KeyExposureInput {
    pub key_id: ID,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CreateSshCertificateAuthorityInput {
    pub name: String,
    pub algorithm: KeyAlgorithmValue,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct CriticalOptionInput {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct SignSshCertificateInput {
    pub ca_id: ID,
    /// The OpenSSH public key line to certify.
    pub public_key: String,
    pub cert_type: CertTypeValue,
    /// The certificate's key id (shown in sshd's log).
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    /// Default for USER certificates: the five `permit-*` extensions `ssh-keygen` grants; none
    /// for HOST certificates.
    pub extensions: Option<Vec<String>>,
    pub critical_options: Option<Vec<CriticalOptionInput>>,
}

#[derive(Clone, Debug, GraphQLInputObject)]
pub struct InstallSshCaOnServersInput {
    pub ca_id: ID,
    pub server_ids: Vec<ID>,
    /// Absolute path of the TrustedUserCAKeys file; default `/etc/ssh/unity_trusted_user_ca_keys`.
    pub path: Option<String>,
}

// -------------------------------------------------------------------------------------------
// objects

fn id(uuid: Uuid) -> ID {
    ID::new(uuid.to_string())
}

/// An SSH key Unity holds (the private half, if any, only through revealSshPrivateKey).
pub struct SshKey(pub SshKeyRow);

#[graphql_object(context = Context)]
impl SshKey {
    fn id(&self) -> ID {
        id(self.0.key_id)
    }
    fn name(&self) -> &str {
        &self.0.name
    }
    fn algorithm(&self) -> &str {
        &self.0.algorithm
    }
    fn bits(&self) -> i32 {
        self.0.bits
    }
    /// `SHA256:…`, exactly as `ssh-keygen -l` prints it.
    fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }
    /// The OpenSSH public key line.
    fn public_key(&self) -> &str {
        &self.0.public_key
    }
    fn comment(&self) -> &str {
        &self.0.comment
    }
    fn tags(&self) -> &[String] {
        &self.0.tags
    }
    /// GENERATED, IMPORTED or ROTATED.
    fn origin(&self) -> &str {
        &self.0.origin
    }
    fn rotated_from(&self) -> Option<ID> {
        self.0.rotated_from.map(id)
    }
    fn replaced_by(&self) -> Option<ID> {
        self.0.replaced_by.map(id)
    }
    fn has_private_key(&self) -> bool {
        self.0.has_private_key
    }
    fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When Unity's own SSH sessions last logged in with this key.
    fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// Where the key is installed now.
    async fn installations(&self, ctx: &Context) -> Result<Vec<KeyInstallation>, ApiError> {
        Ok(read::installations_of(ctx.state.store.pool(), self.0.key_id)
            .await?
            .into_iter()
            .map(KeyInstallation::from)
            .collect())
    }
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

#[derive(Clone, Debug, GraphQLObject)]
pub struct ServerCredential {
    pub id: ID,
    pub name: String,
    pub kind: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ServerCredentialRow> for ServerCredential {
    fn from(r: ServerCredentialRow) -> ServerCredential {
        ServerCredential {
            id: id(r.credential_id),
            name: r.name,
            kind: r.kind,
            username: r.username,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
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
pub struct KeyRotation {
    pub old_key: SshKey,
    pub new_key: SshKey,
    /// Installs of the new key, then removals of the old one, per server.
    pub operations: Vec<ServerOperation>,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct KeyDeletion {
    /// False while a removal has not succeeded: the key stays, nothing is shredded.
    pub deleted: bool,
    pub operations: Vec<ServerOperation>,
    pub key: SshKey,
}

pub struct SshCertificateAuthority(pub SshCaRow);

#[graphql_object(context = Context)]
impl SshCertificateAuthority {
    fn id(&self) -> ID {
        id(self.0.ca_id)
    }
    fn name(&self) -> &str {
        &self.0.name
    }
    fn algorithm(&self) -> &str {
        &self.0.algorithm
    }
    fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }
    /// The CA's public key line, for sshd's TrustedUserCAKeys or a known_hosts @cert-authority.
    fn public_key(&self) -> &str {
        &self.0.public_key
    }
    fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    fn certificates_signed(&self) -> BigInt {
        BigInt(self.0.certificates)
    }
    /// Certificates this CA signed, newest first.
    async fn certificates(
        &self,
        ctx: &Context,
        first: Option<i32>,
        before_serial: Option<BigInt>,
    ) -> Result<Vec<SshCertificate>, ApiError> {
        let limit = page_size(first)?;
        let rows = read::certificates(ctx.state.store.pool(), self.0.ca_id, before_serial.map(|b| b.0), limit).await?;
        Ok(rows.into_iter().map(SshCertificate::from).collect())
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct CriticalOptionValue {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct SshCertificate {
    pub ca_id: ID,
    pub serial: BigInt,
    pub cert_type: String,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: DateTime<Utc>,
    pub valid_before: DateTime<Utc>,
    pub extensions: Vec<String>,
    pub critical_options: Vec<CriticalOptionValue>,
    pub subject_fingerprint: String,
    pub signed_at: DateTime<Utc>,
    pub signed_by: String,
}

impl From<CertificateRow> for SshCertificate {
    fn from(r: CertificateRow) -> SshCertificate {
        let options: Vec<CriticalOption> = serde_json::from_value(r.critical_options).unwrap_or_default();
        SshCertificate {
            ca_id: id(r.ca_id),
            serial: BigInt(r.serial),
            cert_type: r.cert_type,
            key_id: r.key_id,
            principals: r.principals,
            valid_after: r.valid_after,
            valid_before: r.valid_before,
            extensions: r.extensions,
            critical_options: options
                .into_iter()
                .map(|o| CriticalOptionValue { name: o.name, value: o.value })
                .collect(),
            subject_fingerprint: r.subject_fingerprint,
            signed_at: r.signed_at,
            signed_by: r.signed_by,
        }
    }
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct SignedSshCertificate {
    pub ca_id: ID,
    pub serial: BigInt,
    /// The OpenSSH certificate line, to save as `<key>-cert.pub`.
    pub certificate: String,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct UnusedKeysReport {
    pub reported_at: DateTime<Utc>,
    pub unused_days: i32,
    pub keys: Vec<UnusedKeyEntry>,
}

#[derive(Clone, Debug, GraphQLObject)]
pub struct UnusedKeyEntry {
    pub key_id: ID,
    pub name: String,
    pub fingerprint: String,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct SshKeyEdge {
    pub cursor: String,
    pub node: SshKey,
}

#[derive(GraphQLObject)]
#[graphql(context = Context)]
pub struct SshKeyConnection {
    pub edges: Vec<SshKeyEdge>,
    pub page_info: PageInfo,
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

// -------------------------------------------------------------------------------------------
// the work behind the root fields

pub async fn ssh_key_connection(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
    include_deleted: bool,
) -> Result<SshKeyConnection, ApiError> {
    let limit = page_size(first)?;
    let after = after.map(|c| decode_cursor("ssh_key", &c)).transpose()?;
    let after = after.map(|a| a.parse::<Uuid>().map_err(|_| ApiError::bad_input("bad cursor"))).transpose()?;
    let rows = read::ssh_keys(ctx.state.store.pool(), after, limit + 1, include_deleted).await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("ssh_key", &r.key_id.to_string()));
    let edges = page.into_iter().map(|(cursor, r)| SshKeyEdge { cursor, node: SshKey(r) }).collect();
    Ok(SshKeyConnection { edges, page_info })
}

pub async fn server_connection(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
) -> Result<ServerConnection, ApiError> {
    let limit = page_size(first)?;
    let after = after.map(|c| decode_cursor("server", &c)).transpose()?;
    let after = after.map(|a| a.parse::<Uuid>().map_err(|_| ApiError::bad_input("bad cursor"))).transpose()?;
    let rows = read::servers(ctx.state.store.pool(), after, limit + 1).await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("server", &r.server_id.to_string()));
    let edges = page.into_iter().map(|(cursor, r)| ServerEdge { cursor, node: Server(r) }).collect();
    Ok(ServerConnection { edges, page_info })
}

pub async fn key(ctx: &Context, key_id: Uuid) -> Result<SshKey, ApiError> {
    read::ssh_key(ctx.state.store.pool(), key_id).await?.map(SshKey).ok_or_else(|| ApiError::not_found("SSH key"))
}

pub async fn server(ctx: &Context, server_id: Uuid) -> Result<Server, ApiError> {
    read::server(ctx.state.store.pool(), server_id).await?.map(Server).ok_or_else(|| ApiError::not_found("server"))
}

pub async fn ca(ctx: &Context, ca_id: Uuid) -> Result<SshCertificateAuthority, ApiError> {
    read::ssh_ca(ctx.state.store.pool(), ca_id)
        .await?
        .map(SshCertificateAuthority)
        .ok_or_else(|| ApiError::not_found("SSH certificate authority"))
}

pub async fn credential(ctx: &Context, credential_id: Uuid) -> Result<ServerCredential, ApiError> {
    read::server_credential(ctx.state.store.pool(), credential_id)
        .await?
        .filter(|c| c.deleted_at.is_none())
        .map(ServerCredential::from)
        .ok_or_else(|| ApiError::not_found("server credential"))
}

fn authentication(input: &ServerAuthenticationInput) -> Result<ServerAuth, ApiError> {
    match (&input.ssh_key_id, &input.credential_id) {
        (Some(key), None) => Ok(ServerAuth::SshKey { key_id: parse_id("sshKeyId", key)? }),
        (None, Some(credential)) => Ok(ServerAuth::Credential { credential_id: parse_id("credentialId", credential)? }),
        _ => Err(ApiError::bad_input("authentication needs exactly one of sshKeyId and credentialId")),
    }
}

fn port(port: Option<i32>) -> Result<u16, ApiError> {
    let port = port.unwrap_or(22);
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_input(format!("port {port} is not between 1 and 65535")))
}

pub fn register_spec(input: &RegisterServerInput) -> Result<ServerSpec, ApiError> {
    Ok(ServerSpec {
        name: input.name.clone(),
        address: input.address.trim().to_owned(),
        port: port(input.port)?,
        username: input.username.clone(),
        authentication: authentication(&input.authentication)?,
        authorized_keys_file: input.authorized_keys_file.clone().unwrap_or_else(|| DEFAULT_AUTHORIZED_KEYS_FILE.into()),
        tags: input.tags.clone().unwrap_or_default(),
    })
}

pub fn updated_spec(current: &ServerRow, input: &UpdateServerInput) -> Result<ServerSpec, ApiError> {
    let authentication = match &input.authentication {
        Some(a) => authentication(a)?,
        None if current.auth_kind == "SSH_KEY" => ServerAuth::SshKey { key_id: current.auth_id },
        None => ServerAuth::Credential { credential_id: current.auth_id },
    };
    Ok(ServerSpec {
        name: input.name.clone().unwrap_or_else(|| current.name.clone()),
        address: input.address.clone().unwrap_or_else(|| current.address.clone()),
        port: match input.port {
            Some(p) => port(Some(p))?,
            None => current.port as u16,
        },
        username: input.username.clone().unwrap_or_else(|| current.username.clone()),
        authentication,
        authorized_keys_file: input
            .authorized_keys_file
            .clone()
            .unwrap_or_else(|| current.authorized_keys_file.clone()),
        tags: input.tags.clone().unwrap_or_else(|| current.tags.clone()),
    })
}

pub fn certificate_request(input: &SignSshCertificateInput) -> CertificateRequest {
    let cert_type = match input.cert_type {
        CertTypeValue::User => CertType::User,
        CertTypeValue::Host => CertType::Host,
    };
    let extensions = input.extensions.clone().unwrap_or_else(|| match cert_type {
        CertType::User => DEFAULT_USER_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        CertType::Host => vec![],
    });
    CertificateRequest {
        cert_type,
        key_id: input.key_id.clone(),
        principals: input.principals.clone(),
        valid_after: input.valid_after,
        valid_before: input.valid_before,
        extensions,
        critical_options: input
            .critical_options
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|o| CriticalOption { name: o.name, value: o.value })
            .collect(),
    }
}

/// The servers named in a distribution: parsed, deduplicated, existing and not removed.
pub async fn target_servers(ctx: &Context, ids: &[ID]) -> Result<Vec<ServerRow>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_TARGETS {
        return Err(ApiError::bad_input(format!("serverIds needs 1 to {MAX_TARGETS} servers")));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut servers = Vec::new();
    for raw in ids {
        let server_id = parse_id("serverIds", raw)?;
        if !seen.insert(server_id) {
            continue;
        }
        let row = read::server(ctx.state.store.pool(), server_id)
            .await?
            .filter(|s| s.removed_at.is_none())
            .ok_or_else(|| ApiError::not_found(&format!("server {server_id}")))?;
        servers.push(row);
    }
    Ok(servers)
}

/// The key as a managed entry, refusing deleted keys.
pub async fn key_entry(ctx: &Context, key_id: Uuid) -> Result<(SshKeyRow, ManagedEntry), ApiError> {
    let row = read::ssh_key(ctx.state.store.pool(), key_id).await?.ok_or_else(|| ApiError::not_found("SSH key"))?;
    if row.deleted_at.is_some() {
        return Err(ApiError::new(Code::Conflict, "this SSH key was deleted"));
    }
    let entry = ManagedEntry {
        kind: EntryKind::SshKey,
        id: key_id,
        fingerprint: row.fingerprint.clone(),
        public_key: row.public_key.clone(),
    };
    Ok((row, entry))
}

/// Records one request per target, then waits for their outcomes.
pub async fn request_all(ctx: &Context, targets: Vec<(Uuid, ServerRequest)>) -> Result<Vec<ServerOperation>, ApiError> {
    let p = ctx.principal.as_ref().expect("checked by the root field");
    ctx.require_reactor(unity_commands::lease::SSH_REACTOR, "operations on servers").await?;
    let metadata = ctx.metadata(p);
    let mut requested: Vec<Requested> = Vec::with_capacity(targets.len());
    for (server_id, request) in targets {
        requested.push(ctx.state.commands.servers.request(server_id, request, &metadata).await?);
    }
    wait_for_outcomes(ctx, &requested).await
}

/// Waits until every request has an outcome in the read model, or the configured wait is over.
pub async fn wait_for_outcomes(ctx: &Context, requested: &[Requested]) -> Result<Vec<ServerOperation>, ApiError> {
    let last = requested.iter().filter_map(|r| r.appended.as_ref()).max_by_key(|a| a.last);
    ctx.settle(last).await?;
    let ids: Vec<Uuid> = requested.iter().map(|r| r.request_id).collect();
    let rows = wait_for_requests(ctx, &ids).await?;
    Ok(rows.into_iter().map(ServerOperation).collect())
}

pub async fn wait_for_requests(ctx: &Context, ids: &[Uuid]) -> Result<Vec<RequestRow>, ApiError> {
    let read = || async { Ok(read::requests(ctx.state.store.pool(), ids).await?) };
    let done = |rows: &Vec<RequestRow>| rows.len() == ids.len() && rows.iter().all(|r| r.state != "PENDING");
    let mut rows = ctx.wait_until(ctx.state.config.ssh_wait, read, done).await?;
    rows.sort_by_key(|r| ids.iter().position(|i| *i == r.request_id));
    Ok(rows)
}
