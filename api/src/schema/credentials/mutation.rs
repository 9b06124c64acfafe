//! SSH keys (generate, import, reveal, rotate, delete, distribute), server credentials, SSH CAs.

use juniper::ID;

use crate::{
    auth::Principal,
    errors::{ApiError, Code},
    orchestration,
    schema::{common::*, credentials, servers, Context},
};

pub async fn generate_ssh_key(
    ctx: &Context,
    p: &Principal,
    input: credentials::GenerateSshKeyInput,
) -> Result<credentials::SshKey, ApiError> {
    let bits =
        input.bits.map(|b| u32::try_from(b).map_err(|_| ApiError::bad_input("bits must be positive"))).transpose()?;
    let created = ctx
        .state
        .commands
        .credentials
        .generate_ssh_key(
            &input.name,
            input.algorithm.into(),
            bits,
            input.comment.as_deref().unwrap_or(""),
            input.tags.unwrap_or_default(),
            &ctx.metadata(p),
        )
        .await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    credentials::key(ctx, created.id).await
}

pub async fn import_ssh_key(
    ctx: &Context,
    p: &Principal,
    input: credentials::ImportSshKeyInput,
) -> Result<credentials::SshKey, ApiError> {
    let created = ctx
        .state
        .commands
        .credentials
        .import_ssh_key(
            &input.name,
            input.private_key.as_deref(),
            input.passphrase.as_deref(),
            input.public_key.as_deref(),
            input.comment.as_deref(),
            input.tags.unwrap_or_default(),
            &ctx.metadata(p),
        )
        .await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    credentials::key(ctx, created.id).await
}

pub async fn reveal_ssh_private_key(ctx: &Context, p: &Principal, id: ID) -> Result<String, ApiError> {
    let key = ctx.state.commands.credentials.reveal_private_key(parse_id("id", &id)?, &ctx.metadata(p)).await?;
    ctx.state.settle_head().await?;
    Ok(key)
}

pub async fn rotate_ssh_key(ctx: &Context, p: &Principal, id: ID) -> Result<credentials::KeyRotation, ApiError> {
    let old_id = parse_id("id", &id)?;
    let rotation = orchestration::rotate_ssh_key(&ctx.state, &ctx.metadata(p), old_id).await?;
    Ok(credentials::KeyRotation {
        old_key: credentials::key(ctx, old_id).await?,
        new_key: credentials::key(ctx, rotation.new_key).await?,
        operations: rotation.operations.into_iter().map(servers::ServerOperation).collect(),
    })
}

pub async fn delete_ssh_key(ctx: &Context, p: &Principal, id: ID) -> Result<credentials::KeyDeletion, ApiError> {
    let key_id = parse_id("id", &id)?;
    let (deleted, operations) = orchestration::delete_ssh_key(&ctx.state, &ctx.metadata(p), key_id).await?;
    let operations = operations.into_iter().map(servers::ServerOperation).collect();
    Ok(credentials::KeyDeletion { deleted, operations, key: credentials::key(ctx, key_id).await? })
}

pub async fn distribute_ssh_key(
    ctx: &Context,
    p: &Principal,
    input: credentials::DistributeSshKeyInput,
) -> Result<Vec<servers::ServerOperation>, ApiError> {
    let key_id = parse_id("keyId", &input.key_id)?;
    let metadata = ctx.metadata(p);
    let rows = orchestration::distribute_ssh_key(&ctx.state, &metadata, key_id, &input.server_ids, input.user).await?;
    Ok(rows.into_iter().map(servers::ServerOperation).collect())
}

pub async fn remove_ssh_key_from_servers(
    ctx: &Context,
    p: &Principal,
    input: credentials::RemoveSshKeyFromServersInput,
) -> Result<Vec<servers::ServerOperation>, ApiError> {
    let key_id = parse_id("keyId", &input.key_id)?;
    let metadata = ctx.metadata(p);
    let rows = orchestration::remove_ssh_key_from_servers(&ctx.state, &metadata, key_id, &input.server_ids).await?;
    Ok(rows.into_iter().map(servers::ServerOperation).collect())
}

