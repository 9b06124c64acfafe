//! Group commit: appends that wait while another is written share one statement, and each keeps
//! its own outcome.

use std::time::Duration;

use serde_json::json;
use unity_domain::StreamId;
use uuid::Uuid;

use super::store::{append, event};
use crate::{
    integrity::verify,
    store::{Appended, EventStore, ExpectedVersion, GroupCommit, StoreError, StreamAppend},
    testing::{eventually, TestDb},
};

fn stream() -> StreamId {
    StreamId::new("thing", Uuid::now_v7())
}

/// Queues `appends` behind held commits, one at a time so the queue keeps their order.
async fn queue(
    store: &EventStore,
    appends: Vec<Vec<StreamAppend>>,
) -> Vec<tokio::task::JoinHandle<Result<Appended, StoreError>>> {
    let mut tasks = Vec::new();
    for (i, batch) in appends.into_iter().enumerate() {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.append(batch).await }));
        eventually(Duration::from_secs(10), "the append to queue", || async {
            (store.queued_appends() == i + 1).then_some(())
        })
        .await;
    }
    tasks
}

async fn outcomes(
    tasks: Vec<tokio::task::JoinHandle<Result<Appended, StoreError>>>,
) -> Vec<Result<Appended, StoreError>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn appends_that_wait_share_one_statement_and_each_keeps_its_own_outcome() {
    let db = TestDb::new().await;
    let store = db.store();
    let (a, b, c) = (stream(), stream(), stream());
    store.append(append(&c, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap();

    let held = store.hold_commits().await;
    let tasks = queue(
        &store,
        vec![
            append(
                &a,
                ExpectedVersion::NoStream,
                vec![event("ThingMade", json!({})), event("ThingChanged", json!({}))],
            ),
            // Stale: refused alone.
            append(&c, ExpectedVersion::Exactly(5), vec![event("ThingChanged", json!({}))]),
            append(&b, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]),
            // `a` exists by now, written by the first append of the same group.
            append(&a, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]),
            // And this one follows the first: it chains from its events.
            append(&a, ExpectedVersion::Exactly(2), vec![event("ThingChanged", json!({"n": 3}))]),
        ],
    )
    .await;
    drop(held);
    let results = outcomes(tasks).await;

    let first = results[0].as_ref().expect("the first append lands");
    assert_eq!(first.versions, vec![(a.clone(), 2)]);
    assert!(matches!(&results[1], Err(StoreError::Conflict { actual: 1, .. })), "{:?}", results[1]);
    let third = results[2].as_ref().expect("the third append lands");
    assert!(matches!(&results[3], Err(StoreError::Conflict { actual: 2, .. })), "{:?}", results[3]);
    let fifth = results[4].as_ref().expect("the fifth append lands after the first");
    assert_eq!(fifth.versions, vec![(a.clone(), 3)]);

    // One statement, one transaction, for all three that landed.
    assert_eq!(first.last.transaction_id, third.last.transaction_id);
    assert_eq!(first.last.transaction_id, fifth.last.transaction_id);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(events, 1 + 2 + 1 + 1);
    let a_events = store.read_stream(&a.to_string(), None).await.unwrap();
    assert_eq!(a_events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(a_events[2].payload, json!({"n": 3}));
    // The chains hold across the shared statement.
    let report = verify(store.pool(), |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
}

#[tokio::test]
async fn a_group_whose_statement_fails_goes_again_append_by_append() {
    let db = TestDb::new().await;
    let (here, elsewhere) = (db.store(), db.store());
    let (s, t, u) = (stream(), stream(), stream());
    here.append(append(&s, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap();
    here.append(append(&u, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await.unwrap();
    // Another process moves `s` and `u` on: what this one remembers of their heads is stale.
    elsewhere.append(append(&s, ExpectedVersion::Any, vec![event("ThingChanged", json!({}))])).await.unwrap();
    elsewhere.append(append(&u, ExpectedVersion::Any, vec![event("ThingChanged", json!({}))])).await.unwrap();

    let held = here.hold_commits().await;
    let tasks = queue(
        &here,
        vec![
            // From the stale head: the shared statement hits the unique (stream, version) key.
            append(&s, ExpectedVersion::Exactly(1), vec![event("ThingChanged", json!({}))]),
            append(&t, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]),
            // Any: retried from the fresh head.
            append(&u, ExpectedVersion::Any, vec![event("ThingChanged", json!({}))]),
        ],
    )
    .await;
    drop(held);
    let results = outcomes(tasks).await;

    assert!(matches!(&results[0], Err(StoreError::Conflict { .. })), "{:?}", results[0]);
    assert_eq!(
        results[1].as_ref().expect("another append's conflict is not this one's").versions,
        vec![(t.clone(), 1)]
    );
    assert_eq!(results[2].as_ref().expect("an Any append lands on the fresh head").versions, vec![(u.clone(), 3)]);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(here.pool()).await.unwrap();
    assert_eq!(events, 2 + 2 + 1 + 1);
    let report = verify(here.pool(), |_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.breaks);
}

#[tokio::test]
async fn a_lone_committer_waits_for_company_and_goes_when_it_comes() {
    let db = TestDb::new().await;
    // A wait far longer than the test may take: it passes only if company ends the wait.
    let config = GroupCommit { max_wait: Duration::from_secs(600), ..GroupCommit::default() };
    let store = db.store().with_group_commit(config);
    let (a, b) = (stream(), stream());
    let first = {
        let s = store.clone();
        let batch = append(&a, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))]);
        tokio::spawn(async move { s.append(batch).await })
    };
    // Alone, it waits (its append still queued, nothing written).
    eventually(Duration::from_secs(10), "the first append to wait", || async {
        (store.queued_appends() == 1).then_some(())
    })
    .await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(events, 0);
    let both = async {
        let second = store.append(append(&b, ExpectedVersion::NoStream, vec![event("ThingMade", json!({}))])).await;
        (first.await.unwrap().unwrap(), second.unwrap())
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(30), both).await.expect("company ends the wait");
    assert_eq!(first.last.transaction_id, second.last.transaction_id, "company arrived: one statement for both");
}
