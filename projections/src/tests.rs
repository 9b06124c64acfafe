//! The projection engine and read models against a real PostgreSQL.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde_json::json;
use sqlx::PgConnection;
use unity_commands::{
    identity::IdentityCommands,
    store::{EventStore, ExpectedVersion, NewEvent, StreamAppend},
    testing::{eventually, TestDb},
    vault::{MasterKey, Vault},
};
use unity_domain::{
    identity::{LoginFailure, RecordLogin, Role, Username},
    Actor, EventMetadata, StreamId,
};
use uuid::Uuid;

use crate::{
    audit::{audit_log, AuditFilter},
    engine::{ApplyError, Batch, Projection, ProjectionEngine, Step},
    identity::{user_by_username, users},
};

const PASSWORD: &str = "correct horse battery staple";

async fn identity_on(store: &EventStore) -> IdentityCommands {
    let key = MasterKey::from_bytes(&[7u8; 32]);
    IdentityCommands::new(store.clone(), Vault::open(key, store.clone()).await.unwrap())
}

async fn identity(db: &TestDb) -> IdentityCommands {
    identity_on(&db.store()).await
}

fn actor(name: &str) -> EventMetadata {
    unity_commands::metadata(Actor::user(Uuid::now_v7(), name), "test")
}

pub(crate) fn engine(store: &EventStore) -> ProjectionEngine {
    ProjectionEngine::new(store.clone(), crate::all_projections()).with_batch_size(3)
}

/// Catches up, waiting out transactions still open elsewhere in the cluster.
pub(crate) async fn caught_up(engine: &ProjectionEngine, store: &EventStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        engine.catch_up().await.unwrap();
        let status = engine.status().await.unwrap();
        // Counted directly, not below the horizon: every event, committed by anyone.
        let mut behind = 0;
        for s in status.iter().filter(|s| s.state == "running") {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1, $2)")
                    .bind(s.position.transaction_id)
                    .bind(s.position.global_position)
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            behind += n;
        }
        if behind == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "projections never caught up: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn users_and_the_audit_log_follow_the_log() {
    let db = TestDb::new().await;
    let store = db.store();
    let identity = identity(&db).await;
    let engine = engine(&store);
    engine.prepare().await.unwrap();
    let grace = actor("grace");
    let (ada, _) = identity.create_user("ada", PASSWORD, Role::Viewer, &grace).await.unwrap();
    let (bob, _) = identity.create_user("bob", PASSWORD, Role::Operator, &grace).await.unwrap();
    identity.change_role(ada, Role::Admin, &grace).await.unwrap();
    identity.disable_user(bob, Some("left".into()), &grace).await.unwrap();
    let key = identity.issue_api_key(ada, Role::Admin, "ci", Role::Viewer, None, &grace).await.unwrap();
    identity.revoke_api_key(key.key_id, &grace).await.unwrap();
    let attempt = |user_id, outcome| RecordLogin {
        username: Username::parse("ada").unwrap(),
        user_id,
        source: "192.0.2.1".into(),
        outcome,
    };
    identity.record_login(attempt(Some(ada), Err(LoginFailure::WrongPassword)), &grace).await.unwrap();
    identity.record_login(attempt(Some(ada), Err(LoginFailure::WrongPassword)), &grace).await.unwrap();
    identity.record_login(attempt(Some(ada), Ok(())), &grace).await.unwrap();
    identity.record_login(attempt(None, Err(LoginFailure::UnknownUser)), &grace).await.unwrap();
    caught_up(&engine, &store).await;

    let ada_row = user_by_username(&db.pool, "ADA").await.unwrap().unwrap();
    assert_eq!((ada_row.role.as_str(), ada_row.disabled), ("ADMIN", false));
    assert_eq!(ada_row.failed_logins, 2);
    assert!(ada_row.last_login_at.is_some());
    let all = users(&db.pool, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|u| (u.username.as_str(), u.disabled)).collect::<Vec<_>>(),
        [("ada", false), ("bob", true)]
    );
    let revoked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1")
            .bind(key.key_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(revoked.is_some());

    let entries = audit_log(&db.pool, &AuditFilter::default(), None, 100).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&db.pool).await.unwrap();
    assert_eq!(entries.len() as i64, events);
    assert!(entries.iter().all(|e| e.actor_name.as_deref() == Some("grace")));
    assert!(!serde_json::to_string(&entries).unwrap().contains(PASSWORD));

    // Re-running changes nothing.
    assert_eq!(engine.catch_up().await.unwrap(), 0);
}

