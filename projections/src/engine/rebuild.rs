//! The operator's controls: retry or skip a poison event, rebuild a read model into a fresh
//! schema and swap it in under the checkpoint lock.

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use unity_commands::store::{range_end_after, Cursor, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};
use unity_domain::EventMetadata;
use uuid::Uuid;

use super::*;

impl ProjectionEngine {
    /// Resumes a stopped projection at the event that stopped it.
    pub async fn retry(&self, name: &str, metadata: &EventMetadata) -> Result<(), EngineError> {
        let p = self.find(name)?;
        sqlx::query("UPDATE checkpoints SET state = 'running', error = NULL, error_event_id = NULL, error_at = NULL WHERE name = $1")
            .bind(p.name())
            .execute(self.store.pool())
            .await?;
        self.record(p.name(), ProjectionEvent::ProjectionRetried { projection: p.name().into() }, metadata).await
    }

    /// Moves a stopped projection past the event that stopped it, and resumes it. Recorded in the
    /// log, since the read model will now lack that event's effect.
    pub async fn skip(&self, name: &str, metadata: &EventMetadata) -> Result<Option<Uuid>, EngineError> {
        let p = self.find(name)?;
        let mut tx = self.store.pool().begin().await?;
        let _ = lock_checkpoint(&mut tx, p.name()).await?;
        let poison: Option<Uuid> = sqlx::query_scalar("SELECT error_event_id FROM checkpoints WHERE name = $1")
            .bind(p.name())
            .fetch_one(&mut *tx)
            .await?;
        let Some(event_id) = poison else {
            return Ok(None);
        };
        // By its id: a BRIN scan, for an operator's action.
        let row = sqlx::query("SELECT transaction_id, global_position FROM event_log WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE checkpoints SET transaction_id = $2, global_position = $3, state = 'running', error = NULL, \
             error_event_id = NULL, error_at = NULL, updated_at = now() WHERE name = $1",
        )
        .bind(p.name())
        .bind(row.get::<i64, _>(0))
        .bind(row.get::<i64, _>(1))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.record(
            p.name(),
            ProjectionEvent::ProjectionEventSkipped { projection: p.name().into(), event_id },
            metadata,
        )
        .await?;
        Ok(Some(event_id))
    }

    /// Rebuilds projections from the start of the log into fresh tables, then swaps them in.
    /// `progress(done, total)` is called as it goes. One rebuild of a projection at a time, across
    /// processes (a session advisory lock per projection, held throughout).
    pub async fn rebuild(
        &self,
        projections: &[Arc<dyn Projection>],
        progress: impl FnMut(u64, u64),
    ) -> Result<u64, EngineError> {
        self.rebuild_with(projections, false, progress).await
    }

    /// With `only_outdated`, rebuilds only projections whose model version still differs once the
    /// lock is held: when several processes start at once, one rebuilds and the others see it done.
    pub(super) async fn rebuild_with(
        &self,
        projections: &[Arc<dyn Projection>],
        only_outdated: bool,
        progress: impl FnMut(u64, u64),
    ) -> Result<u64, EngineError> {
        let mut lock = self.store.pool().acquire().await?.detach();
        let mut names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
        names.sort_unstable(); // one order everywhere, so two rebuilds cannot deadlock
        for name in names {
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(format!("unity-rebuild:{name}"))
                .execute(&mut lock)
                .await?;
        }
        let mut chosen = Vec::new();
        for p in projections {
            let stored: Option<i32> = sqlx::query_scalar("SELECT model_version FROM checkpoints WHERE name = $1")
                .bind(p.name())
                .fetch_optional(&mut lock)
                .await?;
            if !only_outdated || stored != Some(p.model_version()) {
                chosen.push(p.clone());
            }
        }
        let result = if chosen.is_empty() { Ok(0) } else { self.rebuild_locked(&chosen, progress).await };
        let _ = sqlx::Connection::close(lock).await; // ends the session, and with it the locks
        result
    }

