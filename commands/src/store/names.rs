//! Stream and event type names, interned: each row of `event_log` carries a two-byte key for its
//! stream type and its event type instead of the names.
//!
//! A name gets its key once, in `stream_types` or `event_types`, by a statement of its own
//! committed before any row uses the key (so a key in the log always has its name, though the
//! insert that wanted it may roll back). Keys never change, so each process keeps the ones it
//! has seen; readers join the two small tables.

use std::{collections::HashMap, sync::RwLock};

use sqlx::{AssertSqlSafe, PgPool};

use super::{StoreError, StreamAppend};

type Keys = HashMap<String, i16, foldhash::fast::RandomState>;

#[derive(Default)]
pub(crate) struct Names {
    stream_types: RwLock<Keys>,
    event_types: RwLock<Keys>,
}

impl Names {
    /// Makes sure every stream and event type of `appends` has a key here.
    pub(crate) async fn intern(&self, pool: &PgPool, appends: &[StreamAppend]) -> Result<(), StoreError> {
        let (mut streams, mut events) = (Vec::new(), Vec::new());
        {
            let (known_streams, known_events) = (read(&self.stream_types), read(&self.event_types));
            for a in appends {
                let t = a.stream_id.stream_type();
                if !known_streams.contains_key(t) && !streams.contains(&t) {
                    streams.push(t);
                }
                for e in &a.events {
                    let t = e.event_type.as_str();
                    if !known_events.contains_key(t) && !events.contains(&t) {
                        events.push(t);
                    }
                }
            }
        }
        if !streams.is_empty() {
            let keys = keys_of(pool, "stream_types", &streams).await?;
            self.stream_types.write().expect("names lock").extend(keys);
        }
        if !events.is_empty() {
            let keys = keys_of(pool, "event_types", &events).await?;
            self.event_types.write().expect("names lock").extend(keys);
        }
        Ok(())
    }

    /// The key of a stream type [`Names::intern`] has seen.
    pub(crate) fn stream_type(&self, name: &str) -> i16 {
        *read(&self.stream_types).get(name).expect("stream type interned before planning")
    }

    /// The key of an event type [`Names::intern`] has seen.
    pub(crate) fn event_type(&self, name: &str) -> i16 {
        *read(&self.event_types).get(name).expect("event type interned before planning")
    }
}

fn read(map: &RwLock<Keys>) -> std::sync::RwLockReadGuard<'_, Keys> {
    map.read().expect("names lock")
}

/// Each name's key, given one first where it has none (committed on its own).
async fn keys_of(pool: &PgPool, table: &str, names: &[&str]) -> Result<Vec<(String, i16)>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (name) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (name) DO NOTHING"
    )))
    .bind(names)
    .execute(pool)
    .await?;
    sqlx::query_as(AssertSqlSafe(format!("SELECT name, key FROM {table} WHERE name = ANY($1)")))
        .bind(names)
        .fetch_all(pool)
        .await
}
