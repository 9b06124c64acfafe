//! SSH keys, SSH certificate authorities and server credentials as the schema shows them, and their inputs.

use chrono::{DateTime, Utc};
use juniper::{graphql_object, GraphQLEnum, GraphQLInputObject, GraphQLObject, ID};
use unity_domain::credentials::{CredentialKind, CriticalOption, KeyAlgorithm};
use unity_projections::credentials::{self as read, CertificateRow, ServerCredentialRow, SshCaRow, SshKeyRow};

use crate::schema::common::mirror_enum;
use crate::schema::servers::{KeyInstallation, ServerOperation};
use crate::{
    errors::ApiError,
    schema::{common::*, Context},
};

mirror_enum! {
    #[graphql(name = "KeyAlgorithm")]
    pub enum KeyAlgorithmValue => KeyAlgorithm {
        Ed25519,
        Rsa,
        EcdsaP256,
        EcdsaP384,
        EcdsaP521,
    }
}

mirror_enum! {
    #[graphql(name = "CredentialKind")]
    pub enum CredentialKindValue => CredentialKind {
        Password,
        PrivateKey,
        Token,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
#[graphql(name = "CertificateType")]
pub enum CertTypeValue {
    User,
    Host,
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
        Ok(unity_projections::servers::installations_of(ctx.state.store.pool(), self.0.key_id)
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
