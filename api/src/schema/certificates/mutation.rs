//! Internal CAs; issuing, importing, revoking, deploying and renewing certificates.

use juniper::ID;
use unity_domain::identity::Role;

use crate::{
    auth::Principal,
    errors::{ApiError, Code},
    orchestration,
    schema::{certificates, common::*, servers, Context},
};

pub async fn create_certificate_authority(
    ctx: &Context,
    p: &Principal,
    input: certificates::CreateCertificateAuthorityInput,
) -> Result<certificates::CertificateAuthority, ApiError> {
    let path_length = input
        .path_length
        .map(|n| u8::try_from(n).map_err(|_| ApiError::bad_input("pathLength must be between 0 and 255")))
        .transpose()?;
    let new = unity_commands::certificates::NewCa {
        name: input.name,
        common_name: input.common_name,
        organization: input.organization,
        key_algorithm: input.key_algorithm.unwrap_or(certificates::CertificateKeyAlgorithmValue::EcdsaP256).into(),
        validity_days: certificates::days(input.validity_days, 3650),
        path_length,
        parent_id: input.parent_id.as_ref().map(|i| parse_id("parentId", i)).transpose()?,
    };
    let created = ctx.state.commands.certificates.create_ca(new, chrono::Utc::now(), &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    let row = unity_projections::certificates::x509_ca(ctx.state.store.pool(), created.id).await?;
    row.map(certificates::CertificateAuthority::from).ok_or_else(|| ApiError::not_found("certificate authority"))
}

pub async fn issue_certificate(
    ctx: &Context,
    p: &Principal,
    input: certificates::IssueCertificateInput,
) -> Result<certificates::Certificate, ApiError> {
    let new = unity_commands::certificates::NewCertificate {
        ca_id: parse_id("caId", &input.ca_id)?,
        name: input.name,
        common_name: input.common_name,
        dns_names: input.dns_names.unwrap_or_default(),
        ip_addresses: certificates::parse_ips(&input.ip_addresses.unwrap_or_default())?,
        validity_days: certificates::days(input.validity_days, 90),
        usage: input.usage.unwrap_or(certificates::CertificateUsageValue::Server).into(),
        key_algorithm: input.key_algorithm.unwrap_or(certificates::CertificateKeyAlgorithmValue::EcdsaP256).into(),
    };
    let created = ctx.state.commands.certificates.issue(new, chrono::Utc::now(), &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    certificates::certificate_by_id(ctx, created.id).await
}

pub async fn import_certificate(
    ctx: &Context,
    p: &Principal,
    input: certificates::ImportCertificateInput,
) -> Result<certificates::Certificate, ApiError> {
    let created = ctx
        .state
        .commands
        .certificates
        .import(
            input.name.as_deref(),
            &input.certificate_pem,
            input.chain_pem.as_deref(),
            input.private_key_pem.as_deref(),
            chrono::Utc::now(),
            &ctx.metadata(p),
        )
        .await;
    let created = match created {
        Err(unity_commands::certificates::X509CommandError::AlreadyImported(id)) => {
            // Name the record the caller already has.
            let existing = certificates::certificate_by_id(ctx, id).await?;
            return Err(ApiError::new(
                Code::Conflict,
                format!("this certificate was imported already, as \"{}\" (id {id})", existing.name),
            ));
        }
        other => other?,
    };
    ctx.state.settle(created.appended.as_ref()).await?;
    certificates::certificate_by_id(ctx, created.id).await
}

pub async fn revoke_certificate(
    ctx: &Context,
    p: &Principal,
    input: certificates::RevokeCertificateInput,
) -> Result<certificates::Certificate, ApiError> {
    let certificate_id = parse_id("id", &input.id)?;
    let reason = input.reason.unwrap_or(certificates::RevocationReasonValue::Unspecified).into();
    let appended =
        ctx.state.commands.certificates.revoke(certificate_id, reason, chrono::Utc::now(), &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    certificates::certificate_by_id(ctx, certificate_id).await
}

pub async fn deploy_certificate(
    ctx: &Context,
    p: &Principal,
    input: certificates::DeployCertificateInput,
) -> Result<servers::ServerOperation, ApiError> {
    // Writing a private key out, or running a command as the login user, is an admin's call:
    // an operator could otherwise read any key (which only admins may reveal) or run anything.
    if input.key_path.is_some() || input.reload_command.is_some() {
        ctx.require(Role::Admin)?;
    }
    let certificate = certificates::certificate_by_id(ctx, parse_id("certificateId", &input.certificate_id)?).await?;
    if certificate.status == certificates::CertificateStatus::Revoked {
        return Err(ApiError::new(Code::Conflict, "this certificate is revoked"));
    }
    let server_id = parse_id("serverId", &input.server_id)?;
    servers::server_by_id(ctx, server_id).await?;
    let deployment = unity_domain::servers::CertificateDeployment {
        certificate_id: parse_id("certificateId", &input.certificate_id)?,
        fingerprint: certificate.fingerprint.clone(),
        cert_path: input.cert_path,
        key_path: input.key_path,
        chain_path: input.chain_path,
        owner: input.owner,
        mode: input.mode,
        reload_command: input.reload_command,
    };
    let op = orchestration::deploy_certificate(&ctx.state, &ctx.metadata(p), server_id, deployment).await?;
    Ok(servers::ServerOperation(op))
}

pub async fn configure_certificate_renewal(
    ctx: &Context,
    p: &Principal,
    input: certificates::ConfigureCertificateRenewalInput,
) -> Result<certificates::Certificate, ApiError> {
    let certificate_id = parse_id("id", &input.id)?;
    let days = input
        .renew_before_days
        .map(|d| u32::try_from(d).map_err(|_| ApiError::bad_input("renewBeforeDays must be positive")))
        .transpose()?;
    let appended = ctx.state.commands.certificates.configure_renewal(certificate_id, days, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    certificates::certificate_by_id(ctx, certificate_id).await
}

pub async fn reveal_certificate_private_key(ctx: &Context, p: &Principal, id: ID) -> Result<String, ApiError> {
    let key = ctx.state.commands.certificates.reveal_private_key(parse_id("id", &id)?, &ctx.metadata(p)).await?;
    ctx.state.settle_head().await?;
    Ok(key)
}
