//! The credentials part of the schema: SSH keys, SSH certificate authorities, server credentials.

use unity_commands::credentials::CredentialsError;
use unity_domain::credentials::{CertType, CertificateRequest, CriticalOption};
use unity_projections::credentials as read;
use uuid::Uuid;

use crate::{
    errors::ApiError,
    schema::{common::*, Context},
};

mod mutation;
mod query;
mod types;

pub use mutation::*;
pub use query::*;
pub use types::*;

/// Where installSshCaOnServers writes when no path is given.
pub const DEFAULT_CA_PATH: &str = "/etc/ssh/unity_trusted_user_ca_keys";

/// What a USER certificate permits when the request names no extensions (as `ssh-keygen -s`).
pub const DEFAULT_USER_EXTENSIONS: [&str; 5] =
    ["permit-X11-forwarding", "permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc"];

impl From<CredentialsError> for ApiError {
    fn from(e: CredentialsError) -> ApiError {
        use CredentialsError as E;
        match e {
            E::Credential(e) => ApiError::refused(&e),
            E::Server(e) => ApiError::refused(&e),
            E::Key(unity_commands::credentials::ssh_keys::KeyError::Signing(reason)) => {
                ApiError::internal("ssh key", &reason)
            }
            E::Key(e) => ApiError::bad_input(e.to_string()),
            E::Contended(_) => ApiError::contended(),
            E::Store(e) => e.into(),
            E::Vault(e) => e.into(),
            E::Decode(e) => ApiError::internal("decode", &e),
        }
    }
}

pub async fn ssh_key_connection(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
    include_deleted: bool,
) -> Result<SshKeyConnection, ApiError> {
    let limit = page_size(first)?;
    let after = uuid_cursor("ssh_key", after)?;
    let rows = read::ssh_keys(ctx.state.store.pool(), after, limit + 1, include_deleted).await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("ssh_key", &r.key_id.to_string()));
    let edges = page.into_iter().map(|(cursor, r)| SshKeyEdge { cursor, node: SshKey(r) }).collect();
    Ok(SshKeyConnection { edges, page_info })
}

pub async fn key(ctx: &Context, key_id: Uuid) -> Result<SshKey, ApiError> {
    read::ssh_key(ctx.state.store.pool(), key_id).await?.map(SshKey).ok_or_else(|| ApiError::not_found("SSH key"))
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
