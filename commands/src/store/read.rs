use super::*;

use sqlx::{postgres::PgRow, AssertSqlSafe, Row};
use uuid::Uuid;

/// [`EventStore::read_after`] on a given connection, so a projection can read inside its own
/// transaction.
pub async fn read_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} \
         WHERE (e.transaction_id, e.global_position) > ($1, $2) \
           AND {READABLE} \
         ORDER BY e.transaction_id, e.global_position LIMIT $3"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

/// The positions (and event ids) of up to `limit` readable events after `after`, in store order:
/// an index-only scan that lets a projection work on a range without fetching the events.
pub async fn read_positions_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<(Cursor, Uuid)>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position, event_id FROM event_log \
         WHERE (transaction_id, global_position) > ($1, $2) AND {READABLE} \
         ORDER BY transaction_id, global_position LIMIT $3"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(|r| (Cursor::from_leading_columns(r), r.get(2))).collect())
}

/// Where a batch of up to `n` readable events after `after` ends, and how many it holds, without
/// fetching them: for rebuilds, whose projections work on ranges.
pub async fn range_end_after(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    n: i64,
) -> Result<Option<(Cursor, i64)>, StoreError> {
    let after_readable = format!("(transaction_id, global_position) > ($1, $2) AND {READABLE}");
    let nth = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position FROM event_log WHERE {after_readable} \
         ORDER BY transaction_id, global_position OFFSET $3 LIMIT 1"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(n - 1)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(r) = nth {
        return Ok(Some((Cursor::from_leading_columns(&r), n)));
    }
    // Fewer than n left: the last of them, and their count.
    let rest = sqlx::query(AssertSqlSafe(format!(
        "SELECT transaction_id, global_position, count(*) OVER () FROM event_log WHERE {after_readable} \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(rest.map(|r| (Cursor::from_leading_columns(&r), r.get(2))))
}

/// The events in `(after, through]` of the given stream types (all types for `None`), in store
/// order. The range must end at a cursor a reader has already seen, so it holds only committed
/// events and reads the same every time.
pub async fn read_range(
    conn: &mut sqlx::PgConnection,
    after: Cursor,
    through: Cursor,
    stream_types: Option<&[&str]>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS_NAMED} \
         WHERE (e.transaction_id, e.global_position) > ($1, $2) AND (e.transaction_id, e.global_position) <= ($3, $4) \
           AND ($5::text[] IS NULL OR st.name = ANY($5)) \
         ORDER BY e.transaction_id, e.global_position"
    )))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(through.transaction_id)
    .bind(through.global_position)
    .bind(stream_types.map(|t| t.to_vec()))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(event_from_row).collect())
}

/// An event from a row of [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &PgRow) -> RecordedEvent {
    let stream_type: String = row.get(3);
    let stream_uuid: Uuid = row.get(4);
    RecordedEvent {
        global_position: row.get(0),
        transaction_id: row.get(1),
        event_id: row.get(2),
        stream_id: format!("{stream_type}-{stream_uuid}"),
        stream_type,
        stream_version: row.get(5),
        event_type: row.get(6),
        schema_version: row.get(7),
        payload: row.get(8),
        metadata: row.get(9),
        recorded_at: row.get(10),
        hash: row.get(11),
    }
}