pub async fn create_server_credential(
    ctx: &Context,
    p: &Principal,
    input: credentials::CreateServerCredentialInput,
) -> Result<credentials::ServerCredential, ApiError> {
    let created = ctx
        .state
        .commands
        .credentials
        .create_server_credential(&input.name, input.kind.into(), &input.username, &input.secret, &ctx.metadata(p))
        .await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    credentials::credential(ctx, created.id).await
}

pub async fn update_server_credential(
    ctx: &Context,
    p: &Principal,
    input: credentials::UpdateServerCredentialInput,
) -> Result<credentials::ServerCredential, ApiError> {
    let credential_id = parse_id("id", &input.id)?;
    let appended = ctx
        .state
        .commands
        .credentials
        .update_server_credential(
            credential_id,
            input.name.as_deref(),
            input.username.as_deref(),
            input.secret.as_deref(),
            &ctx.metadata(p),
        )
        .await?;
    ctx.state.settle(appended.as_ref()).await?;
    credentials::credential(ctx, credential_id).await
}

pub async fn delete_server_credential(ctx: &Context, p: &Principal, id: ID) -> Result<bool, ApiError> {
    let credential_id = parse_id("id", &id)?;
    let users = unity_projections::servers::servers_authenticating_with(ctx.state.store.pool(), credential_id).await?;
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|s| s.name.as_str()).collect();
        return Err(ApiError::new(Code::Conflict, format!("{} log in with this credential", names.join(", "))));
    }
    let appended = ctx.state.commands.credentials.delete_server_credential(credential_id, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    Ok(true)
}

pub async fn reveal_server_credential(ctx: &Context, p: &Principal, id: ID) -> Result<String, ApiError> {
    let secret =
        ctx.state.commands.credentials.reveal_server_credential(parse_id("id", &id)?, &ctx.metadata(p)).await?;
    ctx.state.settle_head().await?;
    Ok(secret)
}

pub async fn create_ssh_certificate_authority(
    ctx: &Context,
    p: &Principal,
    input: credentials::CreateSshCertificateAuthorityInput,
) -> Result<credentials::SshCertificateAuthority, ApiError> {
    let created =
        ctx.state.commands.credentials.create_ssh_ca(&input.name, input.algorithm.into(), &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    credentials::ca(ctx, created.id).await
}

pub async fn sign_ssh_certificate(
    ctx: &Context,
    p: &Principal,
    input: credentials::SignSshCertificateInput,
) -> Result<credentials::SignedSshCertificate, ApiError> {
    let ca_id = parse_id("caId", &input.ca_id)?;
    let request = credentials::certificate_request(&input);
    let signed = ctx
        .state
        .commands
        .credentials
        .sign_ssh_certificate(ca_id, &input.public_key, request, &ctx.metadata(p))
        .await?;
    ctx.state.settle(Some(&signed.appended)).await?;
    Ok(credentials::SignedSshCertificate {
        ca_id: input.ca_id,
        serial: BigInt(signed.serial as i64),
        certificate: signed.certificate,
    })
}

pub async fn install_ssh_ca_on_servers(
    ctx: &Context,
    p: &Principal,
    input: credentials::InstallSshCaOnServersInput,
) -> Result<Vec<servers::ServerOperation>, ApiError> {
    let ca = credentials::ca(ctx, parse_id("caId", &input.ca_id)?).await?;
    let path = input.path.unwrap_or_else(|| credentials::DEFAULT_CA_PATH.into());
    let metadata = ctx.metadata(p);
    let rows = orchestration::install_ssh_ca(&ctx.state, &metadata, &ca.0, &input.server_ids, path).await?;
    Ok(rows.into_iter().map(servers::ServerOperation).collect())
}
