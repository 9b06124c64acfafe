//! ACME end to end against a real Pebble: accounts (with and without external account binding),
//! HTTP-01 answered by Unity's own API, DNS-01 through a real knotd (RFC 2136) and through a
//! webhook, a domain Pebble cannot validate, and renewal. Chains are checked with openssl.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use unity_collectors::testing::testbed::{Knotd, Pebble, PebbleOptions};

use crate::{
    api::{code, spawn_app, TestApp},
    certificates::{mutate, openssl},
};

const ACCOUNT_FIELDS: &str = "id name directoryUrl email eabKid status accountUrl error problemType";
const ORDER_FIELDS: &str = "id status domains challenge error problemType renewalOf \
    authorizations { domain status token record error problemType } \
    certificate { id source dnsNames notBefore notAfter certificatePem chainPem renewalOf renewedBy }";

/// Pebble's EAB example key (base64url, as ZeroSSL shows one).
const EAB_KID: &str = "kid-1";
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("unity-acme-{name}-{}", uuid::Uuid::now_v7().simple()))
}

async fn register(app: &TestApp, admin: &str, input: Value) -> Value {
    mutate(app, admin, "registerAcmeAccount", "RegisterAcmeAccountInput", ACCOUNT_FIELDS, input).await
}

async fn order(app: &TestApp, token: &str, input: Value) -> Value {
    mutate(app, token, "requestAcmeCertificate", "RequestAcmeCertificateInput", ORDER_FIELDS, input).await
}

/// An account at `pebble`, registered.
async fn account(app: &TestApp, admin: &str, pebble: &Pebble, extra: Value) -> Value {
    let mut input = json!({
        "name": "pebble",
        "directoryUrl": pebble.directory_url,
        "email": "ops@lab.example",
        "acceptTerms": true,
        "caBundlePem": pebble.tls_ca_pem,
    });
    input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let account = register(app, admin, input).await;
    assert_eq!(account["status"], "REGISTERED", "{account}\n{}", pebble.log());
    account
}

