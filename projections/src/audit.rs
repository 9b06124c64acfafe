//! The audit log: one row per event of the permanent retention class (who did what; metric
//! samples and other expiring observations are not audit entries), indexed by stream, type,
//! actor and time. Payloads stay in `event_log` (joined on read, in its permanent partition, by
//! the read order's key), so the read model is narrow and quick to rebuild.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, QueryBuilder, Row};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, Projection, IN_BATCH};

pub struct AuditLogProjection;

impl Projection for AuditLogProjection {
    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn model_version(&self) -> i32 {
        // 2: one (stream_type, stream_id, seq) index serves both stream filters.
        // 3: the log's lean shape: streams by type key and UUID, types by key, joined back to
        //    the log by the read order's key.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &["CREATE TABLE audit_log (
            seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            global_position bigint      NOT NULL,
            transaction_id  bigint      NOT NULL,
            stream_version  bigint      NOT NULL,
            recorded_at     timestamptz NOT NULL,
            event_id        uuid        NOT NULL,
            stream_uuid     uuid        NOT NULL,
            -- The log's keys of the names in stream_types and event_types.
            stream_type     smallint    NOT NULL,
            event_type      smallint    NOT NULL,
            actor_kind      text,
            actor_id        text,
            actor_name      text)"]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &[
            "CREATE UNIQUE INDEX audit_log_by_position ON audit_log (global_position)",
            // A stream filter supplies both the type and the UUID, so this serves both filters.
            "CREATE INDEX audit_log_by_stream ON audit_log (stream_type, stream_uuid, seq)",
            "CREATE INDEX audit_log_by_event_type ON audit_log (event_type, seq)",
            "CREATE INDEX audit_log_by_actor ON audit_log (actor_id, seq)",
            "CREATE INDEX audit_log_by_time ON audit_log (recorded_at)",
        ]
    }

    /// Works on the range in SQL: every event's row is copied inside PostgreSQL.
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let [a, b, c, d] = batch.bounds();
            // ON CONFLICT without a target: idempotent, and valid before the unique index exists
            // (a rebuild creates indexes after its bulk load). Identity values follow ORDER BY.
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO audit_log (global_position, transaction_id, stream_version, recorded_at, event_id, stream_uuid, \
                                        stream_type, event_type, actor_kind, actor_id, actor_name) \
                 SELECT e.global_position, e.transaction_id, e.stream_version, e.recorded_at, e.event_id, e.stream_uuid, \
                        e.stream_type, e.event_type, actor->>'kind', actor->>'id', actor->>'name' \
                 FROM event_log_permanent e, LATERAL (SELECT e.metadata->'actor' AS actor) a \
                 WHERE {IN_BATCH} ORDER BY e.transaction_id, e.global_position \
                 ON CONFLICT DO NOTHING"
            )))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(d)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}

/// What to show; every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub stream_id: Option<String>,
    pub stream_type: Option<String>,
    pub event_types: Vec<String>,
    pub actor_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Stream types the reader may not see (the API hides identity streams from non-admins).
    pub hidden_stream_types: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// Opaque cursor for paging (the audit log's own sequence).
    pub seq: i64,
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_type: String,
    pub stream_version: i64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub hash: String,
}

/// A page of audit entries after `after` (a previous entry's `seq`), oldest first.
pub async fn audit_log(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    // The page is chosen from the audit log alone, then joined to the names and, by the read
    // order's key, to the log: a join the planner sees whole would go parallel for 50 rows.
    let mut q = QueryBuilder::new(
        "SELECT a.seq, a.global_position, a.event_id, st.name || '-' || a.stream_uuid, st.name, a.stream_version, \
                et.name, a.recorded_at, a.actor_kind, a.actor_id, a.actor_name, e.payload, e.metadata, e.hash \
         FROM (SELECT * FROM audit_log a WHERE a.seq > ",
    );
    q.push_bind(after.unwrap_or(0));
    if let Some(v) = &filter.stream_id {
        match v.parse::<unity_domain::StreamId>() {
            Ok(id) => {
                q.push(" AND a.stream_type = (SELECT key FROM stream_types WHERE name = ")
                    .push_bind(id.stream_type().to_owned())
                    .push(")");
                q.push(" AND a.stream_uuid = ").push_bind(id.id());
            }
            // No stream has such an id.
            Err(_) => {
                q.push(" AND false");
            }
        }
    }
    // Names become keys once per query (each subquery runs once), so the filters reach the indexes.
    if let Some(v) = &filter.stream_type {
        q.push(" AND a.stream_type = (SELECT key FROM stream_types WHERE name = ").push_bind(v).push(")");
    }
    if !filter.hidden_stream_types.is_empty() {
        q.push(" AND a.stream_type <> ALL(ARRAY(SELECT key FROM stream_types WHERE name = ANY(")
            .push_bind(&filter.hidden_stream_types)
            .push(")))");
    }
    if !filter.event_types.is_empty() {
        q.push(" AND a.event_type = ANY(ARRAY(SELECT key FROM event_types WHERE name = ANY(")
            .push_bind(&filter.event_types)
            .push(")))");
    }
    if let Some(v) = &filter.actor_id {
        q.push(" AND a.actor_id = ").push_bind(v);
    }
    if let Some(v) = filter.from {
        q.push(" AND a.recorded_at >= ").push_bind(v);
    }
    if let Some(v) = filter.to {
        q.push(" AND a.recorded_at <= ").push_bind(v);
    }
    q.push(" ORDER BY a.seq LIMIT ").push_bind(limit);
    q.push(
        ") a JOIN stream_types st ON st.key = a.stream_type JOIN event_types et ON et.key = a.event_type \
         CROSS JOIN LATERAL ( \
             SELECT payload, metadata, hash FROM event_log_permanent e \
             WHERE e.transaction_id = a.transaction_id AND e.global_position = a.global_position) e \
         ORDER BY a.seq",
    );
    let rows = q.build().fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            seq: r.get(0),
            position: r.get(1),
            event_id: r.get(2),
            stream_id: r.get(3),
            stream_type: r.get(4),
            stream_version: r.get(5),
            event_type: r.get(6),
            recorded_at: r.get(7),
            actor_kind: r.get(8),
            actor_id: r.get(9),
            actor_name: r.get(10),
            payload: r.get(11),
            metadata: r.get(12),
            hash: hex::encode(r.get::<Vec<u8>, _>(13)),
        })
        .collect())
}
