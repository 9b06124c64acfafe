//! The use cases that take more than one command: they read the read models, record requests
//! for the SSH reactor (unity-collectors) and wait for their outcomes. The GraphQL schema calls
//! in here after its access check and gets rows back; nothing here knows GraphQL.
//!
//! A server request is carried out by the reactor; a use case records the requests, then waits
//! (bounded by `ApiConfig::ssh_wait`) for their outcomes, and reports each server's as SUCCEEDED,
//! FAILED (with the reason) or, past the wait, PENDING.

use juniper::ID;
use unity_commands::{lease::SSH_REACTOR, servers::Requested};
use unity_domain::{
    servers::{CertificateDeployment, EntryKind, ManagedEntry, ManagedFile, ServerRequest},
    EventMetadata,
};
use unity_projections::{
    credentials::{SshCaRow, SshKeyRow},
    servers::{self as read, RequestRow, ServerRow},
};
use uuid::Uuid;

use crate::{
    errors::{ApiError, Code},
    schema::common::parse_id,
    ApiState,
};

/// At most this many servers in one distribution.
pub const MAX_TARGETS: usize = 500;

/// A rotation: the new key, and per server the install of the new key then the removal of the
/// old one.
pub struct Rotation {
    pub new_key: Uuid,
    pub operations: Vec<RequestRow>,
}

/// Replaces the key on every server where it is installed: the new key goes in, then the old
/// one comes out (the reactor opens each removal once its install succeeded).
pub async fn rotate_ssh_key(state: &ApiState, metadata: &EventMetadata, old_id: Uuid) -> Result<Rotation, ApiError> {
    state.require_reactor(SSH_REACTOR, "key rotation on servers").await?;
    let pool = state.store.pool();
    let installed = read::installations_of(pool, old_id).await?;
    let started = chrono::Utc::now();
    let created = state.commands.credentials.start_rotation(old_id, metadata).await?;
    state.settle(created.appended.as_ref()).await?;
    let (_, entry) = key_entry(state, created.id).await?;
    let mut targets = Vec::new();
    for installation in installed.iter().filter(|i| i.entry_kind == "ssh_key") {
        let file: ManagedFile = serde_json::from_value(installation.file.clone())
            .map_err(|e| ApiError::internal("installation file", &e))?;
        targets.push((
            installation.server_id,
            ServerRequest::Install { file, entry: entry.clone(), replaces: Some(old_id) },
        ));
    }
    let mut operations = request_all(state, metadata, targets).await?;
    // Each successful install opened the old key's removal on that server: wait for those too.
    let mut removals = Vec::new();
    for op in operations.iter().filter(|o| o.state == "SUCCEEDED") {
        if let Some(removal) = read::removal_of(pool, op.server_id, old_id, started).await? {
            removals.push(removal.request_id);
        }
    }
    operations.extend(wait_for_requests(state, &removals).await?);
    Ok(Rotation { new_key: created.id, operations })
}

/// Removes the key from every server where it is installed, then crypto-shreds its private
/// half; if a removal fails the key is kept and nothing is shredded. Returns whether the key was
/// deleted, and the removals.
pub async fn delete_ssh_key(
    state: &ApiState,
    metadata: &EventMetadata,
    key_id: Uuid,
) -> Result<(bool, Vec<RequestRow>), ApiError> {
    state.require_reactor(SSH_REACTOR, "key removal from servers").await?;
    let pool = state.store.pool();
    unity_projections::credentials::ssh_key(pool, key_id).await?.ok_or_else(|| ApiError::not_found("SSH key"))?;
    let users = read::servers_authenticating_with(pool, key_id).await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|s| s.name.as_str()).collect();
        return Err(ApiError::new(
            Code::Conflict,
            format!("Unity logs in to {} with this key; give them another key first", names.join(", ")),
        ));
    }
    let installed = read::installations_of(pool, key_id).await?;
    let mut targets = Vec::new();
    if !installed.is_empty() {
        let (_, entry) = key_entry(state, key_id).await?;
        for installation in installed {
            let file: ManagedFile =
                serde_json::from_value(installation.file).map_err(|e| ApiError::internal("installation file", &e))?;
            targets.push((installation.server_id, ServerRequest::Remove { file, entry: entry.clone() }));
        }
    }
    let operations = request_all(state, metadata, targets).await?;
    let deleted = operations.iter().all(|o| o.state == "SUCCEEDED");
    if deleted {
        let appended = state.commands.credentials.delete_ssh_key(key_id, metadata).await?;
        state.settle(appended.as_ref()).await?;
    }
    Ok((deleted, operations))
}

/// Installs the key in the authorized_keys of `user` (default: each server's login user).
pub async fn distribute_ssh_key(
    state: &ApiState,
    metadata: &EventMetadata,
    key_id: Uuid,
    server_ids: &[ID],
    user: Option<String>,
) -> Result<Vec<RequestRow>, ApiError> {
    let (_, entry) = key_entry(state, key_id).await?;
    let servers = target_servers(state, server_ids).await?;
    let targets = servers
        .into_iter()
        .map(|s| {
            let file = ManagedFile::AuthorizedKeys { user: user.clone().unwrap_or(s.username) };
            (s.server_id, ServerRequest::Install { file, entry: entry.clone(), replaces: None })
        })
        .collect();
    request_all(state, metadata, targets).await
}