    async fn rebuild_locked(
        &self,
        projections: &[Arc<dyn Projection>],
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, EngineError> {
        let total = self.store.count_after(Cursor::START).await?.max(0) as u64;
        let batch = self.batch_size.max(20_000);
        // Each projection is built on its own connection, side by side: their work happens inside
        // PostgreSQL, so building them at once uses every core.
        let applied = Arc::new(AtomicU64::new(0));
        let builds = projections.iter().map(|p| build_fresh(&self.store, p.as_ref(), batch, &applied));
        let mut builds = std::pin::pin!(futures::future::try_join_all(builds));
        let cursors = loop {
            tokio::select! {
                built = &mut builds => break built?,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let done = applied.load(Ordering::Relaxed) / projections.len() as u64;
                    progress(done, total.max(done));
                }
            }
        };
        let mut done = applied.load(Ordering::Relaxed) / projections.len().max(1) as u64;
        let mut conn = self.store.pool().acquire().await?;
        // Swap under each checkpoint's lock, after applying whatever arrived meanwhile.
        for (p, cursor) in projections.iter().zip(cursors) {
            let schema = rebuild_schema(p.name());
            let mut tx = conn.begin().await?;
            lock_checkpoint(&mut tx, p.name()).await?;
            let skipped = skipped_events(&mut tx, p.name()).await?;
            let mut last = cursor;
            while let Some((end, count)) = range_end_after(&mut tx, last, batch).await? {
                apply_to_rebuild(p.as_ref(), &mut tx, last, end, &skipped).await?;
                done += count as u64;
                last = end;
            }
            for table in p.tables() {
                sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS public.{table} CASCADE")))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(AssertSqlSafe(format!("ALTER TABLE {schema}.{table} SET SCHEMA public")))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut *tx).await?;
            let handled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM event_log WHERE (transaction_id, global_position) <= ($1, $2)",
            )
            .bind(last.transaction_id)
            .bind(last.global_position)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE checkpoints SET transaction_id = $2, global_position = $3, events_handled = $4, model_version = $5, \
                 state = 'running', error = NULL, error_event_id = NULL, error_at = NULL, updated_at = now() WHERE name = $1",
            )
            .bind(p.name())
            .bind(last.transaction_id)
            .bind(last.global_position)
            .bind(handled)
            .bind(p.model_version())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let rebuilt = ProjectionEvent::ProjectionRebuilt { projection: p.name().into(), events: handled };
            self.record(p.name(), rebuilt, &unity_commands::metadata(unity_domain::Actor::system("replay"), "cli"))
                .await?;
        }
        progress(done, total.max(done));
        Ok(done)
    }

    pub(super) async fn record(
        &self,
        name: &str,
        event: ProjectionEvent,
        metadata: &EventMetadata,
    ) -> Result<(), EngineError> {
        self.store
            .append(vec![StreamAppend {
                stream_id: projection_stream(name),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::from_domain(&event, metadata)],
            }])
            .await?;
        Ok(())
    }
}

