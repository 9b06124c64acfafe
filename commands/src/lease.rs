//! The single-active-consumer lease and its checkpoint, shared by the NATS relay and the
//! reactors: a session advisory lock named after the checkpoint, held on a connection detached
//! from the pool (dropping it closes the session and frees the lock instead of parking it in
//! the pool), and checkpoint writes made on that same connection, so a consumer that lost its
//! lease cannot move the checkpoint.

use sqlx::{PgConnection, PgPool};

use crate::store::{range_end_after, read_range, Cursor, RecordedEvent, StoreError};

/// The leases of the reactors the collectors role runs (their checkpoints have the same names).
pub const SSH_REACTOR: &str = "reactor:ssh";
pub const ACME_REACTOR: &str = "reactor:acme";

/// Whether some session, in any process, holds the lease `name` now. (The lock of
/// `pg_try_advisory_lock(k)` for a bigint `k` shows in pg_locks as classid = the high and objid
/// = the low 32 bits of `k`, objsubid 1.)
pub async fn is_held(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid \
           AND objid = (hashtext($1)::bigint & 4294967295)::oid)",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}

pub struct Lease {
    name: String,
    conn: Option<PgConnection>,
}

impl Lease {
    pub fn new(name: impl Into<String>) -> Lease {
        Lease { name: name.into(), conn: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn held(&self) -> bool {
        self.conn.is_some()
    }

    /// Tries to take the lease. Returns whether it is held now.
    pub async fn acquire(&mut self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        if self.conn.is_some() {
            return Ok(true);
        }
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await?;
        if got {
            self.conn = Some(conn);
        }
        Ok(got)
    }

    /// The lease's connection, while held.
    pub fn connection(&mut self) -> Option<&mut PgConnection> {
        self.conn.as_mut()
    }

    /// Gives the lease up (after an error on its connection, say).
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// The next batch (up to `n` events, of `stream_types` only) after this consumer's
    /// checkpoint: the cursor it ends at, how many events it spans in all, and the matching
    /// events. `None` when another process holds the lease or nothing is new.
    pub async fn next_batch(
        &mut self,
        pool: &PgPool,
        stream_types: &[&str],
        n: i64,
    ) -> Result<Option<(Cursor, i64, Vec<RecordedEvent>)>, StoreError> {
        if !self.acquire(pool).await.map_err(StoreError::from)? {
            return Ok(None);
        }
        let after = checkpoint(pool, &self.name).await.map_err(StoreError::from)?;
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        let Some((through, count)) = range_end_after(&mut conn, after, n).await? else {
            return Ok(None);
        };
        let events = read_range(&mut conn, after, through, Some(stream_types)).await?;
        Ok(Some((through, count, events)))
    }

    /// Moves the checkpoint, on the lease's connection. `Ok(false)`: the lease is not held.
    /// A database error releases the lease.
    pub async fn commit(&mut self, cursor: Cursor) -> Result<bool, sqlx::Error> {
        let Some(conn) = self.conn.as_mut() else { return Ok(false) };
        let result = sqlx::query(UPSERT_CHECKPOINT)
            .bind(&self.name)
            .bind(cursor.transaction_id)
            .bind(cursor.global_position)
            .execute(&mut *conn)
            .await;
        if let Err(e) = result {
            self.conn = None;
            return Err(e);
        }
        Ok(true)
    }
}

const UPSERT_CHECKPOINT: &str =
    "INSERT INTO checkpoints (name, transaction_id, global_position, updated_at) VALUES ($1, $2, $3, now()) \
     ON CONFLICT (name) DO UPDATE SET transaction_id = $2, global_position = $3, updated_at = now()";

/// Where the consumer named `name` has got to (the start if it never ran).
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Cursor, sqlx::Error> {
    let row = sqlx::query("SELECT transaction_id, global_position FROM checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| Cursor::from_leading_columns(&r)).unwrap_or_default())
}

/// Moves a checkpoint without holding the lease (to skip history on purpose).
pub async fn set_checkpoint(pool: &PgPool, name: &str, cursor: Cursor) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_CHECKPOINT)
        .bind(name)
        .bind(cursor.transaction_id)
        .bind(cursor.global_position)
        .execute(pool)
        .await?;
    Ok(())
}
