//! The GraphQL schema: the core operations of DESIGN.md §6.
//!
//! The three roots (`query.rs`, `mutation.rs`, `subscription.rs`) are the access table: each
//! field states the role it needs, then makes one call into its domain's folder, which holds the
//! domain's types (objects and inputs), its query and mutation functions, and its error codes.
//! Objects reachable from a root field hold nothing more sensitive than that field's role may read.

pub mod acme;
pub mod audit;
pub mod certificates;
pub mod common;
pub mod credentials;
pub mod identity;
pub mod monitoring;
mod mutation;
mod query;
pub mod servers;
mod subscription;

use std::sync::Arc;

use juniper::RootNode;
use unity_domain::{identity::Role, Actor, EventMetadata};

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::{auth::Principal, errors::ApiError, ApiState};

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
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
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

    /// Who did it, for the events a request records.
    pub fn metadata(&self, principal: &Principal) -> EventMetadata {
        unity_commands::metadata(Actor::user(principal.user_id, &principal.username), "api")
    }
}