/// The certificate verifies up to Pebble's issuing root with openssl, and is for `names`.
fn verify_chain(pebble: &Pebble, certificate: &Value, names: &[&str]) {
    let dir = scratch("verify");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("root.pem"), pebble.issuing_root_pem().unwrap()).unwrap();
    std::fs::write(dir.join("leaf.pem"), certificate["certificatePem"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join("chain.pem"), certificate["chainPem"].as_str().unwrap()).unwrap();
    let (ok, text) = openssl(&["verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"], &dir);
    assert!(ok && text.contains("leaf.pem: OK"), "{text}");
    let (_, text) = openssl(&["x509", "-in", "leaf.pem", "-noout", "-ext", "subjectAltName"], &dir);
    for name in names {
        assert!(text.contains(&format!("DNS:{name}")), "{name} missing from {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn event_types(app: &TestApp, stream_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version")
        .bind(stream_id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// No event payload contains `needle`.
async fn nowhere_in_events(app: &TestApp, needle: &str) {
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(needle)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(hits, 0, "an event holds a secret");
}

#[actix_rt::test]
async fn http01_is_answered_by_unity_and_pebble_issues_renews_and_refuses_what_it_cannot_validate() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = scratch("http01");
    let pebble = Pebble::start(&dir, &PebbleOptions { http_port: app.port(), ..PebbleOptions::default() }).unwrap();
    let account = account(&app, &admin, &pebble, json!({})).await;
    assert!(account["accountUrl"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{account}");
    assert_eq!(account["email"], "ops@lab.example");

    // Pebble fetches http://localhost:<API port>/.well-known/acme-challenge/<token> for real.
    let issued = order(&app, &admin, json!({ "accountId": account["id"], "domains": ["localhost"] })).await;
    assert_eq!(issued["status"], "VALID", "{issued}\n{}", pebble.log());
    let certificate = &issued["certificate"];
    assert_eq!(certificate["source"], "ACME");
    assert_eq!(certificate["dnsNames"], json!(["localhost"]));
    assert_eq!(issued["authorizations"][0]["status"], "VALID");
    verify_chain(&pebble, certificate, &["localhost"]);
    let log = pebble.log();
    let fetched =
        format!("Attempting to validate w/ HTTP: http://localhost:{}/.well-known/acme-challenge/", app.port());
    assert!(log.contains(&fetched) && log.contains("set VALID by completed challenge"), "{log}");
    // Finished orders are answered no more.
    let token = issued["authorizations"][0]["token"].as_str().unwrap();
    let response =
        awc::Client::new().get(app.url(&format!("/.well-known/acme-challenge/{token}"))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let order_id = issued["id"].as_str().unwrap();
    assert_eq!(
        event_types(&app, &format!("acme_order-{order_id}")).await,
        [
            "AcmeOrderRequested",
            "AcmeOrderCreated",
            "AcmeChallengePublished",
            "AcmeAuthorizationValid",
            "AcmeOrderCompleted"
        ]
    );
    // The account's key is sealed: its PKCS#8 field never reaches an event.
    nowhere_in_events(&app, "key_pkcs8").await;

    // A name Pebble cannot resolve: the order fails, keeping the directory's words.
    let failed = order(
        &app,
        &admin,
        json!({ "accountId": account["id"], "domains": ["unreachable.unity-test.invalid"], "name": "nowhere" }),
    )
    .await;
    assert_eq!(failed["status"], "INVALID", "{failed}");
    assert!(failed["certificate"].is_null());
    let authorization = &failed["authorizations"][0];
    assert_eq!(authorization["status"], "INVALID", "{failed}");
    assert!(authorization["error"].as_str().is_some_and(|e| e.contains("unity-test.invalid")), "{failed}");
    assert!(authorization["problemType"].as_str().is_some_and(|t| t.starts_with("urn:ietf:params:acme:error:")));
    assert!(failed["error"].as_str().unwrap().contains("unreachable.unity-test.invalid"), "{failed}");

    // Bad requests are refused before anything is ordered.
    for (input, words) in [
        (json!({ "accountId": account["id"], "domains": ["*.lab.example"] }), "DNS01"),
        (json!({ "accountId": account["id"], "domains": ["a b"] }), "not a DNS name"),
        (json!({ "accountId": account["id"], "domains": ["x.example"], "keyAlgorithm": "ED25519" }), "Ed25519"),
        (json!({ "accountId": account["id"], "domains": ["x.example"], "challenge": "DNS01" }), "dnsProviderId"),
    ] {
        let body = order(&app, &admin, input).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains(words), "{body}");
    }
    let body = order(&app, &admin, json!({ "accountId": uuid::Uuid::now_v7(), "domains": ["x.example"] })).await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");

    // Renewal: due at two thirds of the lifetime, ordered again the same way by the scheduler.
    let acme = app.db_acme().await;
    let credentials = app.db_credentials().await;
    let not_before: chrono::DateTime<chrono::Utc> = certificate["notBefore"].as_str().unwrap().parse().unwrap();
    let not_after: chrono::DateTime<chrono::Utc> = certificate["notAfter"].as_str().unwrap().parse().unwrap();
    let early = not_before + (not_after - not_before) / 2;
    let due = not_before + (not_after - not_before) * 3 / 4;
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, early).await.unwrap(), (0, 0));
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, due).await.unwrap(), (1, 0));
    assert_eq!(
        unity::schedule::renew_due_certificates(&acme, &credentials, due).await.unwrap(),
        (1, 0),
        "the running order is reported, not ordered twice"
    );
    let old_id = certificate["id"].as_str().unwrap();
    let renewed = unity_commands::testing::eventually(Duration::from_secs(60), "the renewal", || async {
        let c = app
            .ok(Some(&admin), "query($id: ID!) { certificate(id: $id) { renewedBy } }", json!({ "id": old_id }))
            .await["certificate"]
            .clone();
        c["renewedBy"].as_str().map(str::to_owned)
    })
    .await;
    let orders = app
        .ok(
            Some(&admin),
            &format!("{{ acmeOrders(first: 10) {{ edges {{ node {{ {ORDER_FIELDS} }} }} }} }}"),
            json!({}),
        )
        .await;
    let renewal = orders["acmeOrders"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|o| o["renewalOf"] == old_id)
        .expect("the renewal's order")
        .clone();
    assert_eq!(renewal["status"], "VALID", "{renewal}");
    assert_eq!(renewal["domains"], json!(["localhost"]));
    assert_eq!(renewal["certificate"]["id"], renewed);
    assert_eq!(renewal["certificate"]["renewalOf"], old_id);
    assert_ne!(renewal["authorizations"][0]["token"], issued["authorizations"][0]["token"], "validated afresh");
    verify_chain(&pebble, &renewal["certificate"], &["localhost"]);

    let metrics = app.metrics().await;
    for line in ["unity_acme_orders{status=\"VALID\"} 2", "unity_acme_orders{status=\"INVALID\"} 1"] {
        assert!(metrics.contains(line), "/metrics lacks {line}");
    }

    // The directory gone when the renewal is due: the failed order is recorded on the
    // certificate with an expiry warning and the time of the next attempt.
    drop(pebble);
    let renewed_at = |field: &str| -> chrono::DateTime<chrono::Utc> {
        renewal["certificate"][field].as_str().unwrap().parse().unwrap()
    };
    let (from, until) = (renewed_at("notBefore"), renewed_at("notAfter"));
    let due = from + (until - from) * 3 / 4;
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, due).await.unwrap(), (1, 0));
    let query = "query($id: ID!) { certificate(id: $id) { renewalFailures lastRenewalError renewedBy } }";
    let failed = unity_commands::testing::eventually(Duration::from_secs(60), "the failed renewal", || async {
        let c = app.ok(Some(&admin), query, json!({ "id": renewed })).await["certificate"].clone();
        (c["renewalFailures"] == 1).then_some(c)
    })
    .await;
    assert!(failed["renewedBy"].is_null());
    assert!(!failed["lastRenewalError"].as_str().unwrap().is_empty(), "{failed}");
    let warnings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'CertificateExpiring' \
         AND payload->>'cause' = 'RENEWAL_FAILED'",
    )
    .bind(format!("certificate-{renewed}"))
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(warnings, 1);
    // The reactor records the failure at its own clock's time; the next attempt is an hour on.
    let next = app
        .ok(Some(&admin), "query($id: ID!) { certificate(id: $id) { nextRenewalAttemptAt } }", json!({ "id": renewed }))
        .await["certificate"]["nextRenewalAttemptAt"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let wait = next - chrono::Utc::now();
    assert!(wait > chrono::Duration::minutes(55) && wait <= chrono::Duration::hours(1), "{next}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn external_account_binding_is_required_and_honoured() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = scratch("eab");
    let options = PebbleOptions {
        http_port: app.port(),
        eab: Some((EAB_KID.into(), EAB_KEY.into())),
        ..PebbleOptions::default()
    };
    let pebble = Pebble::start(&dir, &options).unwrap();
    let base = json!({ "name": "zerossl-like", "directoryUrl": pebble.directory_url, "acceptTerms": true,
                       "caBundlePem": pebble.tls_ca_pem });

    // Without a binding the directory refuses, and says why.
    let refused = register(&app, &admin, base.clone()).await;
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert_eq!(refused["problemType"], "urn:ietf:params:acme:error:externalAccountRequired");
    assert!(refused["error"].as_str().unwrap().contains("externalAccountBinding"), "{refused}");
    // A key that is not base64url, or a kid without a key, never reaches the directory.
    let mut garbage = base.clone();
    garbage["eab"] = json!({ "kid": EAB_KID, "hmacKey": "not base64!" });
    assert_eq!(code(&register(&app, &admin, garbage).await), Some("BAD_USER_INPUT"));
    let mut no_url = base.clone();
    no_url["directoryUrl"] = json!("ftp://127.0.0.1/dir");
    assert_eq!(code(&register(&app, &admin, no_url).await), Some("BAD_USER_INPUT"));

    let account = account(&app, &admin, &pebble, json!({ "eab": { "kid": EAB_KID, "hmacKey": EAB_KEY } })).await;
    assert_eq!(account["eabKid"], EAB_KID);
    let issued = order(&app, &admin, json!({ "accountId": account["id"], "domains": ["localhost"] })).await;
    assert_eq!(issued["status"], "VALID", "{issued}\n{}", pebble.log());
    verify_chain(&pebble, &issued["certificate"], &["localhost"]);
    nowhere_in_events(&app, EAB_KEY).await;

    // An operator may order, not register.
    app.create_user(&admin, "op", "OPERATOR").await;
    let operator = app.login("op", crate::api::ADMIN_PASSWORD).await;
    let body = register(&app, &operator, base).await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    drop(pebble);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A webhook receiver that publishes through knotd, as a DNS API would; records each call.
async fn webhook_server(knotd: &Knotd) -> (String, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dns", listener.local_addr().unwrap());
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let dns = unity_collectors::acme::dns::Rfc2136 {
        server: knotd.address().parse().unwrap(),
        zone: knotd.zone.clone(),
        key: Some(unity_collectors::acme::dns::TsigKey {
            name: knotd.key_name.clone(),
            algorithm: unity_collectors::acme::dns::TsigAlgorithm::HmacSha256,
            secret: base64_decode(&knotd.secret),
        }),
        timeout: Duration::from_secs(5),
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then a body of content-length bytes.
            let (head, body) = loop {
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                request.extend_from_slice(&buffer[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while request.len() < end + 4 + length {
                        let n = socket.read(&mut buffer).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buffer[..n]);
                    }
                    break (head, request[end + 4..].to_vec());
                }
            };
            let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let authorization = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_owned()))
                .unwrap_or_default();
            let (fqdn, value) = (call["fqdn"].as_str().unwrap_or(""), call["value"].as_str().unwrap_or(""));
            let result = match call["action"].as_str() {
                Some("present") => dns.add_txt(fqdn, value, 60).await.map_err(|e| e.to_string()),
                Some("cleanup") => dns.remove_txt(fqdn, value).await.map_err(|e| e.to_string()),
                _ => Err("unknown action".into()),
            };
            seen.lock().unwrap().push((authorization, call));
            let status = if result.is_ok() { "200 OK" } else { "500 Internal Server Error" };
            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (url, calls)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::{engine::general_purpose::STANDARD, Engine};
    STANDARD.decode(text).unwrap()
}

#[actix_rt::test]
async fn dns01_goes_through_rfc2136_updates_to_knot_and_through_a_webhook() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = scratch("dns01");
    let secret = STANDARD.encode(uuid::Uuid::now_v7().as_bytes().repeat(2));
    let knotd = Knotd::start(&dir.join("knot"), "unity.test", &["www"], "unity-acme", &secret).unwrap();
    let options =
        PebbleOptions { http_port: app.port(), dns_server: Some(knotd.address()), ..PebbleOptions::default() };
    let pebble = Pebble::start(&dir.join("pebble"), &options).unwrap();
    let account = account(&app, &admin, &pebble, json!({})).await;

    let provider_fields = "id name kind server zone tsigKeyName tsigAlgorithm url hasSecret";
    let create = |input: Value| {
        let app = &app;
        let admin = &admin;
        async move { mutate(app, admin, "createDnsProvider", "CreateDnsProviderInput", provider_fields, input).await }
    };
    let knot = create(json!({ "name": "knot", "rfc2136": { "server": knotd.address(), "zone": "unity.test",
        "tsigKeyName": "unity-acme", "tsigAlgorithm": "HMAC_SHA256", "tsigSecret": secret } }))
    .await;
    assert_eq!(knot["kind"], "RFC2136", "{knot}");
    assert_eq!(knot["hasSecret"], true);

    // A wildcard and a name in one order: two TXT values at two names, both validated by
    // Pebble through knotd, both removed afterwards.
    let issued = order(
        &app,
        &admin,
        json!({ "accountId": account["id"], "domains": ["*.unity.test", "www.unity.test"], "challenge": "DNS01",
                "dnsProviderId": knot["id"] }),
    )
    .await;
    assert_eq!(issued["status"], "VALID", "{issued}\n{}", pebble.log());
    verify_chain(&pebble, &issued["certificate"], &["*.unity.test", "www.unity.test"]);
    let records: Vec<&str> =
        issued["authorizations"].as_array().unwrap().iter().filter_map(|a| a["record"].as_str()).collect();
    assert_eq!(records, ["_acme-challenge.unity.test.", "_acme-challenge.www.unity.test."], "{issued}");
    for name in ["_acme-challenge.unity.test", "_acme-challenge.www.unity.test"] {
        assert_eq!(knotd.query("TXT", name).unwrap().trim(), "", "{name} was cleaned up");
    }

    // The wrong TSIG secret: knotd refuses the update and the order says so.
    let wrong =
        create(json!({ "name": "knot, wrong key", "rfc2136": { "server": knotd.address(), "zone": "unity.test",
        "tsigKeyName": "unity-acme", "tsigSecret": STANDARD.encode([7u8; 32]) } }))
        .await;
    let failed = order(
        &app,
        &admin,
        json!({ "accountId": account["id"], "domains": ["www.unity.test"], "challenge": "DNS01", "dnsProviderId": wrong["id"] }),
    )
    .await;
    assert_eq!(failed["status"], "INVALID", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("BADSIG"), "{failed}");

    // A webhook provider: Unity POSTs present and cleanup with its bearer token.
    let (url, calls) = webhook_server(&knotd).await;
    let hook = create(json!({ "name": "hook", "webhook": { "url": url, "bearerToken": "hook-secret-5c1d" } })).await;
    assert_eq!(hook["kind"], "WEBHOOK", "{hook}");
    let issued = order(
        &app,
        &admin,
        json!({ "accountId": account["id"], "domains": ["api.unity.test"], "challenge": "DNS01", "dnsProviderId": hook["id"] }),
    )
    .await;
    assert_eq!(issued["status"], "VALID", "{issued}\n{}", pebble.log());
    let calls = calls.lock().unwrap().clone();
    let actions: Vec<&str> = calls.iter().map(|(_, c)| c["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["present", "cleanup"]);
    assert!(calls.iter().all(|(auth, _)| auth == "Bearer hook-secret-5c1d"));
    assert_eq!(calls[0].1["fqdn"], "_acme-challenge.api.unity.test.");
    assert_eq!(calls[0].1["domain"], "api.unity.test");
    assert_eq!(calls[0].1["value"].as_str().unwrap().len(), 43, "base64url of a SHA-256");

    // Bad providers are refused; secrets stay out of the log; deletion shreds.
    let body = create(json!({ "name": "x", "rfc2136": { "server": "no-port", "zone": "unity.test" } })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = create(json!({ "name": "x", "rfc2136": { "server": "127.0.0.1:53", "zone": "unity.test",
        "tsigKeyName": "k", "tsigSecret": "%%%" } }))
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    nowhere_in_events(&app, &secret).await;
    nowhere_in_events(&app, "hook-secret-5c1d").await;
    let deleted =
        app.ok(Some(&admin), "mutation($id: ID!) { deleteDnsProvider(id: $id) }", json!({ "id": hook["id"] })).await;
    assert_eq!(deleted["deleteDnsProvider"], true);
    let listed = app.ok(Some(&admin), "{ dnsProviders { name } }", json!({})).await;
    assert_eq!(listed["dnsProviders"], json!([{ "name": "knot" }, { "name": "knot, wrong key" }]));
    drop(pebble);
    drop(knotd);
    let _ = std::fs::remove_dir_all(&dir);
}
