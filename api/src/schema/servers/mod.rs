//! The servers part of the schema: the inventory, host keys, and operations on servers (carried out by
//! the SSH reactor; see `crate::orchestration`).

use unity_domain::servers::{ServerAuth, ServerSpec, DEFAULT_AUTHORIZED_KEYS_FILE};
use unity_projections::servers::{self as read, ServerRow};
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

pub async fn server_connection(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
) -> Result<ServerConnection, ApiError> {
    let limit = page_size(first)?;
    let after = uuid_cursor("server", after)?;
    let rows = read::servers(ctx.state.store.pool(), after, limit + 1).await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("server", &r.server_id.to_string()));
    let edges = page.into_iter().map(|(cursor, r)| ServerEdge { cursor, node: Server(r) }).collect();
    Ok(ServerConnection { edges, page_info })
}

pub async fn server_by_id(ctx: &Context, server_id: Uuid) -> Result<Server, ApiError> {
    read::server(ctx.state.store.pool(), server_id).await?.map(Server).ok_or_else(|| ApiError::not_found("server"))
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
