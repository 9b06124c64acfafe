//! Registering ACME accounts, ordering certificates, DNS providers.

use juniper::ID;

use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{acme, certificates, common::*, Context},
};

pub async fn register_acme_account(
    ctx: &Context,
    p: &Principal,
    input: acme::RegisterAcmeAccountInput,
) -> Result<acme::AcmeAccount, ApiError> {
    ctx.state.require_reactor(unity_commands::lease::ACME_REACTOR, "ACME registrations and orders").await?;
    let directory_url = unity_commands::acme::directory_url(
        input.preset.map(Into::into),
        input.directory_url.as_deref(),
        input.step_ca_provisioner.as_deref(),
    )?;
    let new = unity_commands::acme::NewAcmeAccount {
        name: input.name,
        directory_url,
        email: input.email,
        eab: input.eab.map(|e| (e.kid, e.hmac_key)),
        ca_bundle_pem: input.ca_bundle_pem,
        terms_agreed: input.accept_terms.unwrap_or(false),
    };
    let created = ctx.state.commands.acme.register_account(new, &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    let account = || acme::account(ctx, created.id);
    ctx.state.wait_until(ctx.state.config.acme_wait, account, |a| a.status != acme::AcmeAccountStatus::Pending).await
}

pub async fn request_acme_certificate(
    ctx: &Context,
    p: &Principal,
    input: acme::RequestAcmeCertificateInput,
) -> Result<acme::AcmeOrder, ApiError> {
    ctx.state.require_reactor(unity_commands::lease::ACME_REACTOR, "ACME registrations and orders").await?;
    let domains: Vec<String> = input.domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
    let spec = unity_domain::acme::AcmeOrderSpec {
        account_id: parse_id("accountId", &input.account_id)?,
        name: input.name.unwrap_or_else(|| domains.first().cloned().unwrap_or_default()),
        domains,
        challenge: input.challenge.unwrap_or(acme::AcmeChallengeValue::Http01).into(),
        key_algorithm: input.key_algorithm.unwrap_or(certificates::CertificateKeyAlgorithmValue::EcdsaP256).into(),
        dns_provider_id: input.dns_provider_id.as_ref().map(|i| parse_id("dnsProviderId", i)).transpose()?,
        renewal_of: None,
    };
    let created = ctx.state.commands.acme.request_order(uuid::Uuid::now_v7(), spec, &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    // Wait on the order's own row, then for every read model: its certificate is another
    // projection's, which may not have caught up with the order's outcome yet.
    let row = || async { Ok(unity_projections::acme::order(ctx.state.store.pool(), created.id).await?) };
    let decided =
        |row: &Option<unity_projections::acme::AcmeOrderRow>| row.as_ref().is_some_and(|r| r.status != "PENDING");
    ctx.state.wait_until(ctx.state.config.acme_wait, row, decided).await?;
    ctx.state.settle_head().await?;
    acme::order(ctx, created.id).await
}

pub async fn create_dns_provider(
    ctx: &Context,
    p: &Principal,
    input: acme::CreateDnsProviderInput,
) -> Result<acme::DnsProvider, ApiError> {
    let new = match (input.rfc2136, input.webhook) {
        (Some(r), None) => {
            let tsig = match (r.tsig_key_name, r.tsig_algorithm, r.tsig_secret) {
                (None, None, None) => None,
                (Some(name), algorithm, Some(secret)) => {
                    Some((name, algorithm.unwrap_or(acme::TsigAlgorithmValue::HmacSha256).into(), secret))
                }
                _ => return Err(ApiError::bad_input("a TSIG key needs tsigKeyName and tsigSecret")),
            };
            unity_commands::acme::NewDnsProvider::Rfc2136 { server: r.server, zone: r.zone, tsig }
        }
        (None, Some(w)) => unity_commands::acme::NewDnsProvider::Webhook { url: w.url, bearer_token: w.bearer_token },
        _ => return Err(ApiError::bad_input("give exactly one of rfc2136 and webhook")),
    };
    let created = ctx.state.commands.acme.create_dns_provider(input.name, new, &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    let row = unity_projections::acme::dns_provider(ctx.state.store.pool(), created.id).await?;
    row.map(acme::DnsProvider::from).ok_or_else(|| ApiError::not_found("DNS provider"))
}

pub async fn delete_dns_provider(ctx: &Context, p: &Principal, id: ID) -> Result<bool, ApiError> {
    let appended = ctx.state.commands.acme.delete_dns_provider(parse_id("id", &id)?, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    Ok(true)
}