/// Builds a projection from the start of the log into its `rebuild_<name>` schema: tables, the
/// bulk load, then indexes. Returns the cursor it reached.
async fn build_fresh(
    store: &EventStore,
    p: &dyn Projection,
    batch: i64,
    applied: &AtomicU64,
) -> Result<Cursor, EngineError> {
    let mut conn = store.pool().acquire().await?;
    let schema = rebuild_schema(p.name());
    let mut tx = conn.begin().await?;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(format!("SET LOCAL search_path TO {schema}, public"))).execute(&mut *tx).await?;
    for ddl in p.create_tables() {
        sqlx::query(AssertSqlSafe(*ddl)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let skipped = skipped_events(&mut conn, p.name()).await?;
    let mut cursor = Cursor::START;
    while let Some((through, count)) = range_end_after(&mut conn, cursor, batch).await? {
        let mut tx = conn.begin().await?;
        apply_to_rebuild(p, &mut tx, cursor, through, &skipped).await?;
        tx.commit().await?;
        cursor = through;
        applied.fetch_add(count as u64, Ordering::Relaxed);
    }
    // Indexes after the bulk load: building one is far cheaper than maintaining it row by row.
    let mut tx = conn.begin().await?;
    sqlx::query(AssertSqlSafe(format!("SET LOCAL search_path TO {schema}, public"))).execute(&mut *tx).await?;
    // Index builds sort; give them room (the default 64 MB spills a million rows to disk).
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'").execute(&mut *tx).await?;
    for ddl in p.create_indexes() {
        sqlx::query(AssertSqlSafe(*ddl)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(cursor)
}

/// The cursors of the events an operator skipped for projection `name` (`unity projections
/// skip`, recorded as `ProjectionEventSkipped`), in log order: a rebuild leaves them out as the
/// live projection did.
async fn skipped_events(conn: &mut PgConnection, name: &str) -> Result<Vec<Cursor>, EngineError> {
    let rows = sqlx::query(
        "SELECT e.transaction_id, e.global_position FROM event_log_permanent s \
         JOIN event_log e ON e.event_id = (s.payload->>'event_id')::uuid \
         WHERE s.stream_uuid = $2 AND s.stream_type = (SELECT key FROM stream_types WHERE name = 'projection') \
           AND s.event_type = (SELECT key FROM event_types WHERE name = 'ProjectionEventSkipped') \
           AND s.payload->>'projection' = $1",
    )
    .bind(name)
    .bind(super::projection_stream(name).id())
    .fetch_all(&mut *conn)
    .await?;
    let mut cursors: Vec<Cursor> = rows.iter().map(Cursor::from_leading_columns).collect();
    cursors.sort();
    cursors.dedup();
    Ok(cursors)
}

/// Applies a range to a projection's rebuild schema, around the events skipped on the record
/// (each splits the range in two). A rebuild cannot stop halfway: any other poison event aborts
/// it with the reason, and the live tables stay as they were.
async fn apply_to_rebuild(
    p: &dyn Projection,
    tx: &mut PgConnection,
    after: Cursor,
    through: Cursor,
    skipped: &[Cursor],
) -> Result<(), EngineError> {
    let mut from = after;
    for &skip in skipped.iter().filter(|&&c| c > after && c <= through) {
        // Positions are integers: (tx, position - 1) is the last cursor before the skipped event.
        let before = Cursor { global_position: skip.global_position - 1, ..skip };
        if before > from {
            apply_range_to_rebuild(p, tx, from, before).await?;
        }
        from = skip;
    }
    if through > from {
        apply_range_to_rebuild(p, tx, from, through).await?;
    }
    Ok(())
}

async fn apply_range_to_rebuild(
    p: &dyn Projection,
    tx: &mut PgConnection,
    after: Cursor,
    through: Cursor,
) -> Result<(), EngineError> {
    sqlx::query(AssertSqlSafe(format!("SET LOCAL search_path TO {}, public", rebuild_schema(p.name()))))
        .execute(&mut *tx)
        .await?;
    let events = events_for(tx, p, after, through).await?;
    // On failure the transaction is aborted: return the apply's own error, not a later statement's.
    p.apply(tx, &Batch { after, through, events: &events }).await.map_err(|e| match e {
        ApplyError::Database(e) => {
            EngineError::Store(StoreError::InvalidEvent(format!("rebuilding {}: {e}", p.name())))
        }
        ApplyError::Poison { event_id, reason } => {
            EngineError::Store(StoreError::InvalidEvent(format!("rebuilding {}: event {event_id}: {reason}", p.name())))
        }
    })?;
    sqlx::query("SET LOCAL search_path TO public").execute(&mut *tx).await?;
    Ok(())
}

fn rebuild_schema(name: &str) -> String {
    format!("rebuild_{name}")
}
