//! SSH keys, their exposure and use, SSH CAs and server credentials.

use juniper::ID;

use crate::{
    errors::ApiError,
    schema::{common::*, credentials, servers, Context},
};

pub async fn ssh_keys(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
    include_deleted: Option<bool>,
) -> Result<credentials::SshKeyConnection, ApiError> {
    credentials::ssh_key_connection(ctx, first, after, include_deleted.unwrap_or(false)).await
}

pub async fn ssh_key(ctx: &Context, id: ID) -> Result<credentials::SshKey, ApiError> {
    credentials::key(ctx, parse_id("id", &id)?).await
}

pub async fn key_exposure(
    ctx: &Context,
    input: credentials::KeyExposureInput,
) -> Result<Vec<servers::KeyInstallation>, ApiError> {
    if input.to < input.from {
        return Err(ApiError::bad_input("`to` must not be before `from`"));
    }
    let key_id = parse_id("keyId", &input.key_id)?;
    let rows = unity_projections::servers::key_exposure(ctx.state.store.pool(), key_id, input.from, input.to).await?;
    Ok(rows.into_iter().map(servers::KeyInstallation::from).collect())
}

pub async fn unused_ssh_keys(ctx: &Context, unused_days: Option<i32>) -> Result<Vec<credentials::SshKey>, ApiError> {
    let days = unused_days.unwrap_or(90);
    if !(0..=3650).contains(&days) {
        return Err(ApiError::bad_input("unusedDays must be between 0 and 3650"));
    }
    let rows = unity_projections::credentials::unused_ssh_keys(ctx.state.store.pool(), days).await?;
    Ok(rows.into_iter().map(credentials::SshKey).collect())
}

pub async fn unused_ssh_keys_report(ctx: &Context) -> Result<Option<credentials::UnusedKeysReport>, ApiError> {
    let Some(report) = unity_projections::credentials::latest_key_report(ctx.state.store.pool()).await? else {
        return Ok(None);
    };
    let keys: Vec<unity_domain::credentials::UnusedKey> = serde_json::from_value(report.keys).unwrap_or_default();
    Ok(Some(credentials::UnusedKeysReport {
        reported_at: report.reported_at,
        unused_days: report.unused_days,
        keys: keys
            .into_iter()
            .map(|k| credentials::UnusedKeyEntry {
                key_id: ID::new(k.key_id.to_string()),
                name: k.name,
                fingerprint: k.fingerprint,
                last_used_at: k.last_used_at,
            })
            .collect(),
    }))
}

pub async fn server_credentials(ctx: &Context) -> Result<Vec<credentials::ServerCredential>, ApiError> {
    let rows = unity_projections::credentials::server_credentials(ctx.state.store.pool()).await?;
    Ok(rows.into_iter().map(credentials::ServerCredential::from).collect())
}

pub async fn server_credential(ctx: &Context, id: ID) -> Result<credentials::ServerCredential, ApiError> {
    credentials::credential(ctx, parse_id("id", &id)?).await
}

pub async fn ssh_certificate_authorities(ctx: &Context) -> Result<Vec<credentials::SshCertificateAuthority>, ApiError> {
    let rows = unity_projections::credentials::ssh_cas(ctx.state.store.pool()).await?;
    Ok(rows.into_iter().map(credentials::SshCertificateAuthority).collect())
}

pub async fn ssh_certificate_authority(
    ctx: &Context,
    id: ID,
) -> Result<credentials::SshCertificateAuthority, ApiError> {
    credentials::ca(ctx, parse_id("id", &id)?).await
}
