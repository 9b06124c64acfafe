//! The GraphQL schema: the core operations of DESIGN.md §6. Every root field states the role it
//! needs as its first line; objects reachable from a root field hold nothing more sensitive than
//! that field's role may read.

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
    users::{api_key_by_id, user_by_id, user_by_username, users},
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
        EventMetadata::new(Actor::user(principal.user_id, &principal.username), "api")
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
    async fn users(ctx: &Context, first: Option<i32>, after: Option<String>) -> Result<UserConnection, ApiError> {
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

    /// The audit log, oldest first. Non-admins do not see identity and secret events.
    async fn audit_log(
        ctx: &Context,
        filter: Option<AuditFilterInput>,
        first: Option<i32>,
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
    async fn login(ctx: &Context, username: String, password: String) -> Result<Session, ApiError> {
        let state = &ctx.state;
        let denied = || ApiError::new(Code::Unauthenticated, "wrong username or password");
        let Ok(name) = Username::parse(&username) else {
            state.identity.burn_password_check(&password).await;
            state.metrics.login_failures.inc();
            return Err(denied());
        };
        let anonymous =
            EventMetadata::new(Actor { kind: "anonymous".into(), id: None, name: name.as_str().into() }, "api");
        let attempt =
            |user_id, outcome| RecordLogin { username: name.clone(), user_id, source: ctx.source.to_string(), outcome };
        if let Err(throttled) = state.throttle.check(name.as_str(), &ctx.source) {
            state.metrics.login_failures.inc();
            if throttled.first_refusal {
                state.identity.record_login(attempt(None, Err(LoginFailure::RateLimited)), &anonymous).await?;
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
                state.identity.burn_password_check(&password).await;
                Err(LoginFailure::UnknownUser)
            }
            Some(u) => match state.identity.verify_password(&u.password_hash, &password).await {
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
            state.identity.record_login(attempt(user_id, outcome), &anonymous).await?;
            return Err(denied());
        };
        state.throttle.record_success(name.as_str());
        let metadata = EventMetadata::new(Actor::user(user.id, &user.username), "api");
        state.identity.record_login(attempt(Some(user.id), Ok(())), &metadata).await?;
        let session = state
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
        let appended = ctx.state.identity.end_session(session_id, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    async fn create_user(ctx: &Context, input: CreateUserInput) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let (user_id, appended) = ctx
            .state
            .identity
            .create_user(&input.username, &input.password, input.role.into(), &ctx.metadata(p))
            .await?;
        ctx.settle(Some(&appended)).await?;
        ctx.user(user_id).await
    }

    async fn change_user_role(ctx: &Context, input: ChangeUserRoleInput) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let user_id = parse_id("userId", &input.user_id)?;
        let appended = ctx.state.identity.change_role(user_id, input.role.into(), &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.user(user_id).await
    }

    /// Disables a user: they can no longer sign in, and their sessions and API keys stop working.
    async fn disable_user(ctx: &Context, user_id: ID) -> Result<User, ApiError> {
        let p = ctx.require(Role::Admin)?;
        let user_id = parse_id("userId", &user_id)?;
        if user_id == p.user_id {
            return Err(ApiError::bad_input("you cannot disable yourself"));
        }
        let appended = ctx.state.identity.disable_user(user_id, None, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        ctx.user(user_id).await
    }

    /// Changes the signed-in user's password. Every session of the user ends, this one included.
    async fn change_password(ctx: &Context, input: ChangePasswordInput) -> Result<bool, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let state = &ctx.state;
        let user = user_by_id(state.store.pool(), p.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
        if !state.identity.verify_password(&user.password_hash, &input.current_password).await? {
            return Err(ApiError::bad_input("the current password is wrong"));
        }
        let appended = state.identity.change_password(p.user_id, &input.new_password, &ctx.metadata(p)).await?;
        ctx.settle(appended.as_ref()).await?;
        Ok(true)
    }

    /// Creates an API key for the signed-in user, with at most the caller's role. The secret is
    /// in this response only.
    async fn create_api_key(ctx: &Context, input: CreateApiKeyInput) -> Result<ApiKeyWithSecret, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::bad_input("an API key needs a name of 1 to 100 characters"));
        }
        let issued = ctx
            .state
            .identity
            .issue_api_key(p.user_id, p.role, name, input.role.into(), input.expires_at, &ctx.metadata(p))
            .await?;
        ctx.settle(issued.appended.as_ref()).await?;
        let key = api_key_by_id(ctx.state.store.pool(), issued.key_id)
            .await?
            .ok_or_else(|| ApiError::not_found("API key"))?;
        Ok(ApiKeyWithSecret { api_key: key.try_into()?, secret: issued.token })
    }

    /// Revokes an API key: one's own, or anyone's for an admin.
    async fn revoke_api_key(ctx: &Context, id: ID) -> Result<ApiKey, ApiError> {
        let p = ctx.require(Role::Viewer)?;
        let key_id = parse_id("id", &id)?;
        let pool = ctx.state.store.pool();
        let key = api_key_by_id(pool, key_id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
        if key.owner_id != p.user_id && p.role < Role::Admin {
            return Err(ApiError::forbidden("ADMIN"));
        }
        let appended = ctx.state.identity.revoke_api_key(key_id, &ctx.metadata(p)).await?;
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
    async fn events(ctx: &Context, filter: Option<EventFilter>) -> Result<EventStream, ApiError> {
        let role = ctx.require(Role::Viewer)?.role;
        let filter = filter.unwrap_or_default();
        let gauge = ctx.state.metrics.subscriptions.clone();
        gauge.inc();
        let open = SubscriptionGuard(gauge);
        let stream = ctx.state.tail.follow().filter_map(move |e| {
            let _open = &open;
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
