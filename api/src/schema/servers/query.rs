//! The inventory.

use juniper::ID;

use crate::{
    errors::ApiError,
    schema::{common::*, servers, Context},
};

pub async fn servers(
    ctx: &Context,
    first: Option<i32>,
    after: Option<String>,
) -> Result<servers::ServerConnection, ApiError> {
    servers::server_connection(ctx, first, after).await
}

pub async fn server(ctx: &Context, id: ID) -> Result<servers::Server, ApiError> {
    servers::server_by_id(ctx, parse_id("id", &id)?).await
}
