//! The log as the schema shows it: the audit log (queried), events (subscribed to), and each
//! read model's progress through the log.

mod query;
mod types;

use futures::StreamExt;
pub use query::*;
pub use types::*;
use unity_domain::identity::Role;

use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{
        subscription::{live, Live},
        Context,
    },
};

/// Every event from now on that matches `filter` and that the caller may read when it comes.
pub fn events(ctx: &Context, principal: &Principal, filter: Option<EventFilter>) -> Result<Live<Event>, ApiError> {
    let filter = filter.unwrap_or_default();
    let stream = live(ctx, principal.role).filter_map(move |(e, role)| {
        let visible = reader_role(&e.stream_type) <= role && filter.matches(&e);
        futures::future::ready(visible.then(|| Ok(Event::from(&e))))
    });
    Ok(Box::pin(stream))
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

pub const ADMIN_ONLY_STREAMS: &[&str] = &["user", "username", "api_key", "session", "login", "secret"];