#[tokio::test]
async fn the_audit_log_filters_by_stream_type_actor_and_time_and_pages() {
    let db = TestDb::new().await;
    let store = db.store();
    let identity = identity(&db).await;
    let engine = engine(&store);
    engine.prepare().await.unwrap();
    let (grace, linus) = (actor("grace"), actor("linus"));
    let (ada, _) = identity.create_user("ada", PASSWORD, Role::Viewer, &grace).await.unwrap();
    let before_linus = chrono::Utc::now();
    identity.change_role(ada, Role::Operator, &linus).await.unwrap();
    identity.create_user("bob", PASSWORD, Role::Viewer, &linus).await.unwrap();
    caught_up(&engine, &store).await;

    let query = |filter: AuditFilter| {
        let pool = db.pool.clone();
        async move { audit_log(&pool, &filter, None, 100).await.unwrap() }
    };
    let ada_stream = query(AuditFilter { stream_id: Some(format!("user-{ada}")), ..Default::default() }).await;
    assert_eq!(
        ada_stream.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["UserCreated", "UserRoleChanged"]
    );
    let by_type = query(AuditFilter { event_types: vec!["UsernameReserved".into()], ..Default::default() }).await;
    assert_eq!(by_type.len(), 2);
    let linus_id = linus.actor.id.unwrap().to_string();
    let by_actor = query(AuditFilter { actor_id: Some(linus_id.clone()), ..Default::default() }).await;
    assert_eq!(by_actor.len(), 3);
    assert!(by_actor.iter().all(|e| e.actor_id.as_deref() == Some(linus_id.as_str())));
    let since = query(AuditFilter { from: Some(before_linus), ..Default::default() }).await;
    assert_eq!(since.len(), 3);
    let users_only = query(AuditFilter { stream_type: Some("user".into()), ..Default::default() }).await;
    assert_eq!(users_only.len(), 3);

    let first = audit_log(&db.pool, &AuditFilter::default(), None, 2).await.unwrap();
    let rest = audit_log(&db.pool, &AuditFilter::default(), Some(first[1].seq), 100).await.unwrap();
    assert_eq!(first.len() + rest.len(), 5);
    assert!(rest[0].seq > first[1].seq);
}

/// A test projection: records every event's id, and refuses events whose payload says poison.
struct Picky {
    version: i32,
}

impl Projection for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }
    fn model_version(&self) -> i32 {
        self.version
    }
    fn tables(&self) -> &'static [&'static str] {
        &["picky_seen"]
    }
    fn create_tables(&self) -> &'static [&'static str] {
        &["CREATE TABLE picky_seen (event_id uuid PRIMARY KEY)"]
    }
    fn create_indexes(&self) -> &'static [&'static str] {
        &[]
    }
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in batch.events {
                // Write first, then refuse: the write must be rolled back with the batch.
                sqlx::query("INSERT INTO picky_seen VALUES ($1)").bind(e.event_id).execute(&mut *conn).await?;
                if e.payload.get("poison").is_some() {
                    return Err(ApplyError::Poison { event_id: e.event_id, reason: "poison pill".into() });
                }
            }
            Ok(())
        })
    }
}

async fn append_things(store: &EventStore, payloads: &[serde_json::Value]) -> Vec<Uuid> {
    let mut ids = vec![];
    for p in payloads {
        let e = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ThingHappened".into(),
            schema_version: 1,
            payload: p.clone(),
            metadata: serde_json::to_value(actor("test")).unwrap().into(),
        };
        ids.push(e.event_id);
        store
            .append(vec![StreamAppend {
                stream_id: StreamId::new("thing", Uuid::now_v7()),
                expected: ExpectedVersion::NoStream,
                events: vec![e],
            }])
            .await
            .unwrap();
    }
    ids
}

