//! The identity part of the schema: users, sign-in and sessions, API keys.

use unity_commands::identity::IdentityCommandError;
use uuid::Uuid;

use crate::{errors::ApiError, schema::Context};

mod mutation;
mod query;
mod types;

pub use mutation::*;
pub use query::*;
pub use types::*;

/// A user by id, as the schema shows them.
pub async fn user(ctx: &Context, id: Uuid) -> Result<User, ApiError> {
    unity_projections::identity::user_by_id(ctx.state.store.pool(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?
        .try_into()
}
impl From<IdentityCommandError> for ApiError {
    fn from(e: IdentityCommandError) -> ApiError {
        match e {
            IdentityCommandError::Rejected(e) => ApiError::refused(&e),
            IdentityCommandError::Command(e) => e.into(),
            IdentityCommandError::Vault(e) => e.into(),
        }
    }
}