/// Removes the key from the given servers: from every file Unity put it in, or from the login
/// user's authorized_keys where Unity has no record of it.
pub async fn remove_ssh_key_from_servers(
    state: &ApiState,
    metadata: &EventMetadata,
    key_id: Uuid,
    server_ids: &[ID],
) -> Result<Vec<RequestRow>, ApiError> {
    let (_, entry) = key_entry(state, key_id).await?;
    let servers = target_servers(state, server_ids).await?;
    let installed = read::installations_of(state.store.pool(), key_id).await?;
    let mut targets = Vec::new();
    for server in servers {
        let mut files: Vec<ManagedFile> = installed
            .iter()
            .filter(|i| i.server_id == server.server_id)
            .filter_map(|i| serde_json::from_value(i.file.clone()).ok())
            .collect();
        if files.is_empty() {
            files.push(ManagedFile::AuthorizedKeys { user: server.username.clone() });
        }
        for file in files {
            targets.push((server.server_id, ServerRequest::Remove { file, entry: entry.clone() }));
        }
    }
    request_all(state, metadata, targets).await
}

/// Writes an SSH CA's public key into a managed TrustedUserCAKeys file at `path` on each server.
pub async fn install_ssh_ca(
    state: &ApiState,
    metadata: &EventMetadata,
    ca: &SshCaRow,
    server_ids: &[ID],
    path: String,
) -> Result<Vec<RequestRow>, ApiError> {
    let entry = ManagedEntry {
        kind: EntryKind::SshCa,
        id: ca.ca_id,
        fingerprint: ca.fingerprint.clone(),
        public_key: ca.public_key.clone(),
    };
    let servers = target_servers(state, server_ids).await?;
    let targets = servers
        .into_iter()
        .map(|s| {
            let file = ManagedFile::TrustedUserCaKeys { path: path.clone() };
            (s.server_id, ServerRequest::Install { file, entry: entry.clone(), replaces: None })
        })
        .collect();
    request_all(state, metadata, targets).await
}

/// Writes a certificate (and key, chain) to a server and runs its reload command.
pub async fn deploy_certificate(
    state: &ApiState,
    metadata: &EventMetadata,
    server_id: Uuid,
    deployment: CertificateDeployment,
) -> Result<RequestRow, ApiError> {
    one(state, metadata, server_id, ServerRequest::DeployCertificate { deployment }, "deployment").await
}

/// One request on one server, and its outcome.
pub async fn one(
    state: &ApiState,
    metadata: &EventMetadata,
    server_id: Uuid,
    request: ServerRequest,
    what: &str,
) -> Result<RequestRow, ApiError> {
    let mut operations = request_all(state, metadata, vec![(server_id, request)]).await?;
    operations.pop().ok_or_else(|| ApiError::internal(what, &"no request recorded"))
}

/// The servers named in a distribution: parsed, deduplicated, existing and not removed.
async fn target_servers(state: &ApiState, ids: &[ID]) -> Result<Vec<ServerRow>, ApiError> {
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
        let row = read::server(state.store.pool(), server_id)
            .await?
            .filter(|s| s.removed_at.is_none())
            .ok_or_else(|| ApiError::not_found(&format!("server {server_id}")))?;
        servers.push(row);
    }
    Ok(servers)
}

/// The key as a managed entry, refusing deleted keys.
pub async fn key_entry(state: &ApiState, key_id: Uuid) -> Result<(SshKeyRow, ManagedEntry), ApiError> {
    let row = unity_projections::credentials::ssh_key(state.store.pool(), key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("SSH key"))?;
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
async fn request_all(
    state: &ApiState,
    metadata: &EventMetadata,
    targets: Vec<(Uuid, ServerRequest)>,
) -> Result<Vec<RequestRow>, ApiError> {
    state.require_reactor(SSH_REACTOR, "operations on servers").await?;
    let mut requested: Vec<Requested> = Vec::with_capacity(targets.len());
    for (server_id, request) in targets {
        requested.push(state.commands.servers.request(server_id, request, metadata).await?);
    }
    let last = requested.iter().filter_map(|r| r.appended.as_ref()).max_by_key(|a| a.last);
    state.settle(last).await?;
    let ids: Vec<Uuid> = requested.iter().map(|r| r.request_id).collect();
    wait_for_requests(state, &ids).await
}

/// Waits until every request has an outcome in the read model, or the configured wait is over;
/// the rows come in the order of `ids`.
async fn wait_for_requests(state: &ApiState, ids: &[Uuid]) -> Result<Vec<RequestRow>, ApiError> {
    let rows = || async { Ok(read::requests(state.store.pool(), ids).await?) };
    let done = |rows: &Vec<RequestRow>| rows.len() == ids.len() && rows.iter().all(|r| r.state != "PENDING");
    let mut rows = state.wait_until(state.config.ssh_wait, rows, done).await?;
    rows.sort_by_key(|r| ids.iter().position(|i| *i == r.request_id));
    Ok(rows)
}