async fn seen(db: &TestDb) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM picky_seen ORDER BY event_id").fetch_all(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_poison_event_stops_its_projection_with_the_reason_and_can_be_retried_or_skipped() {
    let db = TestDb::new().await;
    let store = db.store();
    let engine = ProjectionEngine::new(store.clone(), vec![Arc::new(Picky { version: 1 })]).with_batch_size(10);
    engine.prepare().await.unwrap();
    let ids = append_things(&store, &[json!({}), json!({}), json!({"poison": true}), json!({})]).await;
    // The whole batch fails; the engine applies the two good events before the poison one, alone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.status().await.unwrap()[0].state == "running" {
        engine.catch_up().await.unwrap();
        assert!(tokio::time::Instant::now() < deadline);
    }
    let status = &engine.status().await.unwrap()[0];
    assert_eq!(
        (status.state.as_str(), status.error.as_deref(), status.error_event_id),
        ("stopped", Some("poison pill"), Some(ids[2]))
    );
    assert_eq!(status.events_handled, 2);
    assert_eq!(seen(&db).await, ids[..2].to_vec(), "the poison event's own write was rolled back");
    assert_eq!(engine.run_once(&Picky { version: 1 }).await.unwrap(), Step::Stopped);
    let stopped: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ProjectionStopped'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stopped, 1, "the stop is an event, for alerts and the audit log");

    // Retrying meets the same poison.
    engine.retry("picky", &actor("ops")).await.unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(engine.status().await.unwrap()[0].state, "stopped");

    // Skipping passes it, on the record, and the rest follows.
    assert_eq!(engine.skip("picky", &actor("ops")).await.unwrap(), Some(ids[2]));
    caught_up(&engine, &store).await;
    let status = &engine.status().await.unwrap()[0];
    assert_eq!((status.state.as_str(), status.lag), ("running", 0));
    let seen_now = seen(&db).await;
    assert!(seen_now.contains(&ids[3]) && !seen_now.contains(&ids[2]));
    assert!(engine.retry("nope", &actor("ops")).await.is_err(), "unknown projection names are refused");

    // A rebuild honours the skip on the record: the same read model, not the same poison.
    let picky: Arc<dyn Projection> = Arc::new(Picky { version: 1 });
    engine.rebuild(&[picky], |_, _| {}).await.expect("a rebuild after a skip");
    assert_eq!(seen(&db).await, seen_now, "rebuilt without the skipped event");
    assert_eq!(engine.status().await.unwrap()[0].state, "running");
}

#[tokio::test]
async fn a_changed_model_version_rebuilds_at_start_up() {
    let db = TestDb::new().await;
    let store = db.store();
    let ids = append_things(&store, &[json!({}), json!({})]).await;
    let v1 = ProjectionEngine::new(store.clone(), vec![Arc::new(Picky { version: 1 })]);
    v1.prepare().await.unwrap();
    v1.catch_up().await.unwrap();
    sqlx::query("DELETE FROM picky_seen").execute(&db.pool).await.unwrap(); // lose the read model
    let v2 = ProjectionEngine::new(store.clone(), vec![Arc::new(Picky { version: 2 })]);
    v2.prepare().await.unwrap();
    // The rebuild reads what is readable; a transaction left open elsewhere in the cluster can
    // hold that back, and the rebuilt checkpoint then lets the projection catch up after it. A
    // projection that was not rebuilt never gets the deleted rows back: its checkpoint is past them.
    eventually(Duration::from_secs(30), "the read model rebuilt from the log", || async {
        v2.catch_up().await.unwrap();
        let rebuilt = seen(&db).await;
        ids.iter().all(|id| rebuilt.contains(id)).then_some(())
    })
    .await;
    let version: i32 = sqlx::query_scalar("SELECT model_version FROM checkpoints WHERE name = 'picky'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn a_rebuild_swaps_in_identical_tables_while_writes_go_on() {
    let db = TestDb::new().await;
    let store = db.store();
    let identity = identity(&db).await;
    let engine = engine(&store);
    engine.prepare().await.unwrap();
    for name in ["ada", "bob", "cyd"] {
        let (id, _) = identity.create_user(name, PASSWORD, Role::Viewer, &actor("grace")).await.unwrap();
        identity.change_role(id, Role::Operator, &actor("grace")).await.unwrap();
    }
    caught_up(&engine, &store).await;
    let snapshot = |pool: sqlx::PgPool| async move {
        let users: Vec<(Uuid, String, String, i64)> =
            sqlx::query_as("SELECT id, username, role, version FROM users ORDER BY id").fetch_all(&pool).await.unwrap();
        let audit: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM audit_log ORDER BY seq").fetch_all(&pool).await.unwrap();
        (users, audit)
    };
    let before = snapshot(db.pool.clone()).await;

    // Writers keep appending during the rebuild; nothing may be lost or doubled.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { append_things(&store, &[json!({}), json!({}), json!({}), json!({})]).await })
    };
    let mut reports = 0;
    engine.rebuild(engine.projections(), |_, _| reports += 1).await.unwrap();
    writer.await.unwrap();
    caught_up(&engine, &store).await;
    assert!(reports > 0);
    let after = snapshot(db.pool.clone()).await;
    assert_eq!(after.0, before.0, "users rebuilt identically");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&db.pool).await.unwrap();
    let distinct: std::collections::HashSet<_> = after.1.iter().collect();
    assert_eq!((after.1.len() as i64, distinct.len() as i64), (total, total), "every event once in the audit log");
    let leftover: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(leftover, 0);
}

