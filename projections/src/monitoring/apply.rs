//! How monitoring events change the tables: state changes one by one, samples in bulk.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection};
use unity_commands::store::RecordedEvent;
use unity_domain::{
    monitoring::{CheckEvent, CheckStatus, Failure, MonitoringEvent, OverrideAction},
    DomainEvent,
};
use uuid::Uuid;

use super::checks;
use crate::engine::{ApplyError, Batch, IN_BATCH};

pub(super) async fn apply(conn: &mut PgConnection, batch: &Batch<'_>) -> Result<(), ApplyError> {
    for e in batch.events {
        if e.stream_type == CheckEvent::STREAM_TYPE {
            checks::apply_definition(conn, e).await?;
        } else {
            apply_change(conn, e).await?;
        }
    }
    checks::apply_runs(conn, batch).await?;
    let [a, b, c, d] = batch.bounds();
    // The latest sample of each server in the batch (ServerSampled v1: server_id, at, sample).
    // A first sample makes an UNKNOWN server OK; failures and recoveries are events of their own.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO monitored_servers AS m (server_id, status, last_sample_at, last_sample) \
         SELECT DISTINCT ON (server_id) server_id, 'OK', at, sample FROM ( \
             SELECT (payload->>'server_id')::uuid AS server_id, (payload->>'at')::timestamptz AS at, (payload->'sample')::jsonb AS sample, \
                    transaction_id, global_position \
             FROM event_log_samples WHERE stream_type = (SELECT key FROM stream_types WHERE name = 'host_samples') \
               AND event_type = (SELECT key FROM event_types WHERE name = 'ServerSampled') AND {IN_BATCH}) s \
         ORDER BY server_id, transaction_id DESC, global_position DESC \
         ON CONFLICT (server_id) DO UPDATE SET last_sample_at = excluded.last_sample_at, last_sample = excluded.last_sample, \
             status = CASE WHEN m.status = 'UNKNOWN' THEN 'OK' ELSE m.status END \
         WHERE m.last_sample_at IS NULL OR m.last_sample_at <= excluded.last_sample_at"
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .execute(&mut *conn)
    .await?;
    // Each disk's latest reading (DevicesRead v1: server_id, at, devices[]), for disks the
    // server's stream has discovered.
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE monitored_devices m SET device = r.device, read_at = r.at FROM ( \
             SELECT DISTINCT ON (server_id, serial) server_id, serial, device, at FROM ( \
                 SELECT (payload->>'server_id')::uuid AS server_id, (payload->>'at')::timestamptz AS at, d::jsonb AS device, \
                        d->>'serial' AS serial, transaction_id, global_position \
                 FROM event_log_samples, json_array_elements(payload->'devices') d \
                 WHERE stream_type = (SELECT key FROM stream_types WHERE name = 'host_samples') \
                   AND event_type = (SELECT key FROM event_types WHERE name = 'DevicesRead') AND {IN_BATCH}) x \
             ORDER BY server_id, serial, transaction_id DESC, global_position DESC) r \
         WHERE m.server_id = r.server_id AND m.serial = r.serial AND m.read_at <= r.at"
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn change(
    conn: &mut PgConnection,
    e: &RecordedEvent,
    server_id: Uuid,
    at: DateTime<Utc>,
    (kind, subject, verdict, summary): (&str, &str, Option<&str>, String),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO monitoring_changes (global_position, server_id, at, kind, subject, verdict, summary) \
         VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
    )
    .bind(e.global_position)
    .bind(server_id)
    .bind(at)
    .bind(kind)
    .bind(subject)
    .bind(verdict)
    .bind(summary)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn ensure_server(conn: &mut PgConnection, server_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO monitored_servers (server_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(server_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn apply_change(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    let server_id =
        e.stream_id.strip_prefix("server_monitoring-").and_then(|id| id.parse::<Uuid>().ok()).ok_or_else(|| {
            ApplyError::Poison { event_id: e.event_id, reason: "malformed server_monitoring stream id".into() }
        })?;
    ensure_server(conn, server_id).await?;
    match e.decode::<MonitoringEvent>()? {
        MonitoringEvent::MonitoringConfigured { config } => {
            sqlx::query("UPDATE monitored_servers SET config = $2 WHERE server_id = $1")
                .bind(server_id)
                .bind(json!(config))
                .execute(&mut *conn)
                .await?;
        }
        MonitoringEvent::HostFactsChanged { at, facts } => {
            sqlx::query("UPDATE monitored_servers SET facts = $2 WHERE server_id = $1")
                .bind(server_id)
                .bind(json!(facts))
                .execute(&mut *conn)
                .await?;
            let summary = format!("{} {} (boot {})", facts.os, facts.kernel, facts.boot_id);
            change(conn, e, server_id, at, ("FACTS", &facts.hostname, None, summary)).await?;
        }
        MonitoringEvent::CollectionFailed { at, failure, error } => {
            let status = match failure {
                Failure::Unreachable => "UNREACHABLE",
                Failure::Collection => "FAILING",
            };
            sqlx::query(
                "UPDATE monitored_servers SET status = $2, last_error = $3, failing_since = $4 WHERE server_id = $1",
            )
            .bind(server_id)
            .bind(status)
            .bind(&error)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            change(conn, e, server_id, at, (status, "server", Some("failed"), error)).await?;
        }
        MonitoringEvent::CollectionRecovered { at } => {
            sqlx::query("UPDATE monitored_servers SET status = 'OK', last_error = NULL, failing_since = NULL WHERE server_id = $1")
                .bind(server_id)
                .execute(&mut *conn)
                .await?;
            change(conn, e, server_id, at, ("RECOVERED", "server", Some("passed"), "collection works again".into()))
                .await?;
        }
        MonitoringEvent::DeviceDiscovered { at, device, first_seen } => {
            sqlx::query(
                "INSERT INTO monitored_devices (server_id, serial, device, verdict, reasons, first_seen, read_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (server_id, serial) DO UPDATE SET device = $3, verdict = $4, \
                 reasons = $5, first_seen = $6, overrides = '{}', read_at = $7",
            )
            .bind(server_id)
            .bind(&device.serial)
            .bind(json!(device))
            .bind(device.verdict.as_str())
            .bind(json!(device.reasons))
            .bind(json!(first_seen))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let summary = format!("{} {} ({})", device.model, device.name, device.reasons.join("; "));
            change(
                conn,
                e,
                server_id,
                at,
                ("DEVICE_DISCOVERED", &device.serial, Some(device.verdict.as_str()), summary),
            )
            .await?;
        }
        MonitoringEvent::DeviceVerdictChanged { at, serial, verdict, reasons } => {
            sqlx::query("UPDATE monitored_devices SET verdict = $3, reasons = $4 WHERE server_id = $1 AND serial = $2")
                .bind(server_id)
                .bind(&serial)
                .bind(verdict.as_str())
                .bind(json!(reasons))
                .execute(&mut *conn)
                .await?;
            change(conn, e, server_id, at, ("DEVICE_VERDICT", &serial, Some(verdict.as_str()), reasons.join("; ")))
                .await?;
        }
        MonitoringEvent::DeviceRemoved { at, serial } => {
            sqlx::query("DELETE FROM monitored_devices WHERE server_id = $1 AND serial = $2")
                .bind(server_id)
                .bind(&serial)
                .execute(&mut *conn)
                .await?;
            change(conn, e, server_id, at, ("DEVICE_REMOVED", &serial, None, "no longer found".into())).await?;
        }
        MonitoringEvent::SmartAttributeOverridden { serial, attribute_id, action, value } => {
            let entry = match action {
                OverrideAction::Ignore => json!({"action": "IGNORE"}),
                OverrideAction::AcceptCurrent => json!({"action": "ACCEPT_CURRENT", "value": value}),
            };
            sqlx::query(
                "UPDATE monitored_devices SET overrides = overrides || jsonb_build_object($3::text, $4::jsonb) \
                 WHERE server_id = $1 AND serial = $2",
            )
            .bind(server_id)
            .bind(&serial)
            .bind(&attribute_id)
            .bind(entry)
            .execute(&mut *conn)
            .await?;
        }
        MonitoringEvent::PoolChanged { at, pool } => {
            sqlx::query(
                "INSERT INTO monitored_pools (server_id, kind, name, pool, verdict, changed_at) VALUES ($1,$2,$3,$4,$5,$6) \
                 ON CONFLICT (server_id, kind, name) DO UPDATE SET pool = $4, verdict = $5, changed_at = $6",
            )
            .bind(server_id)
            .bind(pool.kind.as_str())
            .bind(&pool.name)
            .bind(json!(pool))
            .bind(pool.verdict.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let summary = format!("{} {}", pool.state, pool.reasons.join("; "));
            change(
                conn,
                e,
                server_id,
                at,
                ("POOL", &pool.name, Some(pool.verdict.as_str()), summary.trim().to_string()),
            )
            .await?;
        }
        MonitoringEvent::PoolRemoved { at, kind, name } => {
            sqlx::query("DELETE FROM monitored_pools WHERE server_id = $1 AND kind = $2 AND name = $3")
                .bind(server_id)
                .bind(kind.as_str())
                .bind(&name)
                .execute(&mut *conn)
                .await?;
            change(conn, e, server_id, at, ("POOL_REMOVED", &name, None, "no longer found".into())).await?;
        }
        MonitoringEvent::ArrayChanged { at, array } => {
            sqlx::query(
                "INSERT INTO monitored_arrays (server_id, name, array_state, verdict, changed_at) VALUES ($1,$2,$3,$4,$5) \
                 ON CONFLICT (server_id, name) DO UPDATE SET array_state = $3, verdict = $4, changed_at = $5",
            )
            .bind(server_id)
            .bind(&array.name)
            .bind(json!(array))
            .bind(array.verdict.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            let summary = format!("{} {}", array.state, array.reasons.join("; "));
            change(
                conn,
                e,
                server_id,
                at,
                ("ARRAY", &array.name, Some(array.verdict.as_str()), summary.trim().to_string()),
            )
            .await?;
        }
        MonitoringEvent::ArrayRemoved { at, name } => {
            sqlx::query("DELETE FROM monitored_arrays WHERE server_id = $1 AND name = $2")
                .bind(server_id)
                .bind(&name)
                .execute(&mut *conn)
                .await?;
            change(conn, e, server_id, at, ("ARRAY_REMOVED", &name, None, "no longer found".into())).await?;
        }
        MonitoringEvent::CheckStatusChanged { at, check_id, status, output } => {
            checks::status_changed(conn, server_id, check_id, at, status, &output).await?;
            let verdict = match status {
                CheckStatus::Ok => "passed",
                CheckStatus::Warning => "warning",
                CheckStatus::Critical => "failed",
                CheckStatus::Unknown => "unknown",
            };
            let name: Option<String> = sqlx::query_scalar("SELECT name FROM monitoring_checks WHERE check_id = $1")
                .bind(check_id)
                .fetch_optional(&mut *conn)
                .await?;
            let subject = name.unwrap_or_else(|| check_id.to_string());
            change(conn, e, server_id, at, ("CHECK", &subject, Some(verdict), format!("{} {output}", status.as_str())))
                .await?;
        }
    }
    Ok(())
}
