//! The GraphQL schema: the core operations of DESIGN.md §6. Every root field states the role it
//! needs as its first line; objects reachable from a root field hold nothing more sensitive than
//! that field's role may read.

pub mod acme;
pub mod certificates;
pub mod credentials;
pub mod types;

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use juniper::{graphql_object, graphql_subscription, FieldError, RootNode, ID};
use unity_commands::{identity::IdentityCommandError, store::Appended, vault::VaultError};
use unity_domain::{
    identity::{LoginFailure, RecordLogin, Role, Username},
    Actor, EventMetadata,
};
use unity_projections::{
    audit::{audit_log, AuditFilter},
    identity::{api_key_by_id, user_by_id, user_by_username, users},
};

use crate::{
    auth::{Credential, Principal},
    errors::{ApiError, Code},
    ApiState,
};
use types::*;

pub type Schema = RootNode<Query, Mutation, Subscription>;

/// Builds the schema with its document limits: nesting depth, tokens, and fields after fragment
/// expansion (which is what an alias flood or a fragment bomb inflates).
pub fn schema(limits: &crate::Limits) -> Schema {
    Schema::new(Query, Mutation, Subscription)
        .limit_depth(limits.max_depth)
        .limit_tokens(limits.max_tokens)
        .limit_fields(limits.max_fields)
}

/// Per request (or per WebSocket connection): the application, and who is asking.
#[derive(Clone)]
pub struct Context {
    pub state: Arc<ApiState>,
    pub principal: Option<Principal>,
    /// A token was sent but is not valid: fields that need a principal say so, not just "sign in".
    pub auth_error: Option<ApiError>,
    /// The client's address, for login throttling and the login record.
    pub source: Arc<str>,
    /// On a WebSocket: the connection token's access as it changes while the connection lasts
    /// (running subscriptions narrow with it and end with it).
    pub access: Option<Arc<crate::auth::LiveAccess>>,
}

impl juniper::Context for Context {}

impl Context {
    /// The principal, if it holds at least `role`.
    fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        let principal = match (&self.principal, &self.auth_error) {
            (Some(p), _) => p,
            (None, Some(e)) => return Err(e.clone()),
            (None, None) => return Err(ApiError::unauthenticated()),
        };
        if principal.role < role {
            return Err(ApiError::forbidden(role.as_str()));
        }
        Ok(principal)
    }

    fn metadata(&self, principal: &Principal) -> EventMetadata {
        unity_commands::metadata(Actor::user(principal.user_id, &principal.username), "api")
    }

    /// Read-your-writes: returns once every projection has applied `appended` (bounded).
    async fn settle(&self, appended: Option<&Appended>) -> Result<(), ApiError> {
        let Some(appended) = appended else { return Ok(()) };
        if !self.state.engine.wait_for(appended.last, self.state.config.read_your_writes_timeout).await? {
            tracing::warn!(
                position = appended.last.global_position,
                "Read models did not reach this write in time; a following read may not show it yet."
            );
        }
        Ok(())
    }

    /// Read-your-writes for writes that do not report where they landed (the vault's records):
    /// waits until the projections have applied everything committed so far.
    async fn settle_head(&self) -> Result<(), ApiError> {
        let head = self.state.store.last_committed().await?;
        self.state.engine.wait_for(head, self.state.config.read_your_writes_timeout).await?;
        Ok(())
    }

    /// Reads the read model until `done` holds or `limit` is over, and returns the last read:
    /// woken by this process's projections, polled for projections running elsewhere.
    async fn wait_until<T, F, Fut>(
        &self,
        limit: std::time::Duration,
        mut read: F,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let mut progress = self.state.store.wakeup().subscribe_progress();
        loop {
            let value = read().await?;
            if done(&value) || tokio::time::Instant::now() >= deadline {
                return Ok(value);
            }
            let pause = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(std::time::Duration::from_millis(250));
            let _ = tokio::time::timeout(pause, progress.changed()).await;
        }
    }

    /// Refuses at once, instead of after the whole wait, when no process runs the reactor that
    /// would carry out a request (one starting up gets two seconds to take its lease).
    async fn require_reactor(&self, lease: &str, what: &str) -> Result<(), ApiError> {
        let held =
            || async { Ok::<_, ApiError>(unity_commands::lease::is_held(self.state.store.pool(), lease).await?) };
        if self.wait_until(std::time::Duration::from_secs(2), held, |held| *held).await? {
            return Ok(());
        }
        Err(ApiError::new(
            Code::Unavailable,
            format!("no process runs the collectors role, which carries out {what}: start `unity serve` (or `unity serve --role collectors`)"),
        ))
    }

    async fn certificate(&self, id: uuid::Uuid) -> Result<certificates::Certificate, ApiError> {
        let row = unity_projections::certificates::certificate(self.state.store.pool(), id).await?;
        let row = row.ok_or_else(|| ApiError::not_found("certificate"))?;
        let certificate = certificates::Certificate::from_row(row, chrono::Utc::now(), self.state.config.expiring_days);
        certificates::with_deployments(self.state.store.pool(), certificate).await
    }

    async fn user(&self, id: uuid::Uuid) -> Result<User, ApiError> {
        user_by_id(self.state.store.pool(), id).await?.ok_or_else(|| ApiError::not_found("user"))?.try_into()
    }
}

/// Which role may read events of a stream type: identity and secret streams are for admins,
/// everything else for any signed-in user.
pub fn reader_role(stream_type: &str) -> Role {
    if ADMIN_ONLY_STREAMS.contains(&stream_type) {
        Role::Admin
    } else {
        Role::Viewer
    }
}

const ADMIN_ONLY_STREAMS: &[&str] = &["user", "username", "api_key", "session", "login", "secret"];

pub struct Query;

