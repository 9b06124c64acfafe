//! Configuring monitoring, polling now, and SMART overrides.

use juniper::ID;
use unity_commands::monitoring::schedule;
use unity_domain::monitoring::{
    HostSample, MonitoringCommand, MonitoringConfig, OverrideAction, DEFAULT_INTERVAL_SECS,
};
use unity_projections::monitoring as read;

use crate::{
    auth::Principal,
    errors::{ApiError, Code},
    schema::{common::*, monitoring, servers, Context},
};

fn seconds(value: Option<i32>, default: u32, what: &str) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => u32::try_from(v).map_err(|_| ApiError::bad_input(format!("{what} must be positive"))),
    }
}

pub async fn configure_monitoring(
    ctx: &Context,
    p: &Principal,
    input: monitoring::ConfigureMonitoringInput,
) -> Result<monitoring::ServerMonitoring, ApiError> {
    let server_id = parse_id("serverId", &input.server_id)?;
    servers::server_by_id(ctx, server_id).await?;
    let current = monitoring::monitoring_of(ctx, server_id).await?;
    let before: MonitoringConfig = current
        .row
        .as_ref()
        .and_then(|r| r.config.clone())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let config = MonitoringConfig {
        enabled: input.enabled,
        interval_secs: seconds(
            input.interval_seconds,
            if before.enabled { before.interval_secs } else { DEFAULT_INTERVAL_SECS },
            "intervalSeconds",
        )?,
        smart_enabled: input.smart.as_ref().map_or(before.smart_enabled, |s| s.enabled),
        smart_interval_secs: seconds(
            input.smart.as_ref().and_then(|s| s.interval_seconds),
            before.smart_interval_secs,
            "smart.intervalSeconds",
        )?,
        databases_enabled: input.databases.as_ref().map_or(before.databases_enabled, |d| d.enabled),
        database_credential: match input.databases.as_ref().and_then(|d| d.credential_id.as_ref()) {
            Some(id) => Some(parse_id("databases.credentialId", id)?),
            None => before.database_credential,
        },
    };
    let appended = ctx
        .state
        .commands
        .monitoring
        .command(server_id, MonitoringCommand::Configure(config), &ctx.metadata(p))
        .await?;
    ctx.state.settle(appended.as_ref()).await?;
    monitoring::monitoring_of(ctx, server_id).await
}

/// Asks the collectors to poll the server now, and waits (up to the SSH wait) for the sample.
pub async fn collect_now(ctx: &Context, _p: &Principal, server_id: ID) -> Result<monitoring::Sample, ApiError> {
    let server_id = parse_id("serverId", &server_id)?;
    servers::server_by_id(ctx, server_id).await?;
    let pool = ctx.state.store.pool();
    let before = read::monitored_server(pool, server_id).await?.and_then(|r| r.last_sample_at);
    if !schedule::due_now(pool, server_id, false).await? {
        return Err(ApiError::new(Code::Conflict, "monitoring is not enabled for this server (configureMonitoring)"));
    }
    let deadline = tokio::time::Instant::now() + ctx.state.config.ssh_wait;
    loop {
        let row = read::monitored_server(pool, server_id).await?;
        if let Some(row) = row.as_ref().filter(|r| r.last_sample_at > before) {
            let mut sample =
                row.last_sample.clone().and_then(|s| serde_json::from_value::<HostSample>(s).ok()).unwrap_or_default();
            monitoring::name_filesystems(&mut sample, row.facts.as_ref());
            return Ok(monitoring::Sample::new(row.last_sample_at.unwrap_or_default(), &sample));
        }
        if tokio::time::Instant::now() >= deadline {
            let message = match row.filter(|r| r.failing_since.is_some()).and_then(|r| r.last_error) {
                Some(error) => format!("the server could not be polled: {error}"),
                None => "no sample within the wait; is a collectors process running?".into(),
            };
            return Err(ApiError::new(Code::Unavailable, message));
        }
        // The collectors write from another process: look again shortly, once the read models
        // have caught up with the log.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ctx.state.settle_head().await?;
    }
}

pub async fn override_smart_attribute(
    ctx: &Context,
    p: &Principal,
    input: monitoring::OverrideSmartAttributeInput,
) -> Result<monitoring::StorageDevice, ApiError> {
    let (server, serial) =
        input.device_id.split_once('/').ok_or_else(|| ApiError::bad_input("deviceId is `<serverId>/<serial>`"))?;
    let server_id = parse_id("deviceId", &ID::new(server))?;
    let devices = read::monitored_devices(ctx.state.store.pool(), server_id).await?;
    let device = devices.iter().find(|d| d.serial == serial).ok_or_else(|| ApiError::not_found("storage device"))?;
    let current_value = device.device["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == input.attribute_id.as_str()))
        .and_then(|a| a["raw"].as_i64());
    let action = match input.action {
        monitoring::SmartOverrideAction::Ignore => OverrideAction::Ignore,
        monitoring::SmartOverrideAction::AcceptCurrent => OverrideAction::AcceptCurrent,
    };
    let command = MonitoringCommand::OverrideAttribute {
        serial: serial.to_string(),
        attribute_id: input.attribute_id.clone(),
        action,
        current_value,
    };
    let appended = ctx.state.commands.monitoring.command(server_id, command, &ctx.metadata(p)).await?;
    ctx.state.settle(appended.as_ref()).await?;
    let rows = read::monitored_devices(ctx.state.store.pool(), server_id).await?;
    rows.into_iter()
        .filter(|d| d.serial == serial)
        .find_map(monitoring::StorageDevice::from_row)
        .ok_or_else(|| ApiError::not_found("storage device"))
}
