//! GraphQL over WebSocket as clients meet it: access decided per operation and lost at once with
//! the token's (logout, revocation, a disabled user, a password change, expiry, a lowered role),
//! the graphql-transport-ws close codes, and the legacy graphql-ws protocol.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::api::{spawn_app, spawn_app_with, TestApp, ADMIN_PASSWORD};

pub(crate) type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// What the server sent: a message, or the close frame's code and reason.
#[derive(Debug)]
pub(crate) enum Received {
    Message(Value),
    Closed(u16, String),
}

pub(crate) async fn open(app: &TestApp, protocol: &str) -> Ws {
    let (response, ws) = app.client.ws(app.ws_url()).protocols([protocol]).connect().await.expect("WebSocket upgrade");
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
    assert_eq!(chosen, Some(protocol), "the handshake agrees on {protocol}");
    ws
}

pub(crate) async fn send(ws: &mut Ws, message: Value) {
    // The server may have closed already; what it sent then is what the test reads.
    let _ = ws.send(awc::ws::Message::Text(message.to_string().into())).await;
}

/// The next text message or close, answering pings on the way; `None` at the deadline.
pub(crate) async fn next(ws: &mut Ws, within: Duration) -> Option<Received> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match frame {
            None | Some(Err(_)) => return Some(Received::Closed(1006, "the connection dropped".into())),
            Some(Ok(awc::ws::Frame::Text(text))) => {
                return Some(Received::Message(serde_json::from_slice(&text).unwrap()))
            }
            Some(Ok(awc::ws::Frame::Close(reason))) => {
                let (code, text) =
                    reason.map_or((1005, String::new()), |r| (u16::from(r.code), r.description.unwrap_or_default()));
                return Some(Received::Closed(code, text));
            }
            Some(Ok(awc::ws::Frame::Ping(bytes))) => {
                let _ = ws.send(awc::ws::Message::Pong(bytes)).await;
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn expect_message(ws: &mut Ws) -> Value {
    match next(ws, Duration::from_secs(20)).await {
        Some(Received::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Opens graphql-transport-ws with `token` and subscribes to every event.
async fn subscribed(app: &TestApp, token: &str) -> Ws {
    let mut ws = open(app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(expect_message(&mut ws).await["type"], "connection_ack");
    let query = "subscription { events { position eventType streamType } }";
    send(&mut ws, json!({ "id": "all", "type": "subscribe", "payload": { "query": query } })).await;
    running(app, &mut ws, "next").await;
    ws
}

/// Waits until the subscription on `ws` runs: it delivers (as `kind`) a probe appended after it
/// started. Probes made before it started are never delivered, so it probes again until one is.
async fn running(app: &TestApp, ws: &mut Ws, kind: &str) {
    for _ in 0..100 {
        app.probe(&[("Started", json!({}))]).await;
        while let Some(received) = next(ws, Duration::from_millis(200)).await {
            let Received::Message(m) = received else { panic!("closed while starting: {received:?}") };
            if m["type"] == "ka" {
                continue;
            }
            assert_eq!(m["type"], kind, "{m}");
            if m["payload"]["data"]["events"]["eventType"] == "Started" {
                return;
            }
        }
    }
    panic!("the subscription never started");
}

/// The newest position in the log (the change just made, once its mutation has answered).
async fn head(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&app.db.pool).await.unwrap()
}

/// After a change that ends a token's access at log position `change`: more events are made
/// (which an open subscription would deliver), an operation is attempted on the socket, and
/// the socket must close with 4403 having delivered nothing from after the change.
async fn assert_cut_off(app: &TestApp, ws: &mut Ws, admin: &str, change: i64, actor: &str) -> String {
    app.probe(&[("After", json!({}))]).await;
    app.ok(Some(admin), "mutation { createApiKey(input: {name: \"after\", role: VIEWER}) { secret } }", json!({}))
        .await;
    let attempt = "mutation { createUser(input: {username: \"intruder\", password: \"a long passphrase here\", role: ADMIN}) { id } }";
    send(ws, json!({ "id": "attempt", "type": "subscribe", "payload": { "query": attempt } })).await;
    let reason = loop {
        match next(ws, Duration::from_secs(10)).await {
            Some(Received::Message(m)) => {
                assert_eq!(m["type"], "next", "nothing but earlier events: {m}");
                let position: i64 = m["payload"]["data"]["events"]["position"].as_str().unwrap().parse().unwrap();
                assert!(position < change, "delivered position {position} after the change at {change}: {m}");
            }
            Some(Received::Closed(code, reason)) => {
                assert_eq!(code, 4403, "{reason}");
                break reason;
            }
            None => panic!("the socket stayed open after its access ended"),
        }
    };
    let acted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > $1 AND metadata->'actor'->>'id' = $2")
            .bind(change)
            .bind(actor)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(acted, 0, "no event has the cut-off actor after the change");
    reason
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.ok(Some(token), "{ me { id } }", json!({})).await["me"]["id"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn an_open_socket_loses_its_access_with_its_token_at_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        app.create_user(&admin, name, "ADMIN").await;
    }

    // Logout.
    let ann = app.login("ann", ADMIN_PASSWORD).await;
    let ann_id = user_id(&app, &ann).await;
    let mut ws = subscribed(&app, &ann).await;
    app.ok(Some(&ann), "mutation { logout }", json!({})).await;
    let started = Instant::now();
    let reason = assert_cut_off(&app, &mut ws, &admin, head(&app).await, &ann_id).await;
    assert!(reason.contains("session ended"), "{reason}");
    eprintln!("logout: socket closed {:?} after the mutation answered", started.elapsed());

    // A disabled user: the exploit of the issue, an ADMIN creating users after being disabled.
    let ben = app.login("ben", ADMIN_PASSWORD).await;
    let ben_id = user_id(&app, &ben).await;
    let mut ws = subscribed(&app, &ben).await;
    app.ok(Some(&admin), "mutation($u: ID!) { disableUser(userId: $u) { disabled } }", json!({ "u": ben_id })).await;
    let reason = assert_cut_off(&app, &mut ws, &admin, head(&app).await, &ben_id).await;
    assert!(reason.contains("disabled"), "{reason}");
    let intruders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'UserCreated' AND payload->>'username' = 'intruder'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(intruders, 0);

    // A password change ends every session.
    let cat = app.login("cat", ADMIN_PASSWORD).await;
    let cat_id = user_id(&app, &cat).await;
    let mut ws = subscribed(&app, &cat).await;
    let other_session = app.login("cat", ADMIN_PASSWORD).await;
    app.ok(
        Some(&other_session),
        "mutation($i: ChangePasswordInput!) { changePassword(input: $i) }",
        json!({ "i": { "currentPassword": ADMIN_PASSWORD, "newPassword": "another long passphrase" } }),
    )
    .await;
    let reason = assert_cut_off(&app, &mut ws, &admin, head(&app).await, &cat_id).await;
    assert!(reason.contains("password"), "{reason}");

    // A revoked API key.
    let dan = app.login("dan", ADMIN_PASSWORD).await;
    let dan_id = user_id(&app, &dan).await;
    let key = app
        .ok(
            Some(&dan),
            "mutation { createApiKey(input: {name: \"ci\", role: ADMIN}) { apiKey { id } secret } }",
            json!({}),
        )
        .await;
    let (key_id, secret) =
        (key["createApiKey"]["apiKey"]["id"].clone(), key["createApiKey"]["secret"].as_str().unwrap().to_owned());
    let mut ws = subscribed(&app, &secret).await;
    app.ok(Some(&admin), "mutation($k: ID!) { revokeApiKey(id: $k) { id } }", json!({ "k": key_id })).await;
    let reason = assert_cut_off(&app, &mut ws, &admin, head(&app).await, &dan_id).await;
    assert!(reason.contains("revoked"), "{reason}");

    // A socket whose token is gone cannot start again either.
    let mut again = open(&app, "graphql-transport-ws").await;
    send(&mut again, json!({ "type": "connection_init", "payload": { "token": ann } })).await;
    assert!(matches!(next(&mut again, Duration::from_secs(10)).await, Some(Received::Closed(4403, _))));

    // A lowered role narrows a running subscription from the change on.
    let eve = app.login("eve", ADMIN_PASSWORD).await;
    let eve_id = user_id(&app, &eve).await;
    let mut ws = subscribed(&app, &eve).await;
    app.ok(
        Some(&admin),
        "mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) { role } }",
        json!({ "i": { "userId": eve_id, "role": "VIEWER" } }),
    )
    .await;
    let change = head(&app).await;
    app.ok(Some(&admin), "mutation { createApiKey(input: {name: \"hidden\", role: VIEWER}) { secret } }", json!({}))
        .await;
    app.probe(&[("Visible", json!({}))]).await;
    loop {
        let m = expect_message(&mut ws).await;
        let event = &m["payload"]["data"]["events"];
        let position: i64 = event["position"].as_str().unwrap().parse().unwrap();
        assert!(position < change || event["streamType"] == "probe", "a viewer's subscription got {m}");
        if event["eventType"] == "Visible" {
            break;
        }
    }
    // And an operation started now runs with the lowered role.
    send(
        &mut ws,
        json!({ "id": "users", "type": "subscribe", "payload": { "query": "{ users { edges { node { id } } } }" } }),
    )
    .await;
    let answer = loop {
        let m = expect_message(&mut ws).await;
        if m["id"] == "users" {
            break m;
        }
    };
    assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{answer}");
}

#[actix_rt::test]
async fn a_session_that_expires_closes_its_socket_at_expiry() {
    let app = spawn_app_with(&[("UNITY_SESSION_TTL_SECS", "3")]).await;
    let admin = app.admin().await;
    let admin_id = user_id(&app, &admin).await;
    let started = Instant::now();
    let mut ws = subscribed(&app, &admin).await;
    loop {
        match next(&mut ws, Duration::from_secs(10)).await {
            Some(Received::Message(m)) => assert_eq!(m["type"], "next", "{m}"),
            Some(Received::Closed(code, reason)) => {
                assert_eq!((code, reason.contains("expired")), (4403, true), "{reason}");
                break;
            }
            None => panic!("the socket outlived its session"),
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the expiry");
    let acted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata->'actor'->>'id' = $1 AND recorded_at > now() - interval '1 second'",
    )
    .bind(&admin_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(acted, 0);
}

#[actix_rt::test]
async fn graphql_transport_ws_close_codes_and_the_legacy_protocol() {
    let app = spawn_app_with(&[("UNITY_WS_INIT_TIMEOUT_SECS", "1")]).await;
    let admin = app.admin().await;

    // No connection_init within the timeout: 4408.
    let mut ws = open(&app, "graphql-transport-ws").await;
    match next(&mut ws, Duration::from_secs(10)).await {
        Some(Received::Closed(4408, reason)) => assert!(reason.contains("initialisation timeout"), "{reason}"),
        other => panic!("expected 4408, got {other:?}"),
    }

    // A second connection_init: 4429. Nothing unasked between the ack and an operation's answer.
    let mut ws = open(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "token": admin } })).await;
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "connection_ack" }));
    send(&mut ws, json!({ "id": "q", "type": "subscribe", "payload": { "query": "{ me { username } }" } })).await;
    let answer = expect_message(&mut ws).await;
    assert_eq!(answer, json!({ "type": "next", "id": "q", "payload": { "data": { "me": { "username": "admin" } } } }));
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "complete", "id": "q" }));
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "pong" }));
    send(&mut ws, json!({ "type": "connection_init", "payload": {} })).await;
    match next(&mut ws, Duration::from_secs(10)).await {
        Some(Received::Closed(4429, reason)) => {
            assert!(reason.contains("Too many initialisation requests"), "{reason}")
        }
        other => panic!("expected 4429, got {other:?}"),
    }

    // An operation before connection_init: 4401; the same id twice: 4409.
    let mut ws = open(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "id": "early", "type": "subscribe", "payload": { "query": "{ me { id } }" } })).await;
    assert!(matches!(next(&mut ws, Duration::from_secs(10)).await, Some(Received::Closed(4401, _))));
    let mut ws = open(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "token": admin } })).await;
    expect_message(&mut ws).await;
    let events = json!({ "query": "subscription { events { eventType } }" });
    send(&mut ws, json!({ "id": "twice", "type": "subscribe", "payload": events })).await;
    send(&mut ws, json!({ "id": "twice", "type": "subscribe", "payload": events })).await;
    assert!(matches!(next(&mut ws, Duration::from_secs(10)).await, Some(Received::Closed(4409, _))));

    // The legacy graphql-ws protocol (subscriptions-transport-ws): ack and keep-alive, start,
    // data, stop, complete; a client that asks only for it is served.
    let mut ws = open(&app, "graphql-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {admin}") } }))
        .await;
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "connection_ack" }));
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "ka" }));
    send(&mut ws, json!({ "id": "1", "type": "start", "payload": { "query": "{ me { username } }" } })).await;
    assert_eq!(
        expect_message(&mut ws).await,
        json!({ "type": "data", "id": "1", "payload": { "data": { "me": { "username": "admin" } } } })
    );
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "complete", "id": "1" }));
    send(&mut ws, json!({ "id": "2", "type": "start", "payload": { "query": "subscription { events(filter: {streamTypes: [\"probe\"]}) { eventType } }" } })).await;
    running(&app, &mut ws, "data").await;
    app.probe(&[("Legacy", json!({}))]).await;
    let data = loop {
        let m = expect_message(&mut ws).await;
        if m["type"] != "ka" && m["payload"]["data"]["events"]["eventType"] != "Started" {
            break m;
        }
    };
    assert_eq!(
        data,
        json!({ "type": "data", "id": "2", "payload": { "data": { "events": { "eventType": "Legacy" } } } })
    );
    send(&mut ws, json!({ "id": "2", "type": "stop" })).await;
    assert_eq!(expect_message(&mut ws).await, json!({ "type": "complete", "id": "2" }));
    send(&mut ws, json!({ "id": "3", "type": "start", "payload": { "query": "{ nope }" } })).await;
    let error = expect_message(&mut ws).await;
    assert_eq!(
        (error["type"].as_str(), error["payload"]["extensions"]["code"].as_str()),
        (Some("error"), Some("BAD_USER_INPUT")),
        "{error}"
    );
    send(&mut ws, json!({ "type": "connection_terminate" })).await;
    assert!(matches!(next(&mut ws, Duration::from_secs(10)).await, Some(Received::Closed(1000, _))));
}