#[graphql_object(context = Context)]
impl Query {
    /// The signed-in user.
    fn me(ctx: &Context) -> Result<User, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        Ok(User {
            id: ID::new(p.user_id.to_string()),
            username: p.username.clone(),
            role: p.user_role.into(),
            disabled: false,
            created_at: p.created_at,
            last_login_at: p.last_login_at,
        })
    }

    /// Every user, by username.
    async fn users(
        ctx: &Context,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<UserConnection, ApiError> {
        ctx.require(Role::Admin)?;
        let limit = page_size(first)?;
        let after = after.map(|c| decode_cursor("user", &c)).transpose()?;
        let mut rows = users(ctx.state.store.pool(), after.as_deref(), limit + 1).await?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let edges = rows
            .into_iter()
            .map(|u| Ok(UserEdge { cursor: encode_cursor("user", &u.username), node: u.try_into()? }))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(UserConnection { edges, page_info: PageInfo { has_next_page, end_cursor } })
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
        credentials::ssh_key_connection(ctx, first, after, include_deleted.unwrap_or(false)).await
    }

    /// One SSH key by id (deleted ones too).
    async fn ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::SshKey, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::key(ctx, parse_id("id", &id)?).await
    }

    /// Every server where the key was installed at some time in `[from, to]`, with install and
    /// removal times, from the log of distributions.
    async fn key_exposure(
        ctx: &Context,
        #[graphql(description = "The key, and the window `[from, to]` to look in.")]
        input: credentials::KeyExposureInput,
    ) -> Result<Vec<credentials::KeyInstallation>, ApiError> {
        ctx.require(Role::Viewer)?;
        if input.to < input.from {
            return Err(ApiError::bad_input("`to` must not be before `from`"));
        }
        let key_id = parse_id("keyId", &input.key_id)?;
        let rows =
            unity_projections::credentials::key_exposure(ctx.state.store.pool(), key_id, input.from, input.to).await?;
        Ok(rows.into_iter().map(credentials::KeyInstallation::from).collect())
    }

    /// Keys neither used by Unity's sessions nor created in the last `unusedDays` days (default 90).
    async fn unused_ssh_keys(
        ctx: &Context,
        #[graphql(description = "Keys unused (and not created) for at least this many days (default 90).")] unused_days: Option<i32>,
    ) -> Result<Vec<credentials::SshKey>, ApiError> {
        ctx.require(Role::Viewer)?;
        let days = unused_days.unwrap_or(90);
        if !(0..=3650).contains(&days) {
            return Err(ApiError::bad_input("unusedDays must be between 0 and 3650"));
        }
        let rows = unity_projections::credentials::unused_ssh_keys(ctx.state.store.pool(), days).await?;
        Ok(rows.into_iter().map(credentials::SshKey).collect())
    }

    /// The latest scheduled unused-keys report.
    async fn unused_ssh_keys_report(ctx: &Context) -> Result<Option<credentials::UnusedKeysReport>, ApiError> {
        ctx.require(Role::Viewer)?;
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

    /// Servers in the inventory.
    async fn servers(
        ctx: &Context,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<credentials::ServerConnection, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::server_connection(ctx, first, after).await
    }

    /// One server by id, with its host key status, key drift and certificate drift.
    async fn server(
        ctx: &Context,
        #[graphql(description = "The server's id.")] id: ID,
    ) -> Result<credentials::Server, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::server(ctx, parse_id("id", &id)?).await
    }

    /// Server credentials (never their secrets).
    async fn server_credentials(ctx: &Context) -> Result<Vec<credentials::ServerCredential>, ApiError> {
        ctx.require(Role::Viewer)?;
        let rows = unity_projections::credentials::server_credentials(ctx.state.store.pool()).await?;
        Ok(rows.into_iter().map(credentials::ServerCredential::from).collect())
    }

    /// One server credential by id (never its secret).
    async fn server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<credentials::ServerCredential, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::credential(ctx, parse_id("id", &id)?).await
    }

    /// SSH certificate authorities (their public keys; private keys stay sealed).
    async fn ssh_certificate_authorities(ctx: &Context) -> Result<Vec<credentials::SshCertificateAuthority>, ApiError> {
        ctx.require(Role::Viewer)?;
        let rows = unity_projections::credentials::ssh_cas(ctx.state.store.pool()).await?;
        Ok(rows.into_iter().map(credentials::SshCertificateAuthority).collect())
    }

    /// One SSH certificate authority by id, with the certificates it signed.
    async fn ssh_certificate_authority(
        ctx: &Context,
        #[graphql(description = "The certificate authority's id.")] id: ID,
    ) -> Result<credentials::SshCertificateAuthority, ApiError> {
        ctx.require(Role::Viewer)?;
        credentials::ca(ctx, parse_id("id", &id)?).await
    }

    /// Internal X.509 certificate authorities.
    async fn certificate_authorities(ctx: &Context) -> Result<Vec<certificates::CertificateAuthority>, ApiError> {
        ctx.require(Role::Viewer)?;
        let rows = unity_projections::certificates::x509_cas(ctx.state.store.pool()).await?;
        Ok(rows.into_iter().map(certificates::CertificateAuthority::from).collect())
    }

    /// One internal X.509 certificate authority by id.
    async fn certificate_authority(
        ctx: &Context,
        #[graphql(description = "The certificate authority's id.")] id: ID,
    ) -> Result<certificates::CertificateAuthority, ApiError> {
        ctx.require(Role::Viewer)?;
        let row = unity_projections::certificates::x509_ca(ctx.state.store.pool(), parse_id("id", &id)?).await?;
        row.map(certificates::CertificateAuthority::from).ok_or_else(|| ApiError::not_found("certificate authority"))
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
        let limit = page_size(first)?;
        let after = after.map(|c| decode_cursor("certificate", &c)).transpose()?;
        let after =
            after.map(|a| a.parse::<uuid::Uuid>().map_err(|_| ApiError::bad_input("bad cursor"))).transpose()?;
        let f = filter.unwrap_or_default();
        if f.expiring_within_days.is_some_and(|d| !(0..=36_500).contains(&d)) {
            return Err(ApiError::bad_input("expiringWithinDays must be between 0 and 36500"));
        }
        let filter = unity_projections::certificates::CertificateFilter {
            expiring_within_days: f.expiring_within_days,
            ca_id: f.ca_id.as_ref().map(|i| parse_id("caId", i)).transpose()?,
            source: f.source.map(|s| certificates::source_text(s).to_owned()),
            status: f.status.map(|s| certificates::status_text(s).to_owned()),
        };
        let now = chrono::Utc::now();
        let expiring = ctx.state.config.expiring_days;
        let rows = unity_projections::certificates::certificates(
            ctx.state.store.pool(),
            &filter,
            now,
            expiring as i32,
            after,
            limit + 1,
        )
        .await?;
        let (page, page_info) = paginate(rows, limit, |r| encode_cursor("certificate", &r.certificate_id.to_string()));
        let mut edges: Vec<certificates::CertificateEdge> = Vec::with_capacity(page.len());
        for (cursor, r) in page {
            let node = certificates::Certificate::from_row(r, now, expiring);
            let node = certificates::with_deployments(ctx.state.store.pool(), node).await?;
            edges.push(certificates::CertificateEdge { cursor, node });
        }
        Ok(certificates::CertificateConnection { edges, page_info })
    }

    /// One certificate by id, with its deployments.
    async fn certificate(
        ctx: &Context,
        #[graphql(description = "The certificate's id.")] id: ID,
    ) -> Result<certificates::Certificate, ApiError> {
        ctx.require(Role::Viewer)?;
        ctx.certificate(parse_id("id", &id)?).await
    }

    /// ACME accounts, by name.
    async fn acme_accounts(ctx: &Context) -> Result<Vec<acme::AcmeAccount>, ApiError> {
        ctx.require(Role::Viewer)?;
        let rows = unity_projections::acme::accounts(ctx.state.store.pool()).await?;
        Ok(rows.into_iter().map(acme::AcmeAccount::from).collect())
    }

    /// One ACME account by id.
    async fn acme_account(
        ctx: &Context,
        #[graphql(description = "The ACME account's id.")] id: ID,
    ) -> Result<acme::AcmeAccount, ApiError> {
        ctx.require(Role::Viewer)?;
        acme::account(ctx, parse_id("id", &id)?).await
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
        // An order's outcome and its certificate live in two read models: answer once both
        // have passed everything committed before this query, so a renewed certificate is never
        // seen beside its order still PENDING.
        ctx.settle_head().await?;
        let limit = page_size(first)?;
        let account_id = account_id.as_ref().map(|i| parse_id("accountId", i)).transpose()?;
        let after = after.map(|c| decode_cursor("acme_order", &c)).transpose()?;
        let after =
            after.map(|a| a.parse::<uuid::Uuid>().map_err(|_| ApiError::bad_input("bad cursor"))).transpose()?;
        let rows = unity_projections::acme::orders(ctx.state.store.pool(), account_id, after, limit + 1).await?;
        let (page, page_info) = paginate(rows, limit, |r| encode_cursor("acme_order", &r.order_id.to_string()));
        let mut edges = Vec::with_capacity(page.len());
        for (cursor, row) in page {
            edges.push(acme::AcmeOrderEdge { cursor, node: acme::order_of(ctx, row).await? });
        }
        Ok(acme::AcmeOrderConnection { edges, page_info })
    }

    /// One ACME order with each identifier's authorization and, once issued, its certificate.
    async fn acme_order(
        ctx: &Context,
        #[graphql(description = "The ACME order's id.")] id: ID,
    ) -> Result<acme::AcmeOrder, ApiError> {
        ctx.require(Role::Viewer)?;
        ctx.settle_head().await?; // as acmeOrders
        acme::order(ctx, parse_id("id", &id)?).await
    }

    /// DNS providers for DNS-01 (their secrets are never shown).
    async fn dns_providers(ctx: &Context) -> Result<Vec<acme::DnsProvider>, ApiError> {
        ctx.require(Role::Viewer)?;
        let rows = unity_projections::acme::dns_providers(ctx.state.store.pool()).await?;
        Ok(rows.into_iter().map(acme::DnsProvider::from).collect())
    }

    /// The audit log, oldest first. Non-admins do not see identity and secret events.
    async fn audit_log(
        ctx: &Context,
        #[graphql(description = "Only entries that match every field given.")] filter: Option<AuditFilterInput>,
        #[graphql(description = "How many to return: 1 to 100 (default 50).")] first: Option<i32>,
        #[graphql(description = "Start after this cursor (a page's `pageInfo.endCursor`); the first page without it.")]
        after: Option<String>,
    ) -> Result<AuditEntryConnection, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let limit = page_size(first)?;
        let after = match after {
            Some(c) => Some(
                decode_cursor("audit", &c)?
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_input("malformed audit cursor"))?,
            ),
            None => None,
        };
        let f = filter.unwrap_or_default();
        let filter = AuditFilter {
            stream_id: f.stream_id,
            stream_type: f.stream_type,
            event_types: f.event_types.unwrap_or_default(),
            actor_id: f.actor_id.map(|id| id.to_string()),
            from: f.from,
            to: f.to,
            hidden_stream_types: if p.role >= Role::Admin {
                vec![]
            } else {
                ADMIN_ONLY_STREAMS.iter().map(|s| s.to_string()).collect()
            },
        };
        let mut rows = audit_log(ctx.state.store.pool(), &filter, after, limit + 1).await?;
        let has_next_page = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let edges: Vec<AuditEntryEdge> = rows
            .into_iter()
            .map(|e| AuditEntryEdge { cursor: encode_cursor("audit", &e.seq.to_string()), node: e.into() })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(AuditEntryConnection { edges, page_info: PageInfo { has_next_page, end_cursor } })
    }

    /// Each read model's progress through the log.
    async fn projections(ctx: &Context) -> Result<Vec<ProjectionStatus>, ApiError> {
        ctx.require(Role::Viewer)?;
        Ok(ctx
            .state
            .engine
            .status()
            .await?
            .into_iter()
            .map(|s| ProjectionStatus {
                name: s.name,
                position: BigInt(s.position.global_position),
                lag: BigInt(s.lag),
                state: s.state.to_ascii_uppercase(),
                error: s.error,
            })
            .collect())
    }
}

