//! `unity serve` as a process: projections and the relay at work, and a clean shutdown.

use std::{process::Stdio, time::Duration};

use async_nats::jetstream;
use futures::StreamExt;
use unity_commands::testing::{eventually, NatsServer, TestDb};

use crate::{key_file, text, unity};

#[tokio::test]
async fn serve_projects_and_relays_what_the_cli_writes_and_stops_cleanly() {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let key = key_file();
    let stream_name = format!("E2E_{}", uuid::Uuid::now_v7().simple());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_unity"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", nats.url())
        .env("UNITY_NATS_STREAM", &stream_name)
        .env("UNITY_MASTER_KEY_FILE", &key)
        .env("UNITY_LOG_FORMAT", "json")
        .env("UNITY_SEAL_INTERVAL_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let out = unity(
        &db,
        &key,
        &["admin", "create-user", "--username", "ada", "--password-stdin"],
        &[],
        "correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The running server's projection picks it up (woken by LISTEN/NOTIFY, across processes).
    let pool = db.pool.clone();
    eventually(Duration::from_secs(30), "the users read model to show ada", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT username FROM users").fetch_optional(&pool).await.ok().flatten()
        }
    })
    .await;
    // Its relay publishes the events to JetStream.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = eventually(Duration::from_secs(30), "the JetStream stream", || {
        let js = js.clone();
        let name = stream_name.clone();
        async move { js.get_stream(&name).await.ok() }
    })
    .await;
    let consumer = stream.create_consumer(jetstream::consumer::pull::OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut subjects = Vec::new();
    while subjects.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("events reach NATS")
            .unwrap()
            .unwrap();
        subjects.push(m.subject.to_string());
    }
    assert_eq!(subjects, ["unity.events.username.UsernameReserved", "unity.events.user.UserCreated"]);
    // And seals the log periodically.
    eventually(Duration::from_secs(30), "a seal", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT seal_number FROM seals").fetch_optional(&pool).await.ok().flatten()
        }
    })
    .await;

    // SIGTERM: a clean stop.
    let pid = server.id().unwrap() as i32;
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait()).await.expect("serve stops").unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(server.stderr.as_mut().unwrap(), &mut stderr).await.unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "UNITY_LOG_FORMAT=json gives JSON lines: {stderr}"
    );
    assert!(!stderr.contains("correct horse"), "no secrets in the logs");
}