#[tokio::test]
async fn an_append_wakes_the_engine_without_waiting_for_the_poll_even_before_it_is_readable() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    let store = db.store();
    let engine = engine(&store);
    engine.prepare().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Polling once an hour: only the appends' wake-ups can bring their events in.
    let worker = tokio::spawn(engine.clone().run(stopped, Duration::from_secs(3600)));
    let identity = identity_on(&store).await;
    let (_, appended) = identity.create_user("ada", PASSWORD, Role::Viewer, &actor("grace")).await.unwrap();
    assert!(
        engine.wait_for(appended.last, Duration::from_secs(20)).await.unwrap(),
        "read-your-writes within the bound"
    );
    assert!(user_by_username(&db.pool, "ada").await.unwrap().is_some());

    // A transaction older than the next append, still open: that event is committed but not
    // readable when its wake-up arrives.
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut blocker).await.unwrap();
    let (_, appended) = identity.create_user("bob", PASSWORD, Role::Viewer, &actor("grace")).await.unwrap();
    assert!(
        !engine.wait_for(appended.last, Duration::from_millis(300)).await.unwrap(),
        "held back by the open transaction"
    );
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    assert!(
        engine.wait_for(appended.last, Duration::from_secs(20)).await.unwrap(),
        "applied once readable, without another wake-up"
    );
    stop.send(true).unwrap();
    worker.await.unwrap();
}

#[tokio::test]
async fn lag_counts_what_is_not_yet_applied() {
    let db = TestDb::new().await;
    let store = db.store();
    let engine = ProjectionEngine::new(store.clone(), vec![Arc::new(Picky { version: 1 })]).with_batch_size(2);
    engine.prepare().await.unwrap();
    append_things(&store, &[json!({}), json!({}), json!({}), json!({}), json!({})]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.status().await.unwrap()[0].lag < 5 {
        assert!(tokio::time::Instant::now() < deadline, "events never became readable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.run_once(&Picky { version: 1 }).await.unwrap(), Step::Applied(2));
    assert_eq!(engine.status().await.unwrap()[0].lag, 3);
}

#[tokio::test]
async fn two_rebuilds_of_one_projection_take_turns() {
    let db = TestDb::new().await;
    let store = db.store();
    let engine = engine(&store);
    engine.prepare().await.unwrap();
    append_things(&store, &[json!({}), json!({}), json!({})]).await;
    caught_up(&engine, &store).await;
    let (a, b) =
        tokio::join!(engine.rebuild(engine.projections(), |_, _| {}), engine.rebuild(engine.projections(), |_, _| {}));
    a.unwrap();
    b.unwrap();
    caught_up(&engine, &store).await;
    let (rows, distinct, total): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id), (SELECT count(*) FROM events) FROM audit_log")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (total, total), "every event once after two concurrent rebuilds");
}