pub struct Mutation;

#[graphql_object(context = Context)]
impl Mutation {
    /// Signs in with a password. Failed attempts are recorded, and limited per username and per
    /// client address (see the README).
    async fn login(
        ctx: &Context,
        #[graphql(description = "The user's name.")] username: String,
        #[graphql(description = "The user's password.")] password: String,
    ) -> Result<Session, ApiError> {
        let state = &ctx.state;
        let denied = || ApiError::new(Code::Unauthenticated, "wrong username or password");
        let Ok(name) = Username::parse(&username) else {
            state.commands.identity.burn_password_check(&password).await;
            state.metrics.login_failures.inc();
            return Err(denied());
        };
        let anonymous =
            unity_commands::metadata(Actor { kind: "anonymous".into(), id: None, name: name.as_str().into() }, "api");
        let attempt =
            |user_id, outcome| RecordLogin { username: name.clone(), user_id, source: ctx.source.to_string(), outcome };
        if let Err(throttled) = state.throttle.check(name.as_str(), &ctx.source) {
            state.metrics.login_failures.inc();
            if throttled.first_refusal {
                state.commands.identity.record_login(attempt(None, Err(LoginFailure::RateLimited)), &anonymous).await?;
            }
            let seconds = throttled.retry_after.as_secs().max(1);
            return Err(ApiError {
                code: Code::Unauthenticated,
                message: format!("too many failed logins; try again in {seconds} s"),
                retry_after: Some(seconds),
            });
        }
        let user = user_by_username(state.store.pool(), name.as_str()).await?;
        let outcome = match &user {
            None => {
                state.commands.identity.burn_password_check(&password).await;
                Err(LoginFailure::UnknownUser)
            }
            Some(u) => match state.commands.identity.verify_password(&u.password_hash, &password).await {
                // A password changed a moment ago has its old hash shredded: simply not a match.
                Ok(false) | Err(IdentityCommandError::Vault(VaultError::Shredded(_))) => {
                    Err(LoginFailure::WrongPassword)
                }
                Ok(true) if u.disabled => Err(LoginFailure::UserDisabled),
                Ok(true) => Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        let user_id = user.as_ref().map(|u| u.id);
        let Some(user) = user.filter(|_| outcome.is_ok()) else {
            state.throttle.record_failure(name.as_str(), &ctx.source);
            state.metrics.login_failures.inc();
            state.commands.identity.record_login(attempt(user_id, outcome), &anonymous).await?;
            return Err(denied());
        };
        state.throttle.record_success(name.as_str());
        let metadata = unity_commands::metadata(Actor::user(user.id, &user.username), "api");
        state.commands.identity.record_login(attempt(Some(user.id), Ok(())), &metadata).await?;
        let session = state
            .commands
            .identity
            .start_session(user.id, user.password_hash.secret_id, state.config.session_lifetime, &ctx.source, &metadata)
            .await?;
        ctx.settle(session.appended.as_ref()).await?;
        Ok(Session { token: session.token, expires_at: session.expires_at, user: ctx.user(user.id).await? })
    }

    /// Ends the session whose token this request carries.
    async fn logout(ctx: &Context) -> Result<bool, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let Credential::Session(session_id) = p.credential else {
            return Err(ApiError::bad_input("logout ends a session; an API key is revoked with revokeApiKey"));
        };
        let appended = ctx.state.commands.identity.end_session(session_id, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    /// Creates a user with a password and a role (ADMIN).
    async fn create_user(
        ctx: &Context,
        #[graphql(description = "The new user's username, password and role.")] input: CreateUserInput,
    ) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let (user_id, appended) = ctx
            .state
            .commands
            .identity
            .create_user(&input.username, &input.password, input.role.into(), &ctx.metadata(p))
            .await?;
        ctx.settle(Some(&appended)).await?;
        ctx.user(user_id).await
    }

    /// Gives a user another role; their sessions and API keys follow at once, open WebSockets included (ADMIN).
    async fn change_user_role(
        ctx: &Context,
        #[graphql(description = "The user and their new role.")] input: ChangeUserRoleInput,
    ) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let user_id = parse_id("userId", &input.user_id)?;
        let appended = ctx.state.commands.identity.change_role(user_id, input.role.into(), &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.user(user_id).await
    }

    /// Disables a user: they can no longer sign in, and their sessions and API keys stop working.
    async fn disable_user(
        ctx: &Context,
        #[graphql(description = "The user's id.")] user_id: ID,
    ) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let user_id = parse_id("userId", &user_id)?;
        if user_id == p.user_id {
            return Err(ApiError::bad_input("you cannot disable yourself"));
        }
        let appended = ctx.state.commands.identity.disable_user(user_id, None, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.user(user_id).await
    }

    /// Changes the signed-in user's password. Every session of the user ends, this one included.
    async fn change_password(
        ctx: &Context,
        #[graphql(description = "The current password and the new one.")] input: ChangePasswordInput,
    ) -> Result<bool, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let state = &ctx.state;
        let user = user_by_id(state.store.pool(), p.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
        if !state.commands.identity.verify_password(&user.password_hash, &input.current_password).await? {
            return Err(ApiError::bad_input("the current password is wrong"));
        }
        let appended =
            state.commands.identity.change_password(p.user_id, &input.new_password, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    /// Creates an API key for the signed-in user, with at most the caller's role. The secret is
    /// in this response only.
    async fn create_api_key(
        ctx: &Context,
        #[graphql(description = "The key's name, role (never above the owner's) and optional expiry.")]
        input: CreateApiKeyInput,
    ) -> Result<ApiKeyWithSecret, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::bad_input("an API key needs a name of 1 to 100 characters"));
        }
        let issued = ctx
            .state
            .commands
            .identity
            .issue_api_key(p.user_id, p.role, name, input.role.into(), input.expires_at, &ctx.metadata(p))
            .await?;
        ctx.settle(issued.appended.as_ref()).await?;
        let key = api_key_by_id(ctx.state.store.pool(), issued.key_id)
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
        Ok(ApiKeyWithSecret { api_key: key.try_into()?, secret: issued.token })
    }

    /// Generates an SSH key pair; the private half is sealed in the vault before anything is recorded.
    async fn generate_ssh_key(
        ctx: &Context,
        #[graphql(description = "The key's name, algorithm, comment and tags.")]
        input: credentials::GenerateSshKeyInput,
    ) -> Result<credentials::SshKey, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let bits = input
            .bits
            .map(|b| u32::try_from(b).map_err(|_| ApiError::bad_input("bits must be positive")))
            .transpose()?;
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
        ctx.settle(created.appended.as_ref()).await?;
        credentials::key(ctx, created.id).await
    }

