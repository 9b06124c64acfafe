//! Who is signed in, and the users.

use juniper::ID;
use unity_projections::identity as read;

use super::types::*;
use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{common::*, Context},
};

pub fn me(p: &Principal) -> Result<User, ApiError> {
    Ok(User {
        id: ID::new(p.user_id.to_string()),
        username: p.username.clone(),
        role: p.user_role.into(),
        disabled: false,
        created_at: p.created_at,
        last_login_at: p.last_login_at,
    })
}

pub async fn users(ctx: &Context, first: Option<i32>, after: Option<String>) -> Result<UserConnection, ApiError> {
    let limit = page_size(first)?;
    let after = after.map(|c| decode_cursor("user", &c)).transpose()?;
    let mut rows = read::users(ctx.state.store.pool(), after.as_deref(), limit + 1).await?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let edges = rows
        .into_iter()
        .map(|u| Ok(UserEdge { cursor: encode_cursor("user", &u.username), node: u.try_into()? }))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let end_cursor = edges.last().map(|e| e.cursor.clone());
    Ok(UserConnection { edges, page_info: PageInfo { has_next_page, end_cursor } })
}
