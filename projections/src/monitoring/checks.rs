//! The checks' part of the monitoring read model: each check's definition, and each server's
//! latest result of each check that applies to it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, PgPool};
use unity_commands::store::RecordedEvent;
use unity_domain::monitoring::{CheckEvent, CheckStatus, CheckTarget};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, IN_BATCH};

pub(super) const TABLES: [&str; 2] = [
    "CREATE TABLE monitoring_checks (
        check_id      uuid        PRIMARY KEY,
        name          text        NOT NULL,
        server_id     uuid,
        tag           text,
        command       text        NOT NULL,
        interval_secs integer     NOT NULL,
        created_at    timestamptz NOT NULL)",
    "CREATE TABLE monitored_checks (
        server_id    uuid        NOT NULL,
        check_id     uuid        NOT NULL,
        status       text        NOT NULL,
        exit_status  integer,
        output       text        NOT NULL,
        perfdata     jsonb       NOT NULL DEFAULT '[]',
        ran_at       timestamptz NOT NULL,
        status_since timestamptz NOT NULL,
        PRIMARY KEY (server_id, check_id))",
];

/// A check's creation or deletion.
pub(super) async fn apply_definition(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
    match e.decode::<CheckEvent>()? {
        CheckEvent::CheckCreated(d) => {
            let (server_id, tag) = match d.target {
                CheckTarget::Server(id) => (Some(id), None),
                CheckTarget::Tag(tag) => (None, Some(tag)),
            };
            sqlx::query(
                "INSERT INTO monitoring_checks (check_id, name, server_id, tag, command, interval_secs, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (check_id) DO NOTHING",
            )
            .bind(d.check_id)
            .bind(&d.name)
            .bind(server_id)
            .bind(tag)
            .bind(&d.command)
            .bind(d.interval_secs as i32)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        CheckEvent::CheckDeleted { check_id } => {
            for table in ["monitoring_checks", "monitored_checks"] {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE check_id = $1")))
                    .bind(check_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// A check's new status on a server (`CheckStatusChanged`): since when it holds.
pub(super) async fn status_changed(
    conn: &mut PgConnection,
    server_id: Uuid,
    check_id: Uuid,
    at: DateTime<Utc>,
    status: CheckStatus,
    output: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO monitored_checks (server_id, check_id, status, output, ran_at, status_since) \
         SELECT $1, $2, $3, $4, $5, $5 WHERE EXISTS (SELECT 1 FROM monitoring_checks WHERE check_id = $2) \
         ON CONFLICT (server_id, check_id) DO UPDATE SET status_since = $5",
    )
    .bind(server_id)
    .bind(check_id)
    .bind(status.as_str())
    .bind(output)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Each server's latest run of each check in the batch (CheckRan v1: server_id, check_id, at,
/// result { status exit output perfdata }), for checks that still exist.
pub(super) async fn apply_runs(conn: &mut PgConnection, batch: &Batch<'_>) -> Result<(), ApplyError> {
    let [a, b, c, d] = batch.bounds();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO monitored_checks AS m (server_id, check_id, status, exit_status, output, perfdata, ran_at, status_since) \
         SELECT DISTINCT ON (server_id, check_id) server_id, check_id, status, exit_status, output, perfdata, at, at FROM ( \
             SELECT (payload->>'server_id')::uuid AS server_id, (payload->>'check_id')::uuid AS check_id, \
                    payload->'result'->>'status' AS status, (payload->'result'->>'exit')::int AS exit_status, \
                    payload->'result'->>'output' AS output, \
                    coalesce((payload->'result'->'perfdata')::jsonb, '[]') AS perfdata, \
                    (payload->>'at')::timestamptz AS at, transaction_id, global_position \
             FROM event_log_samples WHERE stream_type = (SELECT key FROM stream_types WHERE name = 'host_samples') \
               AND event_type = (SELECT key FROM event_types WHERE name = 'CheckRan') AND {IN_BATCH}) r \
         WHERE EXISTS (SELECT 1 FROM monitoring_checks c WHERE c.check_id = r.check_id) \
         ORDER BY server_id, check_id, transaction_id DESC, global_position DESC \
         ON CONFLICT (server_id, check_id) DO UPDATE SET status = excluded.status, exit_status = excluded.exit_status, \
             output = excluded.output, perfdata = excluded.perfdata, ran_at = excluded.ran_at \
         WHERE m.ran_at <= excluded.ran_at"
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub struct CheckRow {
    pub check_id: Uuid,
    pub name: String,
    pub server_id: Option<Uuid>,
    pub tag: Option<String>,
    pub command: String,
    pub interval_secs: i32,
    pub created_at: DateTime<Utc>,
}

/// Every check, oldest first.
pub async fn checks(pool: &PgPool) -> Result<Vec<CheckRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitoring_checks ORDER BY created_at, check_id").fetch_all(pool).await
}

pub async fn check(pool: &PgPool, check_id: Uuid) -> Result<Option<CheckRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM monitoring_checks WHERE check_id = $1").bind(check_id).fetch_optional(pool).await
}

/// A check as it applies to one server, with its latest result there (if it ran).
#[derive(Clone, Debug, FromRow)]
pub struct ServerCheck {
    #[sqlx(flatten)]
    pub check: CheckRow,
    pub status: Option<String>,
    pub exit_status: Option<i32>,
    pub output: Option<String>,
    pub perfdata: Option<Value>,
    pub ran_at: Option<DateTime<Utc>>,
    pub status_since: Option<DateTime<Utc>>,
}

/// The checks that apply to a server with these tags, each with its latest result there.
pub async fn server_checks(pool: &PgPool, server_id: Uuid, tags: &[String]) -> Result<Vec<ServerCheck>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.*, r.status, r.exit_status, r.output, r.perfdata, r.ran_at, r.status_since \
         FROM monitoring_checks c LEFT JOIN monitored_checks r ON r.check_id = c.check_id AND r.server_id = $1 \
         WHERE c.server_id = $1 OR c.tag = ANY($2) ORDER BY c.name, c.check_id",
    )
    .bind(server_id)
    .bind(tags)
    .fetch_all(pool)
    .await
}

/// The perfdata column as written (the domain's `PerfValue`s).
pub fn perfdata(value: &Value) -> Vec<unity_domain::monitoring::PerfValue> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}