    /// Imports an SSH key (OpenSSH or PEM, encrypted or not), or a public key alone.
    async fn import_ssh_key(
        ctx: &Context,
        #[graphql(
            description = "The key (private in OpenSSH or PEM form, or public alone), its passphrase and its name."
        )]
        input: credentials::ImportSshKeyInput,
    ) -> Result<credentials::SshKey, ApiError> {
        let p = ctx.require(Role::Operator)?;
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
        ctx.settle(created.appended.as_ref()).await?;
        credentials::key(ctx, created.id).await
    }

    /// The private key in OpenSSH form. Every reveal is recorded with who asked.
    async fn reveal_ssh_private_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<String, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let key = ctx.state.commands.credentials.reveal_private_key(parse_id("id", &id)?, &ctx.metadata(p)).await?;
        ctx.settle_head().await?;
        Ok(key)
    }

    /// Replaces the key on every server where it is installed: the new key goes in, then the old
    /// one comes out, server by server. A server that cannot be reached keeps the old key (and
    /// says so in `operations`); a server that logs in with the old key switches to the new one.
    async fn rotate_ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::KeyRotation, ApiError> {
        let p = ctx.require(Role::Operator)?;
        ctx.require_reactor(unity_commands::lease::SSH_REACTOR, "key rotation on servers").await?;
        let old_id = parse_id("id", &id)?;
        let pool = ctx.state.store.pool();
        let installed = unity_projections::credentials::installations_of(pool, old_id).await?;
        let started = chrono::Utc::now();
        let created = ctx.state.commands.credentials.start_rotation(old_id, &ctx.metadata(p)).await?;
        ctx.settle(created.appended.as_ref()).await?;
        let (_, entry) = credentials::key_entry(ctx, created.id).await?;
        let mut targets = Vec::new();
        for installation in installed.iter().filter(|i| i.entry_kind == "ssh_key") {
            let file: unity_domain::servers::ManagedFile = serde_json::from_value(installation.file.clone())
                .map_err(|e| ApiError::internal("installation file", &e))?;
            targets.push((
                installation.server_id,
                unity_domain::servers::ServerRequest::Install { file, entry: entry.clone(), replaces: Some(old_id) },
            ));
        }
        let mut operations = credentials::request_all(ctx, targets).await?;
        // Each successful install opened the old key's removal on that server: wait for those too.
        let mut removals = Vec::new();
        for op in operations.iter().filter(|o| o.0.state == "SUCCEEDED") {
            if let Some(removal) =
                unity_projections::credentials::removal_of(pool, op.0.server_id, old_id, started).await?
            {
                removals.push(removal.request_id);
            }
        }
        let removed = credentials::wait_for_requests(ctx, &removals).await?;
        operations.extend(removed.into_iter().map(credentials::ServerOperation));
        Ok(credentials::KeyRotation {
            old_key: credentials::key(ctx, old_id).await?,
            new_key: credentials::key(ctx, created.id).await?,
            operations,
        })
    }

    /// Removes the key from every server where it is installed, then crypto-shreds its private
    /// half. If a removal fails, the key is kept (`deleted: false`) and nothing is shredded.
    async fn delete_ssh_key(
        ctx: &Context,
        #[graphql(description = "The SSH key's id.")] id: ID,
    ) -> Result<credentials::KeyDeletion, ApiError> {
        let p = ctx.require(Role::Operator)?;
        ctx.require_reactor(unity_commands::lease::SSH_REACTOR, "key removal from servers").await?;
        let key_id = parse_id("id", &id)?;
        let pool = ctx.state.store.pool();
        credentials::key(ctx, key_id).await?;
        let users = unity_projections::credentials::servers_authenticating_with(pool, key_id).await?;
        if !users.is_empty() {
            let names: Vec<&str> = users.iter().map(|s| s.name.as_str()).collect();
            return Err(ApiError::new(
                Code::Conflict,
                format!("Unity logs in to {} with this key; give them another key first", names.join(", ")),
            ));
        }
        let installed = unity_projections::credentials::installations_of(pool, key_id).await?;
        let mut targets = Vec::new();
        if !installed.is_empty() {
            let (_, entry) = credentials::key_entry(ctx, key_id).await?;
            for installation in installed {
                let file: unity_domain::servers::ManagedFile = serde_json::from_value(installation.file)
                    .map_err(|e| ApiError::internal("installation file", &e))?;
                targets.push((
                    installation.server_id,
                    unity_domain::servers::ServerRequest::Remove { file, entry: entry.clone() },
                ));
            }
        }
        let operations = credentials::request_all(ctx, targets).await?;
        let deleted = operations.iter().all(|o| o.0.state == "SUCCEEDED");
        if deleted {
            let appended = ctx.state.commands.credentials.delete_ssh_key(key_id, &ctx.metadata(p)).await?;
            ctx.settle(appended.as_ref()).await?;
        }
        Ok(credentials::KeyDeletion { deleted, operations, key: credentials::key(ctx, key_id).await? })
    }

    /// Installs the key in the authorized_keys of `user` (default: each server's login user).
    async fn distribute_ssh_key(
        ctx: &Context,
        #[graphql(description = "The key and the servers to install it on.")] input: credentials::DistributeSshKeyInput,
    ) -> Result<Vec<credentials::ServerOperation>, ApiError> {
        ctx.require(Role::Operator)?;
        let (_, entry) = credentials::key_entry(ctx, parse_id("keyId", &input.key_id)?).await?;
        let servers = credentials::target_servers(ctx, &input.server_ids).await?;
        let targets = servers
            .into_iter()
            .map(|s| {
                let user = input.user.clone().unwrap_or(s.username);
                let file = unity_domain::servers::ManagedFile::AuthorizedKeys { user };
                (
                    s.server_id,
                    unity_domain::servers::ServerRequest::Install { file, entry: entry.clone(), replaces: None },
                )
            })
            .collect();
        credentials::request_all(ctx, targets).await
    }

    /// Removes the key from the given servers (every file Unity put it in; the login user's
    /// authorized_keys if Unity has no record of it there).
    async fn remove_ssh_key_from_servers(
        ctx: &Context,
        #[graphql(description = "The key and the servers to remove it from.")]
        input: credentials::RemoveSshKeyFromServersInput,
    ) -> Result<Vec<credentials::ServerOperation>, ApiError> {
        ctx.require(Role::Operator)?;
        let key_id = parse_id("keyId", &input.key_id)?;
        let (_, entry) = credentials::key_entry(ctx, key_id).await?;
        let servers = credentials::target_servers(ctx, &input.server_ids).await?;
        let installed = unity_projections::credentials::installations_of(ctx.state.store.pool(), key_id).await?;
        let mut targets = Vec::new();
        for server in servers {
            let mut files: Vec<unity_domain::servers::ManagedFile> = installed
                .iter()
                .filter(|i| i.server_id == server.server_id)
                .filter_map(|i| serde_json::from_value(i.file.clone()).ok())
                .collect();
            if files.is_empty() {
                files.push(unity_domain::servers::ManagedFile::AuthorizedKeys { user: server.username.clone() });
            }
            for file in files {
                targets.push((
                    server.server_id,
                    unity_domain::servers::ServerRequest::Remove { file, entry: entry.clone() },
                ));
            }
        }
        credentials::request_all(ctx, targets).await
    }

    /// Adds a server to the inventory: its address, how Unity logs in, and optionally its host key.
    async fn register_server(
        ctx: &Context,
        #[graphql(
            description = "The server's name, address, port, login user and authentication, and optionally its host key."
        )]
        input: credentials::RegisterServerInput,
    ) -> Result<credentials::Server, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let spec = credentials::register_spec(&input)?;
        let created = ctx
            .state
            .commands
            .servers
            .register_server(spec, input.host_key_fingerprint.clone(), &ctx.metadata(p))
            .await?;
        ctx.settle(created.appended.as_ref()).await?;
        credentials::server(ctx, created.id).await
    }

    /// Changes a server's name, address, login, tags or authorized_keys path.
    async fn update_server(
        ctx: &Context,
        #[graphql(description = "The server and the settings to change.")] input: credentials::UpdateServerInput,
    ) -> Result<credentials::Server, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let server_id = parse_id("id", &input.id)?;
        let current = credentials::server(ctx, server_id).await?;
        let spec = credentials::updated_spec(&current.0, &input)?;
        let appended = ctx.state.commands.servers.update_server(server_id, spec, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        credentials::server(ctx, server_id).await
    }

    /// Takes the server out of the inventory (keys Unity installed there stay on the machine).
    async fn remove_server(
        ctx: &Context,
        #[graphql(description = "The server's id.")] id: ID,
    ) -> Result<credentials::Server, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let server_id = parse_id("id", &id)?;
        let appended = ctx
            .state
            .commands
            .servers
            .server_command(server_id, unity_domain::servers::ServerCommand::Remove, &ctx.metadata(p))
            .await?;
        ctx.settle(appended.as_ref()).await?;
        credentials::server(ctx, server_id).await
    }

    /// Trusts a new host key deliberately (after a reinstall, say), ending a MISMATCH.
    async fn accept_server_host_key(
        ctx: &Context,
        #[graphql(description = "The server and the fingerprint of the host key to accept.")]
        input: credentials::AcceptServerHostKeyInput,
    ) -> Result<credentials::Server, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let server_id = parse_id("serverId", &input.server_id)?;
        let command =
            unity_domain::servers::ServerCommand::AcceptHostKey { fingerprint: input.fingerprint.trim().to_owned() };
        let appended = ctx.state.commands.servers.server_command(server_id, command, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        credentials::server(ctx, server_id).await
    }

    /// Connects over SSH and reports the OS, kernel, hostname and one command's round trip.
    async fn test_server_connection(
        ctx: &Context,
        #[graphql(description = "The server's id.")] server_id: ID,
    ) -> Result<credentials::ConnectionTest, ApiError> {
        ctx.require(Role::Operator)?;
        let server_id = parse_id("serverId", &server_id)?;
        credentials::server(ctx, server_id).await?;
        let mut ops =
            credentials::request_all(ctx, vec![(server_id, unity_domain::servers::ServerRequest::TestConnection)])
                .await?;
        let op = ops.pop().ok_or_else(|| ApiError::internal("connection test", &"no request recorded"))?;
        let server = credentials::server(ctx, server_id).await?;
        let succeeded = op.0.state == "SUCCEEDED";
        let error = match op.0.state.as_str() {
            "PENDING" => Some("still running; see the server's lastTestedAt later".to_owned()),
            _ => op.0.error.clone(),
        };
        Ok(credentials::ConnectionTest {
            succeeded,
            error,
            os: succeeded.then(|| server.0.os.clone()).flatten(),
            kernel: succeeded.then(|| server.0.kernel.clone()).flatten(),
            hostname: succeeded.then(|| server.0.hostname.clone()).flatten(),
            rtt_ms: succeeded.then_some(server.0.rtt_ms).flatten(),
            server,
        })
    }

    /// Reads the server's managed blocks back and records any hand edits as drift.
    async fn check_server_keys(
        ctx: &Context,
        #[graphql(description = "The server's id.")] server_id: ID,
    ) -> Result<credentials::ServerOperation, ApiError> {
        ctx.require(Role::Operator)?;
        let server_id = parse_id("serverId", &server_id)?;
        credentials::server(ctx, server_id).await?;
        let mut ops =
            credentials::request_all(ctx, vec![(server_id, unity_domain::servers::ServerRequest::Check)]).await?;
        ops.pop().ok_or_else(|| ApiError::internal("key check", &"no request recorded"))
    }

    /// Stores a password, private key or token for logging in to servers; the secret is sealed in the vault.
    async fn create_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's name, kind and secret.")]
        input: credentials::CreateServerCredentialInput,
    ) -> Result<credentials::ServerCredential, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let created = ctx
            .state
            .commands
            .credentials
            .create_server_credential(&input.name, input.kind.into(), &input.username, &input.secret, &ctx.metadata(p))
            .await?;
        ctx.settle(created.appended.as_ref()).await?;
        credentials::credential(ctx, created.id).await
    }

    /// Replaces a server credential's name or secret (the old secret is shredded).
    async fn update_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential, and its new name or secret.")]
        input: credentials::UpdateServerCredentialInput,
    ) -> Result<credentials::ServerCredential, ApiError> {
        let p = ctx.require(Role::Operator)?;
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
        ctx.settle(appended.as_ref()).await?;
        credentials::credential(ctx, credential_id).await
    }

    /// Deletes the credential and shreds its secret; refused while a server logs in with it.
    async fn delete_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<bool, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let credential_id = parse_id("id", &id)?;
        let users =
            unity_projections::credentials::servers_authenticating_with(ctx.state.store.pool(), credential_id).await?;
        if !users.is_empty() {
            let names: Vec<&str> = users.iter().map(|s| s.name.as_str()).collect();
            return Err(ApiError::new(Code::Conflict, format!("{} log in with this credential", names.join(", "))));
        }
        let appended = ctx.state.commands.credentials.delete_server_credential(credential_id, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    /// The credential's secret. Every reveal is recorded with who asked.
    async fn reveal_server_credential(
        ctx: &Context,
        #[graphql(description = "The credential's id.")] id: ID,
    ) -> Result<String, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let secret =
            ctx.state.commands.credentials.reveal_server_credential(parse_id("id", &id)?, &ctx.metadata(p)).await?;
        ctx.settle_head().await?;
        Ok(secret)
    }

    /// Creates an SSH certificate authority; its private key is sealed in the vault (ADMIN).
    async fn create_ssh_certificate_authority(
        ctx: &Context,
        #[graphql(description = "The authority's name and key algorithm.")]
        input: credentials::CreateSshCertificateAuthorityInput,
    ) -> Result<credentials::SshCertificateAuthority, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let created =
            ctx.state.commands.credentials.create_ssh_ca(&input.name, input.algorithm.into(), &ctx.metadata(p)).await?;
        ctx.settle(created.appended.as_ref()).await?;
        credentials::ca(ctx, created.id).await
    }

    /// Signs an SSH certificate saying exactly what is asked; recorded with its serial.
    async fn sign_ssh_certificate(
        ctx: &Context,
        #[graphql(
            description = "The authority, the public key to certify, and the certificate's type, key id, principals, validity and options."
        )]
        input: credentials::SignSshCertificateInput,
    ) -> Result<credentials::SignedSshCertificate, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let ca_id = parse_id("caId", &input.ca_id)?;
        let request = credentials::certificate_request(&input);
        let signed = ctx
            .state
            .commands
            .credentials
            .sign_ssh_certificate(ca_id, &input.public_key, request, &ctx.metadata(p))
            .await?;
        ctx.settle(Some(&signed.appended)).await?;
        Ok(credentials::SignedSshCertificate {
            ca_id: input.ca_id,
            serial: BigInt(signed.serial as i64),
            certificate: signed.certificate,
        })
    }

    /// Writes the CA's key into a managed TrustedUserCAKeys file on each server (point sshd's
    /// `TrustedUserCAKeys` at it).
    async fn install_ssh_ca_on_servers(
        ctx: &Context,
        #[graphql(description = "The authority, the servers, and the file sshd's TrustedUserCAKeys names.")]
        input: credentials::InstallSshCaOnServersInput,
    ) -> Result<Vec<credentials::ServerOperation>, ApiError> {
        ctx.require(Role::Operator)?;
        let ca = credentials::ca(ctx, parse_id("caId", &input.ca_id)?).await?;
        let entry = unity_domain::servers::ManagedEntry {
            kind: unity_domain::servers::EntryKind::SshCa,
            id: ca.0.ca_id,
            fingerprint: ca.0.fingerprint.clone(),
            public_key: ca.0.public_key.clone(),
        };
        let path = input.path.clone().unwrap_or_else(|| credentials::DEFAULT_CA_PATH.into());
        let servers = credentials::target_servers(ctx, &input.server_ids).await?;
        let targets = servers
            .into_iter()
            .map(|s| {
                let file = unity_domain::servers::ManagedFile::TrustedUserCaKeys { path: path.clone() };
                (
                    s.server_id,
                    unity_domain::servers::ServerRequest::Install { file, entry: entry.clone(), replaces: None },
                )
            })
            .collect();
        credentials::request_all(ctx, targets).await
    }

    /// A root CA, or with `parentId` an intermediate signed by an existing CA.
    async fn create_certificate_authority(
        ctx: &Context,
        #[graphql(
            description = "The authority's names, key algorithm, validity, path length, and its parent for an intermediate."
        )]
        input: certificates::CreateCertificateAuthorityInput,
    ) -> Result<certificates::CertificateAuthority, ApiError> {
        let p = ctx.require(Role::Admin)?;
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
        ctx.settle(created.appended.as_ref()).await?;
        let row = unity_projections::certificates::x509_ca(ctx.state.store.pool(), created.id).await?;
        row.map(certificates::CertificateAuthority::from).ok_or_else(|| ApiError::not_found("certificate authority"))
    }

    /// A certificate and key from an internal CA.
    async fn issue_certificate(
        ctx: &Context,
        #[graphql(description = "The issuing authority, the certificate's names, usage, validity and key algorithm.")]
        input: certificates::IssueCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        let p = ctx.require(Role::Operator)?;
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
        ctx.settle(created.appended.as_ref()).await?;
        ctx.certificate(created.id).await
    }

    /// Keeps a certificate obtained elsewhere (its key too, if given, sealed in the vault).
    async fn import_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate (or chain) and its unencrypted private key, in PEM.")]
        input: certificates::ImportCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        let p = ctx.require(Role::Operator)?;
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
                let existing = ctx.certificate(id).await?;
                return Err(ApiError::new(
                    Code::Conflict,
                    format!("this certificate was imported already, as \"{}\" (id {id})", existing.name),
                ));
            }
            other => other?,
        };
        ctx.settle(created.appended.as_ref()).await?;
        ctx.certificate(created.id).await
    }

    /// Revokes a certificate; an internal CA's CRL lists it from then on.
    async fn revoke_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate and the reason.")] input: certificates::RevokeCertificateInput,
    ) -> Result<certificates::Certificate, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let certificate_id = parse_id("id", &input.id)?;
        let reason = input.reason.unwrap_or(certificates::RevocationReasonValue::Unspecified).into();
        let appended = ctx
            .state
            .commands
            .certificates
            .revoke(certificate_id, reason, chrono::Utc::now(), &ctx.metadata(p))
            .await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.certificate(certificate_id).await
    }

    /// Writes the certificate (and key, chain) to a server over SSH, atomically, then runs the
    /// reload command; redeployed after each renewal.
    async fn deploy_certificate(
        ctx: &Context,
        #[graphql(description = "The certificate, the server, the paths to write, owner, mode and reload command.")]
        input: certificates::DeployCertificateInput,
    ) -> Result<credentials::ServerOperation, ApiError> {
        ctx.require(Role::Operator)?;
        // Writing a private key out, or running a command as the login user, is an admin's call:
        // an operator could otherwise read any key (which only admins may reveal) or run anything.
        if input.key_path.is_some() || input.reload_command.is_some() {
            ctx.require(Role::Admin)?;
        }
        let certificate = ctx.certificate(parse_id("certificateId", &input.certificate_id)?).await?;
        if certificate.status == certificates::CertificateStatus::Revoked {
            return Err(ApiError::new(Code::Conflict, "this certificate is revoked"));
        }
        let server_id = parse_id("serverId", &input.server_id)?;
        credentials::server(ctx, server_id).await?;
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
        let request = unity_domain::servers::ServerRequest::DeployCertificate { deployment };
        let mut ops = credentials::request_all(ctx, vec![(server_id, request)]).await?;
        ops.pop().ok_or_else(|| ApiError::internal("deployment", &"no request recorded"))
    }

    /// When Unity renews this certificate (internal certificates are renewed automatically).
    async fn configure_certificate_renewal(
        ctx: &Context,
        #[graphql(description = "The certificate and how many days before expiry to renew it.")]
        input: certificates::ConfigureCertificateRenewalInput,
    ) -> Result<certificates::Certificate, ApiError> {
        let p = ctx.require(Role::Operator)?;
        let certificate_id = parse_id("id", &input.id)?;
        let days = input
            .renew_before_days
            .map(|d| u32::try_from(d).map_err(|_| ApiError::bad_input("renewBeforeDays must be positive")))
            .transpose()?;
        let appended =
            ctx.state.commands.certificates.configure_renewal(certificate_id, days, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.certificate(certificate_id).await
    }

    /// The certificate's private key in PEM. Every reveal is recorded with who asked.
    /// Registers an account at an ACME directory (a preset or any URL, with EAB and a CA bundle
    /// if needed). Waits for the directory's answer: REGISTERED, or FAILED with its error.
    async fn register_acme_account(
        ctx: &Context,
        #[graphql(
            description = "The directory (a preset or a URL), contact, terms, and EAB credentials where the directory needs them."
        )]
        input: acme::RegisterAcmeAccountInput,
    ) -> Result<acme::AcmeAccount, ApiError> {
        let p = ctx.require(Role::Admin)?;
        ctx.require_reactor(unity_commands::lease::ACME_REACTOR, "ACME registrations and orders").await?;
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
        ctx.settle(created.appended.as_ref()).await?;
        let account = || acme::account(ctx, created.id);
        ctx.wait_until(ctx.state.config.acme_wait, account, |a| a.status != acme::AcmeAccountStatus::Pending).await
    }

    /// Orders a certificate from an ACME account's directory, answering HTTP-01 on this API's
    /// /.well-known/acme-challenge/ or DNS-01 through a DNS provider. Waits for the outcome (up
    /// to UNITY_ACME_WAIT_SECS); a PENDING order goes on and can be followed with acmeOrder.
    async fn request_acme_certificate(
        ctx: &Context,
        #[graphql(description = "The account, the names, the challenge type and DNS provider, and the key algorithm.")]
        input: acme::RequestAcmeCertificateInput,
    ) -> Result<acme::AcmeOrder, ApiError> {
        let p = ctx.require(Role::Operator)?;
        ctx.require_reactor(unity_commands::lease::ACME_REACTOR, "ACME registrations and orders").await?;
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
        ctx.settle(created.appended.as_ref()).await?;
        // Wait on the order's own row, then for every read model: its certificate is another
        // projection's, which may not have caught up with the order's outcome yet.
        let row = || async { Ok(unity_projections::acme::order(ctx.state.store.pool(), created.id).await?) };
        let decided =
            |row: &Option<unity_projections::acme::AcmeOrderRow>| row.as_ref().is_some_and(|r| r.status != "PENDING");
        ctx.wait_until(ctx.state.config.acme_wait, row, decided).await?;
        ctx.settle_head().await?;
        acme::order(ctx, created.id).await
    }

    /// A DNS provider for DNS-01: RFC 2136 dynamic updates (TSIG-signed) or a webhook.
    async fn create_dns_provider(
        ctx: &Context,
        #[graphql(description = "The provider's name and its RFC 2136 server or webhook.")]
        input: acme::CreateDnsProviderInput,
    ) -> Result<acme::DnsProvider, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let new = match (input.rfc2136, input.webhook) {
            (Some(r), None) => {
                let tsig = match (r.tsig_key_name, r.tsig_algorithm, r.tsig_secret) {
                    (None, None, None) => None,
                    (Some(name), algorithm, Some(secret)) => Some((
                        name,
                        acme::tsig_algorithm(algorithm.unwrap_or(acme::TsigAlgorithmValue::HmacSha256)),
                        secret,
                    )),
                    _ => return Err(ApiError::bad_input("a TSIG key needs tsigKeyName and tsigSecret")),
                };
                unity_commands::acme::NewDnsProvider::Rfc2136 { server: r.server, zone: r.zone, tsig }
            }
            (None, Some(w)) => {
                unity_commands::acme::NewDnsProvider::Webhook { url: w.url, bearer_token: w.bearer_token }
            }
            _ => return Err(ApiError::bad_input("give exactly one of rfc2136 and webhook")),
        };
        let created = ctx.state.commands.acme.create_dns_provider(input.name, new, &ctx.metadata(p)).await?;
        ctx.settle(created.appended.as_ref()).await?;
        let row = unity_projections::acme::dns_provider(ctx.state.store.pool(), created.id).await?;
        row.map(acme::DnsProvider::from).ok_or_else(|| ApiError::not_found("DNS provider"))
    }

    /// Deletes a DNS provider and shreds its secret.
    async fn delete_dns_provider(
        ctx: &Context,
        #[graphql(description = "The DNS provider's id.")] id: ID,
    ) -> Result<bool, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let appended = ctx.state.commands.acme.delete_dns_provider(parse_id("id", &id)?, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    /// A certificate's private key in PEM (ADMIN; every reveal is recorded).
    async fn reveal_certificate_private_key(
        ctx: &Context,
        #[graphql(description = "The certificate's id.")] id: ID,
    ) -> Result<String, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let key = ctx.state.commands.certificates.reveal_private_key(parse_id("id", &id)?, &ctx.metadata(p)).await?;
        ctx.settle_head().await?;
        Ok(key)
    }

    /// Revokes an API key: one's own, or anyone's for an admin.
    async fn revoke_api_key(
        ctx: &Context,
        #[graphql(description = "The API key's id.")] id: ID,
    ) -> Result<ApiKey, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let key_id = parse_id("id", &id)?;
        let pool = ctx.state.store.pool();
        let key = api_key_by_id(pool, key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        if key.owner_id != p.user_id && p.role < Role::Admin {
            return Err(ApiError::forbidden("ADMIN"));
        }
        let appended = ctx.state.commands.identity.revoke_api_key(key_id, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        api_key_by_id(pool, key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?.try_into()
    }
}

pub struct Subscription;

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, FieldError>> + Send>>;

#[graphql_subscription(context = Context)]
impl Subscription {
    /// Every event appended from now on that matches `filter` and that the caller may read, in
    /// log order, each once.
    ///
    /// On a WebSocket the stream follows the connection token's access event by event: it ends
    /// at the event that ends that access (logout, revocation, a disabled user, a password
    /// change), and a lowered role narrows what it delivers from the role change on.
    async fn events(
        ctx: &Context,
        #[graphql(description = "Only events of these stream types and event types (each list, when given).")]
        filter: Option<EventFilter>,
    ) -> Result<EventStream, ApiError> {
        let role = ctx.require(Role::Viewer)?.role;
        let filter = filter.unwrap_or_default();
        let gauge = ctx.state.metrics.subscriptions.clone();
        gauge.inc();
        let open = SubscriptionGuard(gauge);
        let access = ctx.access.clone();
        let watched = access.clone();
        let stream = ctx
            .state
            .tail
            .follow()
            .take_while(move |e| {
                let open = watched.as_ref().is_none_or(|a| a.observe(&e.stream_id, &e.event_type, &e.payload));
                futures::future::ready(open)
            })
            .filter_map(move |e| {
                let _open = &open;
                let role = access.as_ref().and_then(|a| a.role()).map_or(role, |now| now.min(role));
                let visible = reader_role(&e.stream_type) <= role && filter.matches(&e);
                futures::future::ready(visible.then(|| Ok(Event::from(&e))))
            });
        Ok(Box::pin(stream))
    }
}

/// Counts an open subscription for /metrics until its stream is dropped.
struct SubscriptionGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
