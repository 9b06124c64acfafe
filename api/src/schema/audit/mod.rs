//! The log as the schema shows it: the audit log (queried), events (subscribed to), and each
//! read model's progress through the log.

mod query;
mod types;

pub use query::*;
pub use types::*;
use unity_domain::identity::Role;

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
