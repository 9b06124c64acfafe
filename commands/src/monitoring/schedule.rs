//! The poll schedule (`monitoring_schedule`, see its migration): which servers are due, claimed
//! by one collectors process at a time.

use sqlx::PgPool;
use uuid::Uuid;

/// A server to poll now, and whether its SMART round is due too.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Due {
    pub server_id: Uuid,
    pub interval_secs: i32,
    pub smart_due: bool,
}

/// A server monitoring is enabled for, with its cadences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub server_id: Uuid,
    pub interval_secs: i32,
    pub smart_secs: Option<i32>,
}

/// Makes the schedule hold exactly `wanted`: new servers start at a point of their interval
/// chosen by their id (so a fleet added at once is spread over the interval, not polled in one
/// burst), changed cadences apply from the next poll, servers no longer wanted leave.
pub async fn sync(pool: &PgPool, wanted: &[Wanted]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = wanted.iter().map(|w| w.server_id).collect();
    let intervals: Vec<i32> = wanted.iter().map(|w| w.interval_secs).collect();
    let smart: Vec<Option<i32>> = wanted.iter().map(|w| w.smart_secs).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM monitoring_schedule WHERE NOT (server_id = ANY($1))").bind(&ids).execute(&mut *tx).await?;
    // Rows that need no change are not touched: a claim elsewhere skips locked rows, so a
    // sync that locked every row would make every other process skip the whole fleet.
    sqlx::query(
        "INSERT INTO monitoring_schedule (server_id, interval_secs, smart_secs, next_poll_at) \
         SELECT w.id, w.interval, w.smart, now() + make_interval(secs => abs(hashtext(w.id::text)) % w.interval) \
         FROM unnest($1::uuid[], $2::int[], $3::int[]) AS w(id, interval, smart) \
         WHERE NOT EXISTS (SELECT 1 FROM monitoring_schedule s WHERE s.server_id = w.id) \
         ON CONFLICT (server_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&intervals)
    .bind(&smart)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE monitoring_schedule s SET interval_secs = w.interval, smart_secs = w.smart \
         FROM unnest($1::uuid[], $2::int[], $3::int[]) AS w(id, interval, smart) \
         WHERE s.server_id = w.id AND (s.interval_secs, s.smart_secs) IS DISTINCT FROM (w.interval, w.smart)",
    )
    .bind(&ids)
    .bind(&intervals)
    .bind(&smart)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Claims up to `limit` due servers for `holder`: those it already holds, nobody holds, or
/// whose holder has not renewed for two intervals (it died). A claim moves the server's next
/// poll one interval on (keeping its phase unless it is late) and renews the hold.
pub async fn claim(pool: &PgPool, holder: Uuid, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS ( \
             SELECT server_id, next_smart_at FROM monitoring_schedule \
             WHERE next_poll_at <= now() AND (holder IS NULL OR holder = $1 OR held_until < now()) \
             ORDER BY next_poll_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE monitoring_schedule s SET holder = $1, \
             held_until = now() + make_interval(secs => 2 * s.interval_secs), \
             next_poll_at = CASE WHEN s.next_poll_at + make_interval(secs => s.interval_secs) > now() \
                                 THEN s.next_poll_at + make_interval(secs => s.interval_secs) \
                                 ELSE now() + make_interval(secs => s.interval_secs) END, \
             next_smart_at = CASE WHEN s.smart_secs IS NOT NULL AND (due.next_smart_at IS NULL OR due.next_smart_at <= now()) \
                                  THEN now() + make_interval(secs => s.smart_secs) ELSE s.next_smart_at END \
         FROM due WHERE s.server_id = due.server_id \
         RETURNING s.server_id, s.interval_secs, \
                   (s.smart_secs IS NOT NULL AND (due.next_smart_at IS NULL OR due.next_smart_at <= now())) AS smart_due",
    )
    .bind(holder)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Gives `holder`'s servers up at once (a clean shutdown), so another process need not wait.
pub async fn release(pool: &PgPool, holder: Uuid) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("UPDATE monitoring_schedule SET holder = NULL, held_until = NULL WHERE holder = $1")
        .bind(holder)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Makes a server due now (`collectNow`, a test): its next poll, and SMART too if `smart`.
pub async fn due_now(pool: &PgPool, server_id: Uuid, smart: bool) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE monitoring_schedule SET next_poll_at = now(), next_smart_at = CASE WHEN $2 THEN now() ELSE next_smart_at END \
         WHERE server_id = $1",
    )
    .bind(server_id)
    .bind(smart)
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

/// Who holds each server now, for status and tests.
pub async fn holders(pool: &PgPool) -> Result<Vec<(Uuid, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as("SELECT server_id, holder FROM monitoring_schedule WHERE held_until > now() OR holder IS NULL ORDER BY server_id")
        .fetch_all(pool)
        .await
}

/// Every monitored server, held or not.
pub async fn servers(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT server_id FROM monitoring_schedule ORDER BY server_id").fetch_all(pool).await
}
