//! The API as clients nobody on this project wrote meet it: the reference graphql-ws client,
//! Python's gql, graphql-js's introspection and `buildClientSchema`, urql with its defaults, GraphiQL in
//! headless Chromium (offline), promtool on /metrics; and GraphQL over HTTP's GET and media
//! types, driven over plain HTTP. The JavaScript checks live in web/checks (their packages come
//! from `npm ci --prefix web`, which scripts/provision.sh runs).

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::api::{code, spawn_app, spawn_app_with, TestApp, ADMIN_PASSWORD};

/// Runs `node web/checks/<script>` against `app` and returns its output; fails the test with
/// the script's own words if it fails.
async fn node(app: &TestApp, script: &str, token: &str) -> String {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("node_modules").is_dir(),
        "web/node_modules is missing: run `npm ci --prefix web` (scripts/test.sh does)"
    );
    check(app, "node", script, token).await
}

/// Runs `<program> web/checks/<script>` against `app`. (On a blocking thread: the application's
/// workers share the test's runtime and must go on meanwhile.)
async fn check(app: &TestApp, program: &str, script: &str, token: &str) -> String {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut command = Command::new(program);
    command
        .arg(web.join("checks").join(script))
        .current_dir(&web)
        .env("UNITY_URL", app.url(""))
        .env("UNITY_TOKEN", token)
        .env("UNITY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{program} on PATH (scripts/test.sh installs what the checks need): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

#[actix_rt::test]
async fn the_reference_graphql_ws_client_subscribes_pings_and_meets_every_close_code() {
    let app = spawn_app_with(&[("UNITY_WS_INIT_TIMEOUT_SECS", "2")]).await;
    let admin = app.admin().await;
    let out = node(&app, "graphql-ws.mjs", &admin).await;
    assert!(out.contains("graphql-ws: all checks passed"), "{out}");
}

#[actix_rt::test]
async fn python_gql_fetches_the_schema_with_its_defaults_and_subscribes() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let out = check(&app, "python3", "gql_client.py", &admin).await;
    assert!(out.contains("gql: all checks passed"), "{out}");
}

#[actix_rt::test]
async fn graphql_js_introspection_builds_a_client_schema_with_every_root_field_described() {
    let app = spawn_app().await;
    let out = node(&app, "introspection.mjs", "").await;
    assert!(out.contains("introspection: all checks passed"), "{out}");
}

#[actix_rt::test]
async fn urql_with_its_defaults_queries_over_get_mutates_over_post_and_pages_to_the_end() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Enough entries for several pages of seven.
    for i in 0..12 {
        app.ok(
            Some(&admin),
            "mutation($n: String!) { createApiKey(input: {name: $n, role: VIEWER}) { secret } }",
            json!({ "n": format!("k{i}") }),
        )
        .await;
    }
    let out = node(&app, "urql.mjs", &admin).await;
    assert!(out.contains("urql: all checks passed"), "{out}");
    let entries: i64 =
        out.lines().find_map(|l| l.strip_prefix("entries: ")).and_then(|n| n.parse().ok()).expect("a count");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&app.db.pool).await.unwrap();
    assert!(entries > 14, "several pages of seven: {entries}");
    assert_eq!(entries, stored, "paging to the end saw every audit entry");
}

#[actix_rt::test]
async fn graphiql_works_offline_in_headless_chromium() {
    let app = spawn_app().await;
    let out = node(&app, "graphiql.mjs", "").await;
    assert!(out.contains("graphiql: all checks passed"), "{out}");
}

/// `GET /metrics` with `accept`: the content type and the body.
async fn metrics_as(app: &TestApp, accept: &str) -> (String, String) {
    let mut response = app.client.get(app.url("/metrics")).insert_header(("accept", accept)).send().await.unwrap();
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    let body = response.body().limit(4 << 20).await.unwrap();
    (content_type, String::from_utf8_lossy(&body).into_owned())
}

fn promtool(metrics: &str) -> (bool, String) {
    let mut command = Command::new("promtool");
    command.args(["check", "metrics"]);
    run_with_input(command, metrics)
}

/// prometheus_client's OpenMetrics parser, which refuses anything the format does not allow.
fn openmetrics_parser(metrics: &str) -> (bool, String) {
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
         families = list(parse(sys.stdin.read()))\nprint(len(families), 'families')",
    ]);
    run_with_input(command, metrics)
}

