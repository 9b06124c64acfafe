//! The event store's guarantees (DESIGN.md §2), each with a test that fails if it is lost.

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde_json::json;
use sqlx::Connection;
use tokio::sync::{Barrier, Notify};
use unity_domain::{
    identity::{Role, User, UserEvent, UserState},
    Actor, StreamId,
};
use uuid::Uuid;

use crate::{
    handler::load,
    integrity::{seal, verify},
    store::{Cursor, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend},
    testing::eventually,
    testing::TestDb,
};

pub(crate) fn event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        payload,
        metadata: serde_json::to_value(crate::metadata(Actor::system("test"), "test")).unwrap().into(),
    }
}

pub(crate) fn append(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend { stream_id: stream.clone(), expected, events }]
}

fn stream(kind: &str) -> StreamId {
    StreamId::new(kind, Uuid::now_v7())
}

async fn count(store: &EventStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap()
}

/// Every event in store order, read directly: after the fact, with no horizon to wait for.
async fn read_all(store: &EventStore) -> Vec<crate::store::RecordedEvent> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM {} ORDER BY e.transaction_id, e.global_position",
        crate::store::EVENT_COLUMNS,
        crate::store::EVENTS_NAMED
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(crate::store::event_from_row)
    .collect()
}

#[tokio::test]
async fn a_stale_expected_version_conflicts_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("thing");
    store.append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap();
    let err =
        store.append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 1, .. }), "{err:?}");
    let err = store
        .append(append(&s, ExpectedVersion::Exactly(3), vec![event("ThingChanged", json!({}))]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(count(&store).await, 1);
    store.append(append(&s, ExpectedVersion::Exactly(1), vec![event("ThingChanged", json!({}))])).await.unwrap();
    assert_eq!(store.read_stream(&s.to_string(), None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn racing_writers_on_one_stream_get_exactly_one_winner_per_version() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("thing");
    let barrier = Arc::new(Barrier::new(8));
    let attempts = (0..8).map(|_| {
        let (store, s, barrier) = (store.clone(), s.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            store.append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(winners, 1);
    assert!(results.iter().all(|r| matches!(r.as_ref().unwrap(), Ok(_) | Err(StoreError::Conflict { .. }))));
    assert_eq!(count(&store).await, 1);
}

#[tokio::test]
async fn all_events_of_one_append_commit_together_or_not_at_all() {
    let db = TestDb::new().await;
    let store = db.store();
    let (a, b) = (stream("thing"), stream("thing"));
    store.append(append(&b, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap();
    // Two streams, the second with a stale expectation: nothing of the first may land.
    let mut batch =
        append(&a, ExpectedVersion::NoStream, vec![event("ThingMade", json!({})), event("ThingChanged", json!({}))]);
    batch.extend(append(&b, ExpectedVersion::NoStream, vec![event("ThingChanged", json!({}))]));
    assert!(matches!(store.append(batch).await, Err(StoreError::Conflict { .. })));
    assert_eq!(count(&store).await, 1);
    // A failure at the database (a NUL byte JSONB refuses) must not leave half a batch either.
    let mut batch = append(&a, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]);
    batch.extend(append(&b, ExpectedVersion::Exactly(1), vec![event("ThingChanged", json!({"bad": "nul\u{0}"}))]));
    assert!(matches!(store.append(batch).await, Err(StoreError::InvalidEvent(_))));
    assert_eq!(count(&store).await, 1);
    // And a good multi-stream batch lands whole, in one transaction.
    let mut batch = append(&a, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]);
    batch.extend(append(&b, ExpectedVersion::Exactly(1), vec![event("ThingChanged", json!({}))]));
    let appended = store.append(batch).await.unwrap();
    assert_eq!(count(&store).await, 3);
    let in_that_transaction: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE transaction_id = $1")
        .bind(appended.last.transaction_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(in_that_transaction, 2);
}

/// 16 writers whose transactions commit out of order — four of them hold theirs open while the
/// others commit after them — and a reader polling throughout: it must see every event exactly
/// once, in the order a fresh read gives at the end.
#[tokio::test]
async fn a_polling_reader_never_skips_events_committed_out_of_order() {
    let db = TestDb::new().await;
    let store = db.store();
    const WRITERS: usize = 16;
    const HOLDERS: usize = 4;
    const EVENTS_EACH: usize = 25;
    let release = Arc::new(Notify::new());
    // Holders insert first; everyone else starts after, so every free writer's transaction id
    // is above every holder's and must stay invisible until the holders commit.
    let start = Arc::new(Barrier::new(WRITERS + 1));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, release, start) = (store.clone(), release.clone(), start.clone());
        writers.push(tokio::spawn(async move {
            let s = stream("load");
            if w < HOLDERS {
                // Takes its transaction id and positions first, commits last.
                let mut conn = sqlx::PgConnection::connect(&db_url(&store)).await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                let events = (0..EVENTS_EACH).map(|i| event("LoadRecorded", json!({"writer": w, "i": i}))).collect();
                store.append_in(&mut tx, &append(&s, ExpectedVersion::NoStream, events)).await.unwrap();
                let released = release.notified();
                start.wait().await;
                released.await;
                tx.commit().await.unwrap();
            } else {
                start.wait().await;
                for i in 0..EVENTS_EACH {
                    let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exactly(i as i64) };
                    store
                        .append(append(&s, expected, vec![event("LoadRecorded", json!({"writer": w, "i": i}))]))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    start.wait().await;

    let total = WRITERS * EVENTS_EACH;
    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    let mut released = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(tokio::time::Instant::now() < deadline, "reader stuck at {} of {total}", seen.len());
        let batch = store.read_after(cursor, 7).await.unwrap();
        if let Some(last) = batch.last() {
            cursor = last.cursor();
        }
        for e in &batch {
            assert!(
                e.payload["writer"].as_u64().unwrap() >= HOLDERS as u64 || released,
                "an uncommitted holder's event was read"
            );
        }
        seen.extend(batch.iter().map(|e| (e.event_id, e.cursor())));
        let free_writers_done = writers[HOLDERS..].iter().all(|w| w.is_finished());
        if !released && free_writers_done && batch.is_empty() {
            // While the holders' transactions are open, nothing committed after them is visible.
            assert!(seen.is_empty(), "the reader passed a transaction that had not committed: saw {}", seen.len());
            released = true;
            release.notify_waiters();
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let ids: HashSet<_> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), total, "every event exactly once");
    let fresh: Vec<_> = read_all(&store).await.iter().map(|e| (e.event_id, e.cursor())).collect();
    assert_eq!(seen, fresh, "the order is stable");
}

fn db_url(store: &EventStore) -> String {
    let options = store.pool().connect_options();
    format!(
        "postgres://{}:unity@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("thing");
    store.append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({"n": 1}))])).await.unwrap();
    // The application's own role lacks the privilege…
    for statement in [
        "UPDATE event_log SET payload = '{}'",
        "DELETE FROM event_log",
        "TRUNCATE event_log",
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "DELETE FROM seals",
        "UPDATE stream_types SET name = 'x'",
        "DELETE FROM event_types",
    ] {
        let err = sqlx::query(statement).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{statement}: {err}");
    }
    // …and even a superuser meets the trigger.
    let mut su = db.superuser().await;
    for statement in [
        "UPDATE event_log SET payload = '{}'",
        "DELETE FROM event_log",
        "TRUNCATE event_log",
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "UPDATE stream_types SET name = 'x'",
    ] {
        let err = sqlx::query(statement).execute(&mut su).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    assert_eq!(read_all(&store).await[0].payload, json!({"n": 1}));
}

/// Payloads whose JSON JSONB rewrites (key order, number spelling, unicode) still verify.
pub(crate) fn awkward_payload(i: usize) -> serde_json::Value {
    let mut payload: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"zeta": {i}, "alpha": 1e16, "float": 0.1, "neg": -0.0, "big": 18446744073709551615,
            "text": "héllo \u00e9 \ud83d\ude00 \"quoted\" \\ back", "nested": {{"b": [1.50, 2e-7], "a": null}}}}"#
    ))
    .unwrap();
    // Measured floats, as collectors will record them: each must parse back to the same f64
    // (serde_json's default float parsing is off by one unit in the last place for some).
    let measured: Vec<f64> =
        (1..200).map(|n| ((n * (i + 3)) as f64 * 0.7310585786300049).sqrt() * 1000.0 / 7.0 + 0.1 + 0.2).collect();
    payload["measured"] = json!(measured);
    payload
}

pub(crate) async fn seeded(db: &TestDb) -> (EventStore, Vec<StreamId>) {
    let store = db.store();
    let streams: Vec<StreamId> = (0..3).map(|_| stream("thing")).collect();
    for s in &streams {
        let events = (0..4).map(|i| event("ThingChanged", awkward_payload(i))).collect();
        store.append(append(s, ExpectedVersion::NoStream, events)).await.unwrap();
    }
    seal_all(&store).await;
    (store, streams)
}

/// Seals until the seals cover every event. A seal stops below any transaction still open in the
/// cluster (another test's, say), so this waits for that rather than assuming it.
pub(crate) async fn seal_all(store: &EventStore) {
    eventually(Duration::from_secs(30), "seals covering every event", || async {
        seal(store.pool()).await.unwrap();
        let through: Option<(i64, i64)> = sqlx::query_as(
            "SELECT through_transaction_id, through_position FROM seals ORDER BY seal_number DESC LIMIT 1",
        )
        .fetch_optional(store.pool())
        .await
        .unwrap();
        // No seal yet means nothing is sealed, however many events there are.
        let (t, p) = through.unwrap_or((-1, -1));
        let unsealed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1, $2)")
                .bind(t)
                .bind(p)
                .fetch_one(store.pool())
                .await
                .unwrap();
        (unsealed == 0).then_some(())
    })
    .await;
}

pub(crate) async fn tamper(db: &TestDb, statement: &str, stream: &StreamId) {
    let mut su = db.superuser().await;
    sqlx::query("SET session_replication_role = replica").execute(&mut su).await.unwrap();
    let done =
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).bind(stream.to_string()).execute(&mut su).await.unwrap();
    assert!(done.rows_affected() > 0, "tampering changed nothing: {statement}");
}

#[tokio::test]
async fn verify_passes_on_an_honest_log_with_awkward_json() {
    let db = TestDb::new().await;
    let (store, _) = seeded(&db).await;
    // More events after the seal, and a second seal over only those.
    let seals_before: i64 = sqlx::query_scalar("SELECT count(*) FROM seals").fetch_one(store.pool()).await.unwrap();
    store
        .append(append(&stream("other"), ExpectedVersion::NoStream, vec![event("OtherThing", awkward_payload(9))]))
        .await
        .unwrap();
    seal_all(&store).await;
    assert!(seal(store.pool()).await.unwrap().is_none(), "nothing new, no seal");
    let last_heads: serde_json::Value = sqlx::query_scalar("SELECT heads FROM seals ORDER BY seal_number DESC LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(last_heads.as_array().unwrap().len(), 1, "a seal records only the streams changed since the last");
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
    assert_eq!((report.events_checked, report.streams_checked, report.seals_checked), (13, 4, seals_before as u64 + 1));
}

#[tokio::test]
async fn verify_names_a_changed_payload() {
    let db = TestDb::new().await;
    let (store, streams) = seeded(&db).await;
    tamper(
        &db,
        r#"UPDATE events SET payload = jsonb_set(payload::jsonb, '{zeta}', '99')::json WHERE stream_id = $1 AND stream_version = 2"#,
        &streams[1],
    )
    .await;
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
    assert_eq!((report.breaks[0].stream_id.as_str(), report.breaks[0].version), (streams[1].to_string().as_str(), 2));
    assert!(report.breaks[0].reason.contains("altered"));
}

#[tokio::test]
async fn verify_names_an_event_removed_from_the_middle() {
    let db = TestDb::new().await;
    let (store, streams) = seeded(&db).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1 AND stream_version = 3", &streams[0]).await;
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert_eq!(
        (report.breaks[0].stream_id.clone(), report.breaks[0].version),
        (streams[0].to_string(), 3),
        "{:?}",
        report.breaks
    );
}

#[tokio::test]
async fn verify_names_events_cut_from_the_end_of_a_stream() {
    let db = TestDb::new().await;
    let (store, streams) = seeded(&db).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1 AND stream_version >= 3", &streams[2]).await;
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert_eq!(
        (report.breaks[0].stream_id.clone(), report.breaks[0].version),
        (streams[2].to_string(), 3),
        "{:?}",
        report.breaks
    );
    assert!(report.breaks[0].reason.contains("recorded version 4"));
}

#[tokio::test]
async fn verify_names_a_whole_stream_removed() {
    let db = TestDb::new().await;
    let (store, streams) = seeded(&db).await;
    tamper(&db, "DELETE FROM events WHERE stream_id = $1", &streams[1]).await;
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
    assert_eq!(report.breaks[0].stream_id, streams[1].to_string());
    assert!(report.breaks[0].reason.contains("whole stream is missing"));
}

#[tokio::test]
async fn verify_notices_a_rewritten_chain_that_the_seal_contradicts() {
    let db = TestDb::new().await;
    let (store, streams) = seeded(&db).await;
    // A careful attacker changes the last event and recomputes its hash: the chain is whole
    // again, but the seal remembers the old head.
    let mut events = store.read_stream(&streams[0].to_string(), None).await.unwrap();
    let before = events[events.len() - 2].hash.clone();
    let last = events.last_mut().unwrap();
    last.payload["zeta"] = json!(1000);
    let forged = last.compute_hash(&before);
    let mut su = db.superuser().await;
    sqlx::query("SET session_replication_role = replica").execute(&mut su).await.unwrap();
    sqlx::query("UPDATE events SET payload = $1, hash = $2 WHERE event_id = $3")
        .bind(&last.payload)
        .bind(forged.as_slice())
        .bind(last.event_id)
        .execute(&mut su)
        .await
        .unwrap();
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert_eq!(
        (report.breaks[0].stream_id.clone(), report.breaks[0].version),
        (streams[0].to_string(), 4),
        "{:?}",
        report.breaks
    );
    assert!(report.breaks[0].reason.contains("seal #"));
}

#[tokio::test]
async fn an_old_schema_version_is_upcast_on_read() {
    let db = TestDb::new().await;
    let store = db.store();
    let user_id = Uuid::now_v7();
    let s = StreamId::new("user", user_id);
    // Written by the 0.0 prototype: lower-case role, the hash under `password`.
    let mut v1 = event(
        "UserCreated",
        json!({"user_id": user_id, "username": "ada", "role": "operator",
               "password": {"secret_id": Uuid::now_v7(), "ciphertext": "AAAA"}}),
    );
    v1.schema_version = 1;
    store.append(append(&s, ExpectedVersion::NoStream, vec![v1])).await.unwrap();
    let stored = &store.read_stream(&s.to_string(), None).await.unwrap()[0];
    assert_eq!((stored.schema_version, stored.payload["role"].as_str()), (1, Some("operator")), "stored as written");
    let decoded: UserEvent = stored.decode().unwrap();
    assert!(matches!(decoded, UserEvent::UserCreated { role: Role::Operator, .. }));
    let (state, version) = load::<User>(&store, &s).await.unwrap();
    assert!(matches!(state, UserState::Active { role: Role::Operator, .. }));
    assert_eq!(version, 1);
    assert!(verify(store.pool(), |_| {}).await.unwrap().ok());
}

/// Appends reach other processes as `unity_events` notifications, coalesced: a burst of appends
/// gives a few, quiet gives none, and hints heard from others are not echoed.
#[tokio::test]
async fn appends_are_announced_to_other_processes_coalesced() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen("unity_events").await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let announcer = tokio::spawn(crate::store::announce_appends(store.clone(), Duration::from_millis(50), stopped));
    for i in 0..40 {
        store
            .append(append(&stream("thing"), ExpectedVersion::NoStream, vec![event("ThingMade", json!({"i": i}))]))
            .await
            .unwrap();
    }
    let mut heard = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
        heard += 1;
    }
    assert!((1..40).contains(&heard), "a burst of 40 appends gave {heard} notifications");
    // Hints from elsewhere wake readers but are not announced again.
    store.wakeup().notify_external();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv()).await.is_err(),
        "an external hint was echoed"
    );
    stop.send(true).unwrap();
    announcer.await.unwrap();
}
