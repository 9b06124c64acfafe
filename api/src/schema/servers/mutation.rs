//! Registering, changing and removing servers; host keys; connection tests and key checks.

use juniper::ID;
use unity_domain::servers::ServerRequest;

use crate::{
    auth::Principal,
    errors::ApiError,
    orchestration,
    schema::{common::*, servers, Context},
};

pub async fn register_server(
    ctx: &Context,
    p: &Principal,
    input: servers::RegisterServerInput,
) -> Result<servers::Server, ApiError> {
    let spec = servers::register_spec(&input)?;
    let created =
        ctx.state.commands.servers.register_server(spec, input.host_key_fingerprint.clone(), &ctx.metadata(p)).await?;
    ctx.state.settle(created.appended.as_ref()).await?;
    servers::server_by_id(ctx, created.id).await
}

pub async fn update_server(
    ctx: &Context,
    p: &Principal,
    input: servers::UpdateServerInput,
) -> Result<servers::Server, ApiError> {
    let server_id = parse_id("id", &input.id)?;
    let current = servers::server_by_id(ctx, server_id).await?;
    let spec = servers::updated_spec(&current.0, &input)?;
    let appended = ctx.state.commands.servers.update_server(server_id, spec, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    servers::server_by_id(ctx, server_id).await
}

pub async fn remove_server(ctx: &Context, p: &Principal, id: ID) -> Result<servers::Server, ApiError> {
    let server_id = parse_id("id", &id)?;
    let appended = ctx
        .state
        .commands
        .servers
        .server_command(server_id, unity_domain::servers::ServerCommand::Remove, &ctx.metadata(p))
        .await?;
    ctx.state.settle(appended.as_ref()).await?;
    servers::server_by_id(ctx, server_id).await
}

pub async fn accept_server_host_key(
    ctx: &Context,
    p: &Principal,
    input: servers::AcceptServerHostKeyInput,
) -> Result<servers::Server, ApiError> {
    let server_id = parse_id("serverId", &input.server_id)?;
    let command =
        unity_domain::servers::ServerCommand::AcceptHostKey { fingerprint: input.fingerprint.trim().to_owned() };
    let appended = ctx.state.commands.servers.server_command(server_id, command, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    servers::server_by_id(ctx, server_id).await
}

pub async fn test_server_connection(
    ctx: &Context,
    p: &Principal,
    server_id: ID,
) -> Result<servers::ConnectionTest, ApiError> {
    let server_id = parse_id("serverId", &server_id)?;
    servers::server_by_id(ctx, server_id).await?;
    let request = ServerRequest::TestConnection;
    let op = orchestration::one(&ctx.state, &ctx.metadata(p), server_id, request, "connection test").await?;
    let server = servers::server_by_id(ctx, server_id).await?;
    let succeeded = op.state == "SUCCEEDED";
    let error = match op.state.as_str() {
        "PENDING" => Some("still running; see the server's lastTestedAt later".to_owned()),
        _ => op.error.clone(),
    };
    Ok(servers::ConnectionTest {
        succeeded,
        error,
        os: succeeded.then(|| server.0.os.clone()).flatten(),
        kernel: succeeded.then(|| server.0.kernel.clone()).flatten(),
        hostname: succeeded.then(|| server.0.hostname.clone()).flatten(),
        rtt_ms: succeeded.then_some(server.0.rtt_ms).flatten(),
        server,
    })
}

pub async fn check_server_keys(
    ctx: &Context,
    p: &Principal,
    server_id: ID,
) -> Result<servers::ServerOperation, ApiError> {
    let server_id = parse_id("serverId", &server_id)?;
    servers::server_by_id(ctx, server_id).await?;
    let op = orchestration::one(&ctx.state, &ctx.metadata(p), server_id, ServerRequest::Check, "key check").await?;
    Ok(servers::ServerOperation(op))
}
