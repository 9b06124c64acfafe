//! Checks in GraphQL: Nagios-compatible plugins run over SSH on a server or on every server with
//! a tag, their definitions and each server's latest result.

use chrono::{DateTime, Utc};
use juniper::{GraphQLInputObject, GraphQLObject, ID};
use unity_domain::monitoring::{CheckDefinition, CheckTarget, DEFAULT_CHECK_INTERVAL_SECS};
use unity_projections::monitoring::{self as read, CheckRow, ServerCheck};
use uuid::Uuid;

use crate::{
    auth::Principal,
    errors::ApiError,
    schema::{common::*, servers, Context},
};

#[derive(GraphQLInputObject)]
/// A check: `command` runs with `sh -c` as the server's login user, on `serverId` or on every
/// server tagged `tag` (one of the two), every `intervalSeconds` (15 to 86400, default 300; a
/// check runs at the server's next poll once it is due).
pub struct CreateCheckInput {
    pub name: String,
    pub command: String,
    pub server_id: Option<ID>,
    pub tag: Option<String>,
    pub interval_seconds: Option<i32>,
}

#[derive(GraphQLObject)]
pub struct Check {
    pub id: ID,
    pub name: String,
    pub command: String,
    /// The one server it runs on, or
    pub server_id: Option<ID>,
    /// the tag of the servers it runs on.
    pub tag: Option<String>,
    pub interval_seconds: i32,
    pub created_at: DateTime<Utc>,
}

impl From<&CheckRow> for Check {
    fn from(c: &CheckRow) -> Check {
        Check {
            id: id(c.check_id),
            name: c.name.clone(),
            command: c.command.clone(),
            server_id: c.server_id.map(id),
            tag: c.tag.clone(),
            interval_seconds: c.interval_secs,
            created_at: c.created_at,
        }
    }
}

#[derive(GraphQLObject)]
/// One value of a plugin's performance data.
pub struct PerfValue {
    pub label: String,
    pub value: f64,
    /// s, ms, us, %, B, KB, MB, GB, TB, c (a counter), or empty.
    pub uom: String,
    pub warn: Option<String>,
    pub crit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(GraphQLObject)]
/// A check as it stands on one server.
pub struct ServerCheckResult {
    pub check: Check,
    /// OK, WARNING, CRITICAL or UNKNOWN; none before its first run here.
    pub status: Option<String>,
    /// The plugin's exit status (none when it was killed at its timeout).
    pub exit_status: Option<i32>,
    pub output: Option<String>,
    pub perfdata: Vec<PerfValue>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// Since when the status is what it is.
    pub status_since: Option<DateTime<Utc>>,
}

impl From<&ServerCheck> for ServerCheckResult {
    fn from(r: &ServerCheck) -> ServerCheckResult {
        ServerCheckResult {
            check: Check::from(&r.check),
            status: r.status.clone(),
            exit_status: r.exit_status,
            output: r.output.clone(),
            perfdata: r
                .perfdata
                .as_ref()
                .map(read::perfdata)
                .unwrap_or_default()
                .into_iter()
                .map(|p| PerfValue {
                    label: p.label,
                    value: p.value,
                    uom: p.uom,
                    warn: p.warn,
                    crit: p.crit,
                    min: p.min,
                    max: p.max,
                })
                .collect(),
            last_run_at: r.ran_at,
            status_since: r.status_since,
        }
    }
}

pub async fn create_check(ctx: &Context, p: &Principal, input: CreateCheckInput) -> Result<Check, ApiError> {
    let target = match (&input.server_id, &input.tag) {
        (Some(server), None) => {
            let server_id = parse_id("serverId", server)?;
            servers::server_by_id(ctx, server_id).await?;
            CheckTarget::Server(server_id)
        }
        (None, Some(tag)) => CheckTarget::Tag(tag.trim().to_owned()),
        _ => return Err(ApiError::bad_input("name either serverId or tag")),
    };
    let interval_secs = match input.interval_seconds {
        None => DEFAULT_CHECK_INTERVAL_SECS,
        Some(v) => u32::try_from(v).map_err(|_| ApiError::bad_input("intervalSeconds must be positive"))?,
    };
    let check_id = Uuid::now_v7();
    let definition = CheckDefinition { check_id, name: input.name, target, command: input.command, interval_secs };
    let appended = ctx.state.commands.monitoring.create_check(definition, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    let row = read::check(ctx.state.store.pool(), check_id).await?.ok_or_else(|| ApiError::not_found("check"))?;
    Ok(Check::from(&row))
}

pub async fn delete_check(ctx: &Context, p: &Principal, check_id: ID) -> Result<bool, ApiError> {
    let check_id = parse_id("id", &check_id)?;
    let appended = ctx.state.commands.monitoring.delete_check(check_id, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    Ok(true)
}

pub async fn checks(ctx: &Context, _p: &Principal) -> Result<Vec<Check>, ApiError> {
    Ok(read::checks(ctx.state.store.pool()).await?.iter().map(Check::from).collect())
}

/// The checks that apply to a server, each with its latest result there.
pub async fn server_checks(ctx: &Context, server_id: Uuid) -> Result<Vec<ServerCheckResult>, ApiError> {
    let tags = servers::server_by_id(ctx, server_id).await?.0.tags;
    let rows = read::server_checks(ctx.state.store.pool(), server_id, &tags).await?;
    Ok(rows.iter().map(ServerCheckResult::from).collect())
}
