//! The audit log and the read models' progress.

use unity_domain::identity::Role;
use unity_projections::audit::{self as read, AuditFilter};

use super::types::*;
use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{common::*, Context},
};

pub async fn audit_log(
    ctx: &Context,
    p: &Principal,
    filter: Option<AuditFilterInput>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<AuditEntryConnection, ApiError> {
    let limit = page_size(first)?;
    let after = match after {
        Some(c) => Some(
            decode_cursor("audit", &c)?.parse::<i64>().map_err(|_| ApiError::bad_input("malformed audit cursor"))?,
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
            super::ADMIN_ONLY_STREAMS.iter().map(|s| s.to_string()).collect()
        },
    };
    let mut rows = read::audit_log(ctx.state.store.pool(), &filter, after, limit + 1).await?;
    let has_next_page = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let edges: Vec<AuditEntryEdge> = rows
        .into_iter()
        .map(|e| AuditEntryEdge { cursor: encode_cursor("audit", &e.seq.to_string()), node: e.into() })
        .collect();
    let end_cursor = edges.last().map(|e| e.cursor.clone());
    Ok(AuditEntryConnection { edges, page_info: PageInfo { has_next_page, end_cursor } })
}

pub async fn projections(ctx: &Context) -> Result<Vec<ProjectionStatus>, ApiError> {
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