fn run_with_input(mut command: Command, input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the checker on PATH (promtool, python3 with prometheus-client: scripts/test.sh installs them)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[actix_rt::test]
async fn metrics_pass_promtool_in_both_formats_and_readiness_survives_a_nats_outage() {
    let mut app = spawn_app().await;
    let admin = app.admin().await;
    // Something in every family that has labels.
    app.ok(Some(&admin), "{ me { id } }", json!({})).await;

    let (openmetrics_type, openmetrics) =
        metrics_as(&app, "application/openmetrics-text; version=1.0.0,text/plain;q=0.5").await;
    assert!(openmetrics_type.starts_with("application/openmetrics-text"), "{openmetrics_type}");
    assert!(openmetrics.ends_with("# EOF\n"));
    let (classic_type, classic) = metrics_as(&app, "text/plain; version=0.0.4").await;
    assert!(classic_type.starts_with("text/plain; version=0.0.4"), "{classic_type}");
    assert!(!classic.contains("# EOF") && classic.contains("# TYPE unity_http_requests_total counter"), "{classic}");
    let (_, default) = metrics_as(&app, "*/*").await;
    assert!(!default.contains("# EOF"), "plain clients get the classic format");
    // promtool reads the classic format only (an OpenMetrics counter family is named without
    // `_total`, which the classic parser takes for another metric); the OpenMetrics text goes
    // through the strict parser of Prometheus' own Python client instead.
    let (ok, said) = promtool(&classic);
    assert!(ok, "promtool check metrics: {said}\n{classic}");
    let (ok, said) = openmetrics_parser(&openmetrics);
    assert!(ok, "the OpenMetrics parser: {said}\n{openmetrics}");
    for text in [&openmetrics, &classic] {
        assert!(text.contains("unity_certificate_soonest_expiry_seconds"), "base units: {text}");
        assert!(!text.contains("_days"), "no metric in days: {text}");
    }

    // NATS goes away: the API still serves, so it stays ready and says what is wrong.
    app.nats.stop();
    let body = crate::api::eventually_json(&app, "/readyz", |b| b["nats"]["connected"] == false).await;
    assert_eq!((body["status"].as_str(), body["nats"]["configured"].as_bool()), (Some("ready"), Some(true)), "{body}");
    assert_eq!(app.get_status("/readyz").await, 200);
    app.ok(
        Some(&admin),
        "mutation { createApiKey(input: {name: \"during the outage\", role: VIEWER}) { secret } }",
        json!({}),
    )
    .await;
    let body = crate::api::eventually_json(&app, "/readyz", |b| b["relayLagEvents"].as_i64() > Some(0)).await;
    assert_eq!(body["status"], "ready", "{body}");
    let (_, classic) = metrics_as(&app, "text/plain; version=0.0.4").await;
    assert!(classic.contains("unity_nats_connected 0"), "{classic}");
    app.nats.resume().await;
    crate::api::eventually_json(&app, "/readyz", |b| b["nats"]["connected"] == true && b["relayLagEvents"] == 0).await;
}

/// `GET /graphql?…` with `accept`: status, content type, body.
async fn get_graphql(app: &TestApp, token: Option<&str>, query: &[(&str, &str)], accept: &str) -> (u16, String, Value) {
    let mut request = app.client.get(app.url("/graphql")).query(&query).unwrap().insert_header(("accept", accept));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.unwrap();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&response.body().await.unwrap()).unwrap();
    (response.status().as_u16(), content_type, body)
}

