//! `unity bench e2e`: the whole application in-process against a fresh bench database, driven over
//! HTTP and WebSocket by an in-process client on the same two cores: `me` queries at full speed
//! and at a fixed rate, then mutation-to-subscription delivery.

use std::{
    cell::RefCell,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::{
    app::{App, Role},
    config::Settings,
};

const PASSWORD: &str = "bench password, long enough";

pub async fn e2e(settings: &Settings, seconds: u64, rate: u32, concurrency: usize, deliveries: usize) -> Result<Value> {
    let name = super::bench_database(settings, true, "_e2e").await?.1;
    let mut settings = settings.clone();
    settings.database = settings.database.clone().database(&name);
    settings.admin_password = Some(PASSWORD.into());
    settings.master_key_file = std::env::temp_dir().join(format!("unity-bench-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&settings.master_key_file);
    let app = App::connect(settings.clone()).await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = format!("127.0.0.1:{}", listener.local_addr()?.port());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(app.serve(&[Role::All], Some(listener), stopped));
    let result = tokio::task::LocalSet::new().run_until(drive(address, seconds, rate, concurrency, deliveries)).await;
    let _ = stop.send(true);
    let _ = server.await;
    let _ = std::fs::remove_file(&settings.master_key_file);
    result
}

async fn drive(address: String, seconds: u64, rate: u32, concurrency: usize, deliveries: usize) -> Result<Value> {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let url = format!("http://{address}/graphql");
    let started = Instant::now();
    while client.get(format!("http://{address}/healthz")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the API did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login =
        json!({ "query": format!("mutation {{ login(username: \"admin\", password: \"{PASSWORD}\") {{ token }} }}") });
    let body: Value = client.post(&url).send_json(&login).await.map_err(|e| anyhow!("{e}"))?.json().await?;
    let token = body["data"]["login"]["token"].as_str().context("logging in as admin")?.to_owned();
    let me = json!({ "query": "{ me { id username role } }" });

    // 1. Throughput: `concurrency` clients sending `me` back to back.
    let done = Rc::new(RefCell::new((0u64, 0u64)));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token, me, done) = (client.clone(), url.clone(), token.clone(), me.clone(), done.clone());
            tokio::task::spawn_local(async move {
                while Instant::now() < deadline {
                    let ok = match client.post(&url).bearer_auth(&token).send_json(&me).await {
                        Ok(mut r) => r.body().await.is_ok_and(|b| !b.windows(8).any(|w| w == b"\"errors\"")),
                        Err(_) => false,
                    };
                    let mut d = done.borrow_mut();
                    if ok {
                        d.0 += 1
                    } else {
                        d.1 += 1
                    }
                }
            })
        })
        .collect();
    let throughput_started = Instant::now();
    for w in workers {
        w.await?;
    }
    let elapsed = throughput_started.elapsed().as_secs_f64();
    let (ok, failed) = *done.borrow();

    // 2. Latency at a fixed rate, measured from each request's scheduled time.
    let latencies = Rc::new(RefCell::new(Vec::new()));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let total = u64::from(rate) * seconds;
    let start = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (client, url, token, me, latencies) =
            (client.clone(), url.clone(), token.clone(), me.clone(), latencies.clone());
        requests.push(tokio::task::spawn_local(async move {
            let ok = match client.post(&url).bearer_auth(&token).send_json(&me).await {
                Ok(mut r) => r.body().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                latencies.borrow_mut().push(due.elapsed());
            }
        }));
    }
    for r in requests {
        r.await?;
    }
    let fixed = latencies.borrow().clone();

    // 3. Mutation to subscription: a subscriber to ApiKeyIssued; each createApiKey is timed from
    // the moment it is sent to the moment its event arrives on the WebSocket.
    let (_, mut ws) = client
        .ws(format!("ws://{address}/graphql"))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .map_err(|e| anyhow!("WebSocket: {e}"))?;
    let send = |m: Value| awc::ws::Message::Text(m.to_string().into());
    ws.send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })))
        .await?;
    ws.send(send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { events(filter: {eventTypes: [\"ApiKeyIssued\"]}) { position } }" } }))).await?;
    let mut delivery = Vec::with_capacity(deliveries);
    let create =
        json!({ "query": "mutation { createApiKey(input: {name: \"bench\", role: VIEWER}) { apiKey { id } } }" });
    let mut pending_ack = true;
    for _ in 0..deliveries {
        let sent = Instant::now();
        let mutation = post_later(&client, &url, &token, &create);
        loop {
            let frame = next_frame(&mut ws, "no event within 10 s").await?;
            if let awc::ws::Frame::Text(text) = frame {
                let message: Value = serde_json::from_slice(&text)?;
                match message["type"].as_str() {
                    Some("connection_ack") if pending_ack => pending_ack = false,
                    Some("next") => {
                        delivery.push(sent.elapsed());
                        break;
                    }
                    Some("error") => bail!("the subscription failed: {message}"),
                    _ => {}
                }
            }
        }
        mutation.await?.map_err(|e| anyhow!("createApiKey: {e}"))?;
    }
    drop(ws);

    // 4. Access lost on an open socket: a fresh session's socket, then its logout over HTTP; the
    // time from sending the logout to the 4403 close. With a running subscription the log itself
    // ends it; on an idle socket the read model's watch does.
    let mut with_subscription = Vec::new();
    let mut idle = Vec::new();
    for round in 0..20 {
        let subscribed = round % 2 == 0;
        let body: Value = client.post(&url).send_json(&login).await.map_err(|e| anyhow!("{e}"))?.json().await?;
        let session = body["data"]["login"]["token"].as_str().context("logging in")?.to_owned();
        let (_, mut ws) = client
            .ws(format!("ws://{address}/graphql"))
            .protocols(["graphql-transport-ws"])
            .connect()
            .await
            .map_err(|e| anyhow!("WebSocket: {e}"))?;
        ws.send(send(json!({ "type": "connection_init", "payload": { "token": session } }))).await?;
        let mut running = !subscribed;
        if subscribed {
            ws.send(send(json!({ "id": "s", "type": "subscribe", "payload": { "query": "subscription { events(filter: {eventTypes: [\"ApiKeyIssued\"]}) { position } }" } }))).await?;
        }
        // Until the subscription delivers an event made after it started.
        while !running {
            client.post(&url).bearer_auth(&token).send_json(&create).await.map_err(|e| anyhow!("createApiKey: {e}"))?;
            while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                if let awc::ws::Frame::Text(text) = frame? {
                    running |= serde_json::from_slice::<Value>(&text)?["type"] == "next";
                }
            }
        }
        if !subscribed {
            // The ack, so the socket is initialised before the logout.
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.context("no connection_ack")?;
        }
        let sent = Instant::now();
        let logging_out = post_later(&client, &url, &session, &json!({ "query": "mutation { logout }" }));
        loop {
            let frame = next_frame(&mut ws, "the socket stayed open 10 s after its logout").await?;
            if let awc::ws::Frame::Close(reason) = frame {
                let code = reason.map(|r| u16::from(r.code));
                if code != Some(4403) {
                    bail!("the socket closed with {code:?}, not 4403");
                }
                (if subscribed { &mut with_subscription } else { &mut idle }).push(sent.elapsed());
                break;
            }
        }
        logging_out.await?.map_err(|e| anyhow!("logout: {e}"))?;
    }
    Ok(json!({
        "benchmark": "e2e",
        "logout_to_socket_closed": {
            "with_a_subscription_ms": super::latency_summary(with_subscription),
            "idle_socket_ms": super::latency_summary(idle),
        },
        "me_queries": { "concurrency": concurrency, "seconds": elapsed, "ok": ok, "failed": failed, "per_second": ok as f64 / elapsed },
        "me_at_fixed_rate": { "rate": rate, "requests": total, "answered": fixed.len(), "latency_ms": super::latency_summary(fixed) },
        "mutation_to_subscription": { "mutations": deliveries, "latency_ms": super::latency_summary(delivery) },
    }))
}

/// Sends a GraphQL POST in the background (so a socket can be read meanwhile).
fn post_later(
    client: &awc::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> tokio::task::JoinHandle<Result<(), awc::error::SendRequestError>> {
    let (client, url, token, body) = (client.clone(), url.to_owned(), token.to_owned(), body.clone());
    tokio::task::spawn_local(async move { client.post(&url).bearer_auth(&token).send_json(&body).await.map(|_| ()) })
}

/// The socket's next frame within 10 s; `what` says what was awaited.
async fn next_frame<S>(ws: &mut S, what: &str) -> Result<awc::ws::Frame>
where
    S: futures::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin,
{
    Ok(tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .with_context(|| what.to_owned())?
        .context("the WebSocket ended without a close frame")??)
}
