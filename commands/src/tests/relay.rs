//! The NATS relay against a real nats-server with JetStream.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream::Stream};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Connection;
use unity_domain::StreamId;
use uuid::Uuid;

use super::store::{append, event};
use crate::{
    relay::{NatsRelay, RelayConfig, RelayError},
    store::{EventStore, ExpectedVersion},
    testing::{NatsServer, TestDb},
};

fn config() -> RelayConfig {
    let tag = Uuid::now_v7().simple().to_string();
    RelayConfig {
        stream_name: format!("TEST_{tag}"),
        subject_prefix: format!("test{tag}.events"),
        batch_size: 7,
        timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
    }
}

async fn client(nats: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(1)).connect(nats.url()).await.unwrap()
}

async fn append_things(store: &EventStore, streams: usize, each: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..streams {
        let s = StreamId::new("thing", Uuid::now_v7());
        let events: Vec<_> =
            (0..each).map(|i| event(if i == 0 { "ThingMade" } else { "ThingChanged" }, json!({"i": i}))).collect();
        ids.extend(events.iter().map(|e| e.event_id));
        store.append(append(&s, ExpectedVersion::NoStream, events)).await.unwrap();
    }
    ids
}

/// Drains the relay until every event is out (waiting, with a deadline, for NATS to return).
async fn relay_until_done(relay: &mut NatsRelay, store: &EventStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the relay never caught up");
        match relay.run_once().await {
            // Done when the checkpoint reaches the newest committed event, not merely the newest
            // readable one (another test's open transaction can hold the horizon back).
            Ok(0) if relay.checkpoint().await.unwrap() >= store.last_committed().await.unwrap() => return,
            Ok(_) => {}
            Err(RelayError::Nats(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Every message in the stream, read by a real JetStream pull consumer.
async fn consume(client: &async_nats::Client, stream_name: &str) -> Vec<jetstream::Message> {
    let js = jetstream::new(client.clone());
    let mut stream: Stream = js.get_stream(stream_name).await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream.create_consumer(pull::Config::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap().take(total);
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.expect("messages arrive") {
        out.push(m.unwrap());
    }
    out
}

fn header<'a>(m: &'a jetstream::Message, name: &str) -> &'a str {
    m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str()).unwrap_or_else(|| panic!("header {name}"))
}

#[tokio::test]
async fn a_consumer_receives_every_event_with_its_subject_headers_and_envelope() {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let mut relay = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    let ids = append_things(&store, 3, 4).await;
    relay_until_done(&mut relay, &store).await;

    let messages = consume(&client(&nats).await, &config.stream_name).await;
    let received: Vec<Uuid> = messages.iter().map(|m| header(m, "Nats-Msg-Id").parse().unwrap()).collect();
    assert_eq!(received, ids, "every event, once, in store order");
    let first = &messages[0];
    assert_eq!(first.subject.as_str(), format!("{}.thing.ThingMade", config.subject_prefix));
    assert_eq!(header(first, "Unity-Event-Type"), "ThingMade");
    assert_eq!(header(first, "Unity-Stream-Version"), "1");
    let body: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(header(first, "Unity-Stream-Id"), body["stream_id"].as_str().unwrap());
    assert_eq!(header(first, "Unity-Global-Position"), body["global_position"].to_string());
    for field in [
        "event_id",
        "stream_type",
        "stream_version",
        "event_type",
        "schema_version",
        "recorded_at",
        "payload",
        "metadata",
        "hash",
    ] {
        assert!(body.get(field).is_some(), "envelope lacks {field}");
    }
    assert_eq!(body["payload"], json!({"i": 0}));
}

#[tokio::test]
async fn events_appended_while_nats_is_down_arrive_in_order_when_it_returns() {
    let (db, mut nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let mut relay = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    let mut ids = append_things(&store, 2, 3).await;
    relay_until_done(&mut relay, &store).await;

    nats.stop();
    ids.extend(append_things(&store, 4, 5).await);
    // Once the new events are readable (another test's open transaction may hold them back for a
    // moment), publishing them must fail: nothing may count as sent while NATS is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match relay.run_once().await {
            Err(_) => break,
            Ok(0) => {
                assert!(tokio::time::Instant::now() < deadline, "the new events never became readable");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(n) => panic!("{n} events counted as published while NATS was down"),
        }
    }
    nats.resume().await;
    relay_until_done(&mut relay, &store).await;

    let messages = consume(&client(&nats).await, &config.stream_name).await;
    let received: Vec<Uuid> = messages.iter().map(|m| header(m, "Nats-Msg-Id").parse().unwrap()).collect();
    assert_eq!(received, ids, "none lost, none doubled, in store order");
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_checkpoint_causes_no_duplicate() {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let ids = append_things(&store, 2, 5).await;
    let mut doomed = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    let published = doomed.publish_batch().await.unwrap();
    assert_eq!(published.len(), 7);
    drop(doomed); // killed: the checkpoint never moved
    let mut successor = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    assert_eq!(successor.checkpoint().await.unwrap(), Default::default());
    relay_until_done(&mut successor, &store).await;
    let messages = consume(&client(&nats).await, &config.stream_name).await;
    let received: Vec<Uuid> = messages.iter().map(|m| header(m, "Nats-Msg-Id").parse().unwrap()).collect();
    assert_eq!(received, ids);
}

#[tokio::test]
async fn only_one_relay_is_active_at_a_time() {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let mut first = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    let mut second = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    assert!(first.acquire_lease().await.unwrap());
    assert!(!second.acquire_lease().await.unwrap());
    append_things(&store, 1, 2).await;
    assert!(matches!(second.run_once().await, Err(RelayError::NotLeader)));
    drop(first); // its session ends, and with it the lock
                 // Free for anyone now, not parked in a pooled connection that still holds it.
    let mut outsider = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let lock = format!("nats-relay:{}", config.stream_name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&lock)
            .fetch_one(&mut outsider)
            .await
            .unwrap();
        if got {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dropped relay's lock was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outsider.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !second.acquire_lease().await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the standby never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay_until_done(&mut second, &store).await;
}

#[tokio::test]
async fn a_stream_whose_last_message_is_not_ours_is_refused_not_guessed() {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let client = client(&nats).await;
    let mut relay = NatsRelay::new(store.clone(), client.clone(), config.clone()).await.unwrap();
    append_things(&store, 1, 2).await;
    jetstream::new(client)
        .publish(format!("{}.other.Thing", config.subject_prefix), "not ours".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let err = relay.run_once().await.unwrap_err();
    assert!(err.to_string().contains("not a Unity event"), "{err}");
}

#[tokio::test]
async fn a_lost_stream_is_created_again_and_publishing_goes_on_in_order() {
    let (db, mut nats) = (TestDb::new().await, NatsServer::start().await);
    let store = db.store();
    let config = config();
    let mut relay = NatsRelay::new(store.clone(), client(&nats).await, config.clone()).await.unwrap();
    append_things(&store, 1, 3).await;
    relay_until_done(&mut relay, &store).await;

    // An operator deletes the stream; events keep coming.
    jetstream::new(client(&nats).await).delete_stream(&config.stream_name).await.unwrap();
    let after_delete = append_things(&store, 2, 4).await;
    relay_until_done(&mut relay, &store).await;
    let messages = consume(&client(&nats).await, &config.stream_name).await;
    let received: Vec<Uuid> = messages.iter().map(|m| header(m, "Nats-Msg-Id").parse().unwrap()).collect();
    assert_eq!(received, after_delete, "the new stream holds everything after the last acknowledged event, in order");

    // NATS restarted without its storage: the same, through reconnection.
    nats.stop();
    nats.wipe_storage();
    nats.resume().await;
    let after_restart = append_things(&store, 1, 5).await;
    relay_until_done(&mut relay, &store).await;
    let messages = consume(&client(&nats).await, &config.stream_name).await;
    let received: Vec<Uuid> = messages.iter().map(|m| header(m, "Nats-Msg-Id").parse().unwrap()).collect();
    assert_eq!(received, after_restart);
    let positions: Vec<i64> = messages.iter().map(|m| header(m, "Unity-Global-Position").parse().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}