#[actix_rt::test]
async fn graphql_over_http_runs_queries_with_get_refuses_mutations_and_speaks_both_media_types() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let json = "application/json";
    let graphql_response = "application/graphql-response+json";

    // A query with GET, variables as JSON in the URL.
    let (status, content_type, body) = get_graphql(
        &app,
        Some(&admin),
        &[
            ("query", "query Q($f: Int) { users(first: $f) { edges { node { username } } } }"),
            ("variables", "{\"f\": 1}"),
            ("operationName", "Q"),
        ],
        json,
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, json), "{body}");
    assert_eq!(body["data"]["users"]["edges"][0]["node"]["username"], "admin");

    // A mutation with GET: 405, and nothing ran.
    let create = "mutation { createApiKey(input: {name: \"over get\", role: VIEWER}) { secret } }";
    let mut response = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", create)])
        .unwrap()
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get("allow").unwrap(), "POST");
    let body: Value = serde_json::from_slice(&response.body().await.unwrap()).unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    let made: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload->>'name' = 'over get'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(made, 0);

    // application/graphql-response+json when asked for: request errors are 400 there, but 200
    // under application/json (the draft's rule for the older media type).
    let (status, content_type, body) = get_graphql(&app, None, &[("query", "{ nope }")], graphql_response).await;
    assert_eq!((status, content_type.as_str()), (400, graphql_response), "{body}");
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    assert!(body.get("data").is_none(), "a request error has no data: {body}");
    let (status, content_type, _) = get_graphql(&app, None, &[("query", "{ nope }")], json).await;
    assert_eq!((status, content_type.as_str()), (200, json));
    let (status, content_type, body) =
        get_graphql(&app, None, &[("query", "{ me { id } }")], &format!("{graphql_response}, {json};q=0.9")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, graphql_response),
        "a field error is not a request error: {body}"
    );
    assert_eq!(code(&body), Some("UNAUTHENTICATED"));
    let mut response = app
        .client
        .post(app.url("/graphql"))
        .insert_header(("accept", graphql_response))
        .send_json(&json!({ "query": "{ me { id } " }))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers().get("content-type").unwrap(), graphql_response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");

    // GET without a query, and with variables that are not JSON: 400, a clear line.
    let (status, _, body) = get_graphql(&app, None, &[], json).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("?query="), "{body}");
    let (status, _, body) = get_graphql(&app, None, &[("query", "{ me { id } }"), ("variables", "{nope")], json).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["message"].as_str().unwrap().starts_with("`variables` must be a JSON object"), "{body}");

    // `/` points to what there is.
    let home = String::from_utf8(app.get("/").await).unwrap();
    assert!(home.contains("href=\"/graphiql\"") && home.contains("README"), "{home}");
}

#[actix_rt::test]
async fn without_the_collectors_role_server_operations_are_unavailable_at_once_and_readiness_says_why() {
    let app = crate::api::spawn_app_roles(&[unity::app::Role::Api, unity::app::Role::Projections], &[]).await;
    let admin = app.admin().await;
    let key = app
        .ok(Some(&admin), "mutation { generateSshKey(input: {name: \"login\", algorithm: ED25519}) { id } }", json!({}))
        .await;
    let server = app
        .ok(
            Some(&admin),
            "mutation($k: ID!) { registerServer(input: {name: \"nas\", address: \"127.0.0.1\", port: 2222, username: \"root\", authentication: {sshKeyId: $k}}) { id } }",
            json!({ "k": key["generateSshKey"]["id"] }),
        )
        .await["registerServer"]["id"]
        .clone();
    let started = std::time::Instant::now();
    let refused = app
        .graphql(
            Some(&admin),
            "mutation($s: ID!) { testServerConnection(serverId: $s) { succeeded } }",
            json!({ "s": server }),
        )
        .await;
    assert_eq!(code(&refused), Some("UNAVAILABLE"), "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("collectors role"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "not the full SSH wait of 30 s: {:?}",
        started.elapsed()
    );
    let requested: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type LIKE '%Requested'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(requested, 0, "nothing was left waiting for a reactor");
    let acme = app.graphql(Some(&admin), "mutation { registerAcmeAccount(input: {name: \"le\", preset: LETS_ENCRYPT_STAGING, acceptTerms: true}) { id } }", json!({})).await;
    assert_eq!(code(&acme), Some("UNAVAILABLE"), "{acme}");

    let ready = crate::api::eventually_json(&app, "/readyz", |b| b.get("reactors").is_some()).await;
    assert_eq!(
        (ready["status"].as_str(), &ready["reactors"]),
        (Some("ready"), &json!({ "ssh": false, "acme": false })),
        "{ready}"
    );
    let (_, metrics) = metrics_as(&app, "text/plain").await;
    assert!(metrics.contains("unity_reactor_active{reactor=\"ssh\"} 0"), "{metrics}");
}
