//! The query root: the access table for reads. Each field states the role it needs, then calls
//! its domain's module.

use juniper::{graphql_object, ID};
use unity_domain::identity::Role;

use super::{acme, audit, certificates, credentials, identity, monitoring, servers, Context};
use crate::errors::ApiError;

pub struct Query;

#[graphql_object(context = Context)]
impl Query {
    /// The signed-in user.
    fn me(ctx: &Context) -> Result<identity::User, ApiError> {
        identity::me(ctx.require(Role::Viewer)?)
    }

    /// Every user, by username.
    async fn users(
        ctx: &Context,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<identity::UserConnection, ApiError> {
        ctx.require(Role::Admin)?;
        identity::users(ctx, first, after).await
    }

    /// SSH keys in creation order; deleted ones only with `includeDeleted`.
    async fn ssh_keys(
        ctx: &Context,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
        #[graphql(description = "Include deleted keys (default false).")] include_deleted: Option<bool>,
    ) -> Result<credentials::SshKeyConnection, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::ssh_keys(ctx, first, after, include_deleted).await
    }

    /// One SSH key by id (deleted ones too).
    async fn ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::SshKey, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::ssh_key(ctx, id).await
    }

    /// Every server where the key was installed at some time in `[from, to]`, with install and
    /// removal times, from the log of distributions.
    async fn key_exposure(
        ctx: &Context,
        #[graphql(description = "The key, and the window `[from, to]` to look in.")]
        input: credentials::KeyExposureInput,
    ) -> Result<Vec<servers::KeyInstallation>, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::key_exposure(ctx, input).await
    }

    /// Keys neither used by Unity's sessions nor created in the last `unusedDays` days (default 90).
    async fn unused_ssh_keys(
        ctx: &Context,
        #[graphql(description = "Keys unused (and not created) for at least this many days (default 90).")] unused_days: Option<i32>,
    ) -> Result<Vec<credentials::SshKey>, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::unused_ssh_keys(ctx, unused_days).await
    }

    /// The latest scheduled unused-keys report.
    async fn unused_ssh_keys_report(ctx: &Context) -> Result<Option<credentials::UnusedKeysReport>, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::unused_ssh_keys_report(ctx).await
    }

    /// Servers in the inventory.
    async fn servers(
        ctx: &Context,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<servers::ServerConnection, ApiError> {
        ctx.require(Role::Viewer)?;
        servers::servers(ctx, first, after).await
    }

    /// One server by id, with its host key status, key drift and certificate drift.
    async fn server(
        ctx: &Context,
        #[graphql(description = "The server's id.")] id: ID,
    ) -> Result<servers::Server, ApiError> {
        ctx.require(Role::Viewer)?;
        servers::server(ctx, id).await
    }

    /// Server credentials (never their secrets).
    async fn server_credentials(ctx: &Context) -> Result<Vec<credentials::ServerCredential>, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::server_credentials(ctx).await
    }

    /// One server credential by id (never its secret).
    async fn server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<credentials::ServerCredential, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::server_credential(ctx, id).await
    }

    /// SSH certificate authorities (their public keys; private keys stay sealed).
    async fn ssh_certificate_authorities(ctx: &Context) -> Result<Vec<credentials::SshCertificateAuthority>, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::ssh_certificate_authorities(ctx).await
    }

    /// One SSH certificate authority by id, with the certificates it signed.
    async fn ssh_certificate_authority(
        ctx: &Context,
        #[graphql(description = "The certificate authority's id.")] id: ID,
    ) -> Result<credentials::SshCertificateAuthority, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::ssh_certificate_authority(ctx, id).await
    }

    /// Internal X.509 certificate authorities.
    async fn certificate_authorities(ctx: &Context) -> Result<Vec<certificates::CertificateAuthority>, ApiError> {
        ctx.require(Role::Viewer)?;
        certificates::certificate_authorities(ctx).await
    }

    /// One internal X.509 certificate authority by id.
    async fn certificate_authority(
        ctx: &Context,
        #[graphql(description = "The certificate authority's id.")] id: ID,
    ) -> Result<certificates::CertificateAuthority, ApiError> {
        ctx.require(Role::Viewer)?;
        certificates::certificate_authority(ctx, id).await
    }

    /// Certificates Unity keeps (issued, ACME, imported), in creation order.
    async fn certificates(
        ctx: &Context,
        #[graphql(description = "Only certificates that match every field given.")] filter: Option<
            certificates::CertificateFilterInput,
        >,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<certificates::CertificateConnection, ApiError> {
        ctx.require(Role::Viewer)?;
        certificates::certificates(ctx, filter, first, after).await
    }

    /// One certificate by id, with its deployments.
    async fn certificate(
        ctx: &Context,
        #[graphql(description = "The certificate's id.")] id: ID,
    ) -> Result<certificates::Certificate, ApiError> {
        ctx.require(Role::Viewer)?;
        certificates::certificate(ctx, id).await
    }

    /// ACME accounts, by name.
    async fn acme_accounts(ctx: &Context) -> Result<Vec<acme::AcmeAccount>, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::acme_accounts(ctx).await
    }

    /// One ACME account by id.
    async fn acme_account(
        ctx: &Context,
        #[graphql(description = "The ACME account's id.")] id: ID,
    ) -> Result<acme::AcmeAccount, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::acme_account(ctx, id).await
    }

    /// ACME orders, newest first; of one account if given.
    async fn acme_orders(
        ctx: &Context,
        #[graphql(description = "Only orders of this ACME account.")] account_id: Option<ID>,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<acme::AcmeOrderConnection, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::acme_orders(ctx, account_id, first, after).await
    }

    /// One ACME order with each identifier's authorization and, once issued, its certificate.
    async fn acme_order(
        ctx: &Context,
        #[graphql(description = "The ACME order's id.")] id: ID,
    ) -> Result<acme::AcmeOrder, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::acme_order(ctx, id).await
    }

    /// DNS providers for DNS-01 (their secrets are never shown).
    async fn dns_providers(ctx: &Context) -> Result<Vec<acme::DnsProvider>, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::dns_providers(ctx).await
    }

    /// Every check (Nagios-compatible plugins run over SSH), oldest first.
    async fn checks(ctx: &Context) -> Result<Vec<monitoring::Check>, ApiError> {
        monitoring::checks(ctx, ctx.require(Role::Viewer)?).await
    }

    /// The audit log, oldest first. Non-admins do not see identity and secret events.
    async fn audit_log(
        ctx: &Context,
        #[graphql(description = "Only entries that match every field given.")] filter: Option<audit::AuditFilterInput>,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<audit::AuditEntryConnection, ApiError> {
        audit::audit_log(ctx, ctx.require(Role::Viewer)?, filter, first, after).await
    }

    /// Each read model's progress through the log.
    async fn projections(ctx: &Context) -> Result<Vec<audit::ProjectionStatus>, ApiError> {
        ctx.require(Role::Viewer)?;
        audit::projections(ctx).await
    }
}
