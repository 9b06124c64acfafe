//! The GraphQL API end to end: the whole application in-process on a random port, against real
//! PostgreSQL (and NATS where it matters), driven over HTTP and WebSocket as a client would.

use std::{collections::BTreeSet, time::Duration};

use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use unity::{
    app::{App, Role},
    config::Settings,
};
use unity_commands::testing::{NatsServer, TestDb};

use crate::websocket::{next, open, send, Received, Ws};

pub(crate) const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// The application on 127.0.0.1:<random>, its database, and a client.
pub(crate) struct TestApp {
    address: String,
    pub(crate) db: TestDb,
    pub(crate) client: awc::Client,
    _stop: watch::Sender<bool>,
    pub(crate) nats: NatsServer,
    key: std::path::PathBuf,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub(crate) async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    spawn_app_roles(&[Role::All], extra).await
}

/// The application running only `roles` (say, without the collectors).
pub(crate) async fn spawn_app_roles(roles: &'static [Role], extra: &[(&str, &str)]) -> TestApp {
    let (db, nats) = (TestDb::new().await, NatsServer::start().await);
    let key = crate::key_file();
    let key_path = key.clone();
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("NATS_URL".into(), nats.url()),
        ("UNITY_MASTER_KEY_FILE".into(), key.display().to_string()),
        ("UNITY_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
    let app = App::connect(settings).await.unwrap();
    app.migrate().await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (stop, stopped) = watch::channel(false);
    actix_rt::spawn(async move { app.serve(roles, Some(listener), stopped).await.unwrap() });
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let test_app = TestApp { address, db, client, _stop: stop, nats, key: key_path };
    for _ in 0..300 {
        if test_app.client.get(test_app.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return test_app;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the API did not come up");
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.address)
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub(crate) async fn post(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(self.url("/graphql"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send_json(body).await.expect("the API answers");
        let status = response.status().as_u16();
        let body = response.json::<Value>().limit(16 * 1024 * 1024).await.expect("a JSON body");
        (status, body)
    }

    pub(crate) async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.post(token, &json!({ "query": query, "variables": variables })).await.1
    }

    /// Runs a query that must succeed, returning its `data`.
    pub(crate) async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> String {
        let data = self
            .ok(
                None,
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token expiresAt user { username } } }",
                json!({ "u": username, "p": password }),
            )
            .await;
        data["login"]["token"].as_str().unwrap().to_owned()
    }

    /// Appends events of a non-identity stream type (what later domains will write), directly.
    pub(crate) async fn probe(&self, events: &[(&str, Value)]) {
        use unity_commands::store::{ExpectedVersion, NewEvent, StreamAppend};
        let metadata = std::sync::Arc::new(
            json!({ "actor": { "kind": "system", "id": null, "name": "test" }, "correlation_id": uuid::Uuid::now_v7(), "source": "test" }),
        );
        let appends = events
            .iter()
            .map(|(event_type, payload)| StreamAppend {
                stream_id: unity_domain::StreamId::new("probe", uuid::Uuid::now_v7()),
                expected: ExpectedVersion::NoStream,
                events: vec![NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: event_type.to_string(),
                    schema_version: 1,
                    payload: payload.clone(),
                    metadata: metadata.clone(),
                }],
            })
            .collect();
        self.db.store().append(appends).await.unwrap();
    }

    /// The vault on this app's database and master key, for commands the scheduler runs.
    async fn vault(&self) -> unity_commands::vault::Vault {
        let master = unity_commands::vault::MasterKey::load(&self.key).unwrap().expect("the app made its key");
        unity_commands::vault::Vault::open(master, self.db.store()).await.unwrap()
    }

    /// Every domain's commands on this app's database, for what a test drives by hand.
    pub(crate) async fn commands(&self) -> unity_commands::Commands {
        unity_commands::Commands::open(self.db.store(), self.vault().await)
    }

    pub(crate) async fn db_credentials(&self) -> unity_commands::credentials::CredentialCommands {
        unity_commands::credentials::CredentialCommands::new(self.db.store(), self.vault().await)
    }

    /// GETs a path; the body's bytes.
    pub(crate) async fn get(&self, path: &str) -> Vec<u8> {
        let mut response = self.client.get(self.url(path)).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.body().limit(4 << 20).await.unwrap().to_vec()
    }

    pub(crate) async fn get_status(&self, path: &str) -> u16 {
        self.client.get(self.url(path)).send().await.unwrap().status().as_u16()
    }

    pub(crate) async fn db_x509(&self) -> unity_commands::certificates::X509Commands {
        unity_commands::certificates::X509Commands::new(self.db.store(), self.vault().await)
    }

    pub(crate) async fn db_acme(&self) -> unity_commands::acme::AcmeCommands {
        unity_commands::acme::AcmeCommands::new(self.db_x509().await, self.vault().await)
    }

    /// The API's port (where Pebble must fetch HTTP-01 challenges).
    pub(crate) fn port(&self) -> u16 {
        self.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
    }

    pub(crate) async fn metrics(&self) -> String {
        let body = self.client.get(self.url("/metrics")).send().await.unwrap().body().limit(4 << 20).await.unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    pub(crate) async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub(crate) async fn create_user(&self, admin: &str, username: &str, role: &str) -> String {
        let data = self
            .ok(
                Some(admin),
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id username role } }",
                json!({ "i": { "username": username, "password": ADMIN_PASSWORD, "role": role } }),
            )
            .await;
        data["createUser"]["id"].as_str().unwrap().to_owned()
    }
}

/// GETs `path` until its JSON body satisfies `done` (within 30 s), and returns that body.
pub(crate) async fn eventually_json(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let done = &done;
    unity_commands::testing::eventually(Duration::from_secs(30), path, || async move {
        let mut response = app.client.get(app.url(path)).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        done(&body).then_some(body)
    })
    .await
}

pub(crate) fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Every root field of the schema, the least role it needs (`None`: anyone), and an operation
/// using it. A field added to the schema without a row here fails the test.
fn access_table(user_id: &str, key_id: &str) -> Vec<(&'static str, Option<&'static str>, String)> {
    vec![
        ("Query.me", Some("VIEWER"), "{ me { id } }".into()),
        ("Query.users", Some("ADMIN"), "{ users(first: 1) { edges { node { id } } } }".into()),
        ("Query.auditLog", Some("VIEWER"), "{ auditLog(first: 1) { edges { cursor } } }".into()),
        ("Query.projections", Some("VIEWER"), "{ projections { name } }".into()),
        (
            "Mutation.login",
            None,
            format!("mutation {{ login(username: \"admin\", password: \"{ADMIN_PASSWORD}\") {{ token }} }}"),
        ),
        ("Mutation.logout", Some("VIEWER"), "mutation { logout }".into()),
        (
            "Mutation.createUser",
            Some("ADMIN"),
            "mutation { createUser(input: {username: \"x\", password: \"short\", role: VIEWER}) { id } }".into(),
        ),
        (
            "Mutation.changeUserRole",
            Some("ADMIN"),
            format!("mutation {{ changeUserRole(input: {{userId: \"{user_id}\", role: VIEWER}}) {{ id }} }}"),
        ),
        ("Mutation.disableUser", Some("ADMIN"), "mutation { disableUser(userId: \"not-a-uuid\") { id } }".into()),
        (
            "Mutation.changePassword",
            Some("VIEWER"),
            "mutation { changePassword(input: {currentPassword: \"wrong\", newPassword: \"x\"}) }".into(),
        ),
        (
            "Mutation.createApiKey",
            Some("VIEWER"),
            "mutation { createApiKey(input: {name: \"\", role: VIEWER}) { secret } }".into(),
        ),
        // Anyone signed in revokes their own keys; this one is the admin's, so the others may not.
        ("Mutation.revokeApiKey", Some("ADMIN"), format!("mutation {{ revokeApiKey(id: \"{key_id}\") {{ id }} }}")),
        // Credentials: ids that do not parse, so an allowed caller gets BAD_USER_INPUT after the role check.
        ("Query.sshKeys", Some("VIEWER"), "{ sshKeys(first: 1) { edges { cursor } } }".into()),
        ("Query.sshKey", Some("VIEWER"), "{ sshKey(id: \"x\") { id } }".into()),
        ("Query.keyExposure", Some("VIEWER"), "{ keyExposure(input: {keyId: \"x\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\"}) { serverId } }".into()),
        ("Query.unusedSshKeys", Some("VIEWER"), "{ unusedSshKeys { id } }".into()),
        ("Query.unusedSshKeysReport", Some("VIEWER"), "{ unusedSshKeysReport { unusedDays } }".into()),
        ("Query.servers", Some("VIEWER"), "{ servers(first: 1) { edges { cursor } } }".into()),
        ("Query.server", Some("VIEWER"), "{ server(id: \"x\") { id } }".into()),
        ("Query.serverCredentials", Some("VIEWER"), "{ serverCredentials { id } }".into()),
        ("Query.serverCredential", Some("VIEWER"), "{ serverCredential(id: \"x\") { id } }".into()),
        ("Query.sshCertificateAuthorities", Some("VIEWER"), "{ sshCertificateAuthorities { id } }".into()),
        ("Query.sshCertificateAuthority", Some("VIEWER"), "{ sshCertificateAuthority(id: \"x\") { id } }".into()),
        ("Mutation.generateSshKey", Some("OPERATOR"), "mutation { generateSshKey(input: {name: \"\", algorithm: ED25519}) { id } }".into()),
        ("Mutation.importSshKey", Some("OPERATOR"), "mutation { importSshKey(input: {name: \"k\", publicKey: \"garbage\"}) { id } }".into()),
        ("Mutation.revealSshPrivateKey", Some("ADMIN"), "mutation { revealSshPrivateKey(id: \"x\") }".into()),
        ("Mutation.rotateSshKey", Some("OPERATOR"), "mutation { rotateSshKey(id: \"x\") { operations { state } } }".into()),
        ("Mutation.deleteSshKey", Some("OPERATOR"), "mutation { deleteSshKey(id: \"x\") { deleted } }".into()),
        ("Mutation.distributeSshKey", Some("OPERATOR"), "mutation { distributeSshKey(input: {keyId: \"x\", serverIds: []}) { state } }".into()),
        ("Mutation.removeSshKeyFromServers", Some("OPERATOR"), "mutation { removeSshKeyFromServers(input: {keyId: \"x\", serverIds: []}) { state } }".into()),
        ("Mutation.registerServer", Some("OPERATOR"), "mutation { registerServer(input: {name: \"\", address: \"h\", username: \"u\", authentication: {}}) { id } }".into()),
        ("Mutation.updateServer", Some("OPERATOR"), "mutation { updateServer(input: {id: \"x\"}) { id } }".into()),
        ("Mutation.removeServer", Some("OPERATOR"), "mutation { removeServer(id: \"x\") { id } }".into()),
        ("Mutation.acceptServerHostKey", Some("ADMIN"), "mutation { acceptServerHostKey(input: {serverId: \"x\", fingerprint: \"f\"}) { id } }".into()),
        ("Mutation.testServerConnection", Some("OPERATOR"), "mutation { testServerConnection(serverId: \"x\") { succeeded } }".into()),
        (
            "Mutation.configureMonitoring",
            Some("OPERATOR"),
            "mutation { configureMonitoring(input: {serverId: \"x\", enabled: true}) { enabled } }".into(),
        ),
        ("Mutation.collectNow", Some("OPERATOR"), "mutation { collectNow(serverId: \"x\") { at } }".into()),
        (
            "Mutation.overrideSmartAttribute",
            Some("OPERATOR"),
            "mutation { overrideSmartAttribute(input: {deviceId: \"x/y\", attributeId: \"5\", action: IGNORE}) { id } }".into(),
        ),
        ("Mutation.checkServerKeys", Some("OPERATOR"), "mutation { checkServerKeys(serverId: \"x\") { state } }".into()),
        ("Mutation.createServerCredential", Some("OPERATOR"), "mutation { createServerCredential(input: {name: \"\", kind: PASSWORD, username: \"u\", secret: \"\"}) { id } }".into()),
        ("Mutation.updateServerCredential", Some("OPERATOR"), "mutation { updateServerCredential(input: {id: \"x\"}) { id } }".into()),
        ("Mutation.deleteServerCredential", Some("OPERATOR"), "mutation { deleteServerCredential(id: \"x\") }".into()),
        ("Mutation.revealServerCredential", Some("ADMIN"), "mutation { revealServerCredential(id: \"x\") }".into()),
        ("Mutation.createSshCertificateAuthority", Some("ADMIN"), "mutation { createSshCertificateAuthority(input: {name: \"\", algorithm: ED25519}) { id } }".into()),
        ("Mutation.signSshCertificate", Some("OPERATOR"), "mutation { signSshCertificate(input: {caId: \"x\", publicKey: \"p\", certType: USER, keyId: \"k\", principals: [\"root\"], validAfter: \"2026-01-01T00:00:00Z\", validBefore: \"2026-01-02T00:00:00Z\"}) { serial } }".into()),
        ("Mutation.installSshCaOnServers", Some("OPERATOR"), "mutation { installSshCaOnServers(input: {caId: \"x\", serverIds: []}) { state } }".into()),
        ("Query.certificateAuthorities", Some("VIEWER"), "{ certificateAuthorities { id } }".into()),
        ("Query.certificateAuthority", Some("VIEWER"), "{ certificateAuthority(id: \"x\") { id } }".into()),
        ("Query.certificates", Some("VIEWER"), "{ certificates(first: 1) { edges { cursor } } }".into()),
        ("Query.certificate", Some("VIEWER"), "{ certificate(id: \"x\") { id } }".into()),
        ("Mutation.createCertificateAuthority", Some("ADMIN"), "mutation { createCertificateAuthority(input: {name: \"ca\", commonName: \"ca\", parentId: \"x\"}) { id } }".into()),
        ("Mutation.issueCertificate", Some("OPERATOR"), "mutation { issueCertificate(input: {caId: \"x\", commonName: \"a\"}) { id } }".into()),
        ("Mutation.importCertificate", Some("OPERATOR"), "mutation { importCertificate(input: {certificatePem: \"garbage\"}) { id } }".into()),
        ("Mutation.revokeCertificate", Some("OPERATOR"), "mutation { revokeCertificate(input: {id: \"x\"}) { id } }".into()),
        ("Mutation.configureCertificateRenewal", Some("OPERATOR"), "mutation { configureCertificateRenewal(input: {id: \"x\"}) { id } }".into()),
        ("Mutation.deployCertificate", Some("OPERATOR"), "mutation { deployCertificate(input: {certificateId: \"x\", serverId: \"x\", certPath: \"/x\"}) { state } }".into()),
        ("Mutation.revealCertificatePrivateKey", Some("ADMIN"), "mutation { revealCertificatePrivateKey(id: \"x\") }".into()),
        ("Query.acmeAccounts", Some("VIEWER"), "{ acmeAccounts { id } }".into()),
        ("Query.acmeAccount", Some("VIEWER"), "{ acmeAccount(id: \"x\") { id } }".into()),
        ("Query.acmeOrders", Some("VIEWER"), "{ acmeOrders(first: 1) { edges { cursor } } }".into()),
        ("Query.acmeOrder", Some("VIEWER"), "{ acmeOrder(id: \"x\") { id } }".into()),
        ("Query.dnsProviders", Some("VIEWER"), "{ dnsProviders { id } }".into()),
        ("Mutation.registerAcmeAccount", Some("ADMIN"), "mutation { registerAcmeAccount(input: {name: \"a\", directoryUrl: \"ftp://x\"}) { id } }".into()),
        ("Mutation.requestAcmeCertificate", Some("OPERATOR"), "mutation { requestAcmeCertificate(input: {accountId: \"x\", domains: [\"a.example\"]}) { id } }".into()),
        ("Mutation.createDnsProvider", Some("ADMIN"), "mutation { createDnsProvider(input: {name: \"d\"}) { id } }".into()),
        ("Mutation.deleteDnsProvider", Some("ADMIN"), "mutation { deleteDnsProvider(id: \"x\") }".into()),
        ("Query.checks", Some("VIEWER"), "{ checks { id } }".into()),
        ("Mutation.createCheck", Some("ADMIN"), "mutation { createCheck(input: {name: \"c\", command: \"true\"}) { id } }".into()),
        ("Mutation.deleteCheck", Some("ADMIN"), "mutation { deleteCheck(id: \"x\") }".into()),
        ("Subscription.events", Some("VIEWER"), "subscription { events { eventType } }".into()),
        ("Subscription.serverSamples", Some("VIEWER"), "subscription { serverSamples(serverIds: [\"x\"]) { serverId } }".into()),
    ]
}

#[actix_rt::test]
async fn every_field_checks_the_role_of_its_caller() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let target = app.create_user(&admin, "target", "VIEWER").await;
    let mut tokens = vec![("ADMIN", Some(admin.clone()))];
    for role in ["OPERATOR", "VIEWER"] {
        let name = role.to_lowercase();
        app.create_user(&admin, &name, role).await;
        tokens.push((role, Some(app.login(&name, ADMIN_PASSWORD).await)));
    }
    tokens.push(("nobody", None));
    // An API key of the admin's, which only an admin may revoke for someone else.
    let key = app
        .ok(Some(&admin), "mutation { createApiKey(input: {name: \"k\", role: VIEWER}) { apiKey { id } } }", json!({}))
        .await;
    let key_id = key["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    let table = access_table(&target, &key_id);

    // The table covers the schema exactly.
    let schema = app
        .ok(
            None,
            "{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }",
            json!({}),
        )
        .await;
    let mut fields = BTreeSet::new();
    for (root, key) in [("Query", "queryType"), ("Mutation", "mutationType"), ("Subscription", "subscriptionType")] {
        for f in schema["__schema"][key]["fields"].as_array().unwrap() {
            fields.insert(format!("{root}.{}", f["name"].as_str().unwrap()));
        }
    }
    let listed: BTreeSet<String> = table.iter().map(|(f, _, _)| f.to_string()).collect();
    assert_eq!(fields, listed, "every root field needs a row in the access table");

    let rank = |role: &str| ["nobody", "VIEWER", "OPERATOR", "ADMIN"].iter().position(|r| *r == role).unwrap();
    for (field, needs, operation) in &table {
        for (role, token) in &tokens {
            // Logout would end the session used for the rest of the table; it goes last below.
            if *field == "Mutation.logout" && token.is_some() {
                continue;
            }
            let body = if field.starts_with("Subscription.") {
                subscribe_once(&app, token.as_deref(), operation).await
            } else {
                app.graphql(token.as_deref(), operation, json!({})).await
            };
            let expected = match needs {
                None => None,
                Some(_) if token.is_none() => Some("UNAUTHENTICATED"),
                Some(needed) if rank(role) < rank(needed) => Some("FORBIDDEN"),
                Some(_) => None,
            };
            let got = code(&body).filter(|c| *c == "UNAUTHENTICATED" || *c == "FORBIDDEN");
            assert_eq!(got, expected, "{field} as {role}: {body}");
        }
    }
    for (role, token) in &tokens {
        if let Some(token) = token {
            let body = app.graphql(Some(token), "mutation { logout }", json!({})).await;
            assert_eq!(body["data"]["logout"], true, "logout as {role}: {body}");
        }
    }
}

/// Opens a graphql-transport-ws connection, subscribes, and returns the first answer to the
/// subscription (a `next` payload, or an `error` payload wrapped as `{"errors": …}`).
async fn subscribe_once(app: &TestApp, token: Option<&str>, query: &str) -> Value {
    let mut ws = connect_ws(app, token).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })).await;
    // A permitted subscription waits for events: make one that anyone signed in may read. One
    // made before the server has started the subscription is never delivered (it follows the
    // log from its start), so probe again until an answer comes.
    for _ in 0..100 {
        app.probe(&[("probe", json!({ "n": 0 }))]).await;
        while let Some(received) = next(&mut ws, Duration::from_millis(200)).await {
            let Received::Message(message) = received else { panic!("closed before answering: {received:?}") };
            match message["type"].as_str() {
                Some("next") => return message["payload"].clone(),
                Some("error") => return json!({ "errors": message["payload"] }),
                _ => {}
            }
        }
    }
    panic!("the subscription never answered");
}

pub(crate) async fn connect_ws(app: &TestApp, token: Option<&str>) -> Ws {
    let mut ws = open(app, "graphql-transport-ws").await;
    let payload = token.map_or(json!({}), |t| json!({ "Authorization": format!("Bearer {t}") }));
    send(&mut ws, json!({ "type": "connection_init", "payload": payload })).await;
    let ack = receive(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

/// The next message, or `{"type": "closed", "reason": …}` when the server closes.
pub(crate) async fn receive(ws: &mut Ws) -> Value {
    match next(ws, Duration::from_secs(20)).await.expect("a WebSocket message in time") {
        Received::Message(message) => message,
        Received::Closed(code, reason) => json!({ "type": "closed", "reason": format!("{code} {reason}") }),
    }
}

#[actix_rt::test]
async fn a_user_journey_reads_its_own_writes_and_every_mutation_names_its_actor() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let me = app.ok(Some(&admin), "{ me { id username role } }", json!({})).await;
    assert_eq!(me["me"]["username"], "admin");
    let admin_id = me["me"]["id"].as_str().unwrap().to_owned();

    // Read-your-writes: each query right after its mutation sees it.
    let ada = app.create_user(&admin, "ada", "VIEWER").await;
    let listed = app.ok(Some(&admin), "{ users { edges { node { id username role } } } }", json!({})).await;
    let names: Vec<&str> =
        listed["users"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["ada", "admin"]);
    let changed = app
        .ok(
            Some(&admin),
            "mutation($i: ChangeUserRoleInput!) { changeUserRole(input: $i) { role } }",
            json!({ "i": { "userId": ada, "role": "OPERATOR" } }),
        )
        .await;
    assert_eq!(changed["changeUserRole"]["role"], "OPERATOR");
    let ada_token = app.login("ada", ADMIN_PASSWORD).await;
    assert_eq!(app.ok(Some(&ada_token), "{ me { role } }", json!({})).await["me"]["role"], "OPERATOR");

    // Bad input: a clear BAD_USER_INPUT, nothing written.
    let short = app
        .graphql(
            Some(&admin),
            "mutation { createUser(input: {username: \"bob\", password: \"short\", role: VIEWER}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&short), Some("BAD_USER_INPUT"));
    assert!(short["errors"][0]["message"].as_str().unwrap().contains("at least 12 characters"), "{short}");
    let taken = app
        .graphql(
            Some(&admin),
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({ "i": { "username": "ADA", "password": ADMIN_PASSWORD, "role": "VIEWER" } }),
        )
        .await;
    assert_eq!(code(&taken), Some("CONFLICT"), "{taken}");

    // API keys: shown once, never above the creator's role, capped by it later, revocable.
    let above = app
        .graphql(
            Some(&ada_token),
            "mutation { createApiKey(input: {name: \"ci\", role: ADMIN}) { secret } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&above), Some("FORBIDDEN"), "{above}");
    let key = app
        .ok(
            Some(&ada_token),
            "mutation { createApiKey(input: {name: \"ci\", role: OPERATOR}) { secret apiKey { id name role } } }",
            json!({}),
        )
        .await;
    let secret = key["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let key_id = key["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("unity_key_"));
    assert_eq!(app.ok(Some(&secret), "{ me { username } }", json!({})).await["me"]["username"], "ada");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
        .bind(&secret[10..])
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the key's secret is never stored");
    let expired = app
        .graphql(
            Some(&ada_token),
            "mutation { createApiKey(input: {name: \"old\", role: VIEWER, expiresAt: \"2001-01-01T00:00:00Z\"}) { secret } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&expired), Some("BAD_USER_INPUT"), "{expired}");
    let revoked = app
        .ok(Some(&ada_token), "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", json!({ "id": key_id }))
        .await;
    assert!(revoked["revokeApiKey"]["revokedAt"].is_string());
    assert_eq!(code(&app.graphql(Some(&secret), "{ me { id } }", json!({})).await), Some("UNAUTHENTICATED"));

    // A password change ends every session of the user, and the new password works.
    let second_session = app.login("ada", ADMIN_PASSWORD).await;
    let wrong = app
        .graphql(
            Some(&ada_token),
            "mutation { changePassword(input: {currentPassword: \"not it at all\", newPassword: \"another long password\"}) }",
            json!({}),
        )
        .await;
    assert_eq!(code(&wrong), Some("BAD_USER_INPUT"));
    let changed = app
        .ok(
            Some(&ada_token),
            "mutation($c: String!) { changePassword(input: {currentPassword: $c, newPassword: \"another long password\"}) }",
            json!({ "c": ADMIN_PASSWORD }),
        )
        .await;
    assert_eq!(changed["changePassword"], true);
    for token in [&ada_token, &second_session] {
        assert_eq!(code(&app.graphql(Some(token), "{ me { id } }", json!({})).await), Some("UNAUTHENTICATED"));
    }
    let ada_token = app.login("ada", "another long password").await;
    let keep = app
        .ok(Some(&ada_token), "mutation { createApiKey(input: {name: \"keep\", role: VIEWER}) { secret } }", json!({}))
        .await;
    let keep = keep["createApiKey"]["secret"].as_str().unwrap().to_owned();

    // Logout ends only that session.
    let other = app.login("ada", "another long password").await;
    assert_eq!(app.ok(Some(&other), "mutation { logout }", json!({})).await["logout"], true);
    assert_eq!(code(&app.graphql(Some(&other), "{ me { id } }", json!({})).await), Some("UNAUTHENTICATED"));
    assert!(app.graphql(Some(&ada_token), "{ me { id } }", json!({})).await.get("errors").is_none());

    // Disabling: no login, no old session, no old API key.
    let disabled = app
        .ok(Some(&admin), "mutation($id: ID!) { disableUser(userId: $id) { disabled } }", json!({ "id": ada }))
        .await;
    assert_eq!(disabled["disableUser"]["disabled"], true);
    for token in [&ada_token, &keep] {
        assert_eq!(code(&app.graphql(Some(token), "{ me { id } }", json!({})).await), Some("UNAUTHENTICATED"));
    }
    let login = app
        .graphql(
            None,
            "mutation { login(username: \"ada\", password: \"another long password\") { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&login), Some("UNAUTHENTICATED"));

    // The audit log names the actor of every mutation.
    let audit = app
        .ok(
            Some(&admin),
            "query($f: AuditFilter) { auditLog(filter: $f, first: 100) { edges { node { eventType streamId actor { id username } payload } } } }",
            json!({ "f": { "streamId": format!("user-{ada}") } }),
        )
        .await;
    let entries: Vec<(String, String)> = audit["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["eventType"].as_str().unwrap().to_owned(),
                e["node"]["actor"]["username"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("UserCreated", "admin"),
        ("UserRoleChanged", "admin"),
        ("UserPasswordChanged", "ada"),
        ("UserDisabled", "admin"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(entries, expected);
    let created = &audit["auditLog"]["edges"][0]["node"];
    assert_eq!(created["actor"]["id"], admin_id.as_str());
    assert_eq!(created["payload"]["password_hash"]["ciphertext"], "[sealed]", "no ciphertext in API responses");

    // A viewer's audit log holds no identity events.
    let viewer_id = app.create_user(&admin, "vera", "VIEWER").await;
    let vera = app.login("vera", ADMIN_PASSWORD).await;
    app.probe(&[("Probed", json!({}))]).await;
    // Appended behind the API's back: wait for the audit log to show it.
    let types = unity_commands::testing::eventually(Duration::from_secs(20), "the probe in the audit log", || async {
        let seen = app.ok(Some(&vera), "{ auditLog(first: 100) { edges { node { streamType } } } }", json!({})).await;
        let types: BTreeSet<String> = seen["auditLog"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["streamType"].as_str().unwrap().to_owned())
            .collect();
        (!types.is_empty()).then_some(types)
    })
    .await;
    assert!(types.iter().all(|t| t == "probe"), "{types:?} (viewer {viewer_id})");
}

#[actix_rt::test]
async fn failed_logins_are_recorded_and_limited_per_username_and_per_address() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let body = app
            .graphql(
                None,
                "mutation { login(username: \"admin\", password: \"guess guess guess\") { token } }",
                json!({}),
            )
            .await;
        assert_eq!(code(&body), Some("UNAUTHENTICATED"));
        assert_eq!(body["errors"][0]["message"], "wrong username or password");
    }
    // The sixth attempt is refused before the password is looked at, even the right one.
    let limited = app
        .graphql(
            None,
            "mutation($p: String!) { login(username: \"admin\", password: $p) { token } }",
            json!({ "p": ADMIN_PASSWORD }),
        )
        .await;
    assert_eq!(code(&limited), Some("UNAUTHENTICATED"));
    assert!(limited["errors"][0]["message"].as_str().unwrap().contains("too many failed logins"), "{limited}");
    assert!(limited["errors"][0]["extensions"]["retryAfterSeconds"].as_i64().unwrap() > 0);
    // Unknown usernames count against the address: 20 failures in all, then everyone from it waits.
    for i in 0..15 {
        let body = app
            .graphql(
                None,
                "mutation($u: String!) { login(username: $u, password: \"guess guess guess\") { token } }",
                json!({ "u": format!("nobody{i}") }),
            )
            .await;
        assert_eq!(body["errors"][0]["message"], "wrong username or password", "attempt {i}");
    }
    let from_address = app
        .graphql(
            None,
            "mutation { login(username: \"someone\", password: \"guess guess guess\") { token } }",
            json!({}),
        )
        .await;
    assert!(
        from_address["errors"][0]["message"].as_str().unwrap().contains("too many failed logins"),
        "{from_address}"
    );
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'reason' FROM events WHERE event_type = 'LoginFailed' ORDER BY global_position",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(recorded.iter().filter(|r| *r == "WRONG_PASSWORD").count(), 5);
    assert_eq!(recorded.iter().filter(|r| *r == "UNKNOWN_USER").count(), 15);
    // One record per lock, however many refused attempts.
    assert_eq!(recorded.iter().filter(|r| *r == "RATE_LIMITED").count(), 2, "{recorded:?}");
}

#[actix_rt::test]
async fn subscribers_get_each_matching_event_once_in_order_and_only_what_their_role_may_read() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.create_user(&admin, "vera", "VIEWER").await;
    let vera = app.login("vera", ADMIN_PASSWORD).await;
    let mut admin_ws = connect_ws(&app, Some(&admin)).await;
    let mut viewer_ws = connect_ws(&app, Some(&vera)).await;
    let query = "subscription { events { position eventType streamType payload actor { username } } }";
    for ws in [&mut admin_ws, &mut viewer_ws] {
        send(ws, json!({ "id": "s", "type": "subscribe", "payload": { "query": query } })).await;
    }
    let filtered = "subscription { events(filter: {eventTypes: [\"Odd\"]}) { payload } }";
    send(&mut viewer_ws, json!({ "id": "odd", "type": "subscribe", "payload": { "query": filtered } })).await;
    // Let the subscriptions start: a first probe that both must see.
    app.probe(&[("Start", json!({}))]).await;
    for ws in [&mut admin_ws, &mut viewer_ws] {
        loop {
            let m = receive(ws).await;
            if m["payload"]["data"]["events"]["eventType"] == "Start" {
                break;
            }
        }
    }
    // 200 events in 20 appends, with identity events between them.
    for batch in 0..20 {
        let events: Vec<(&str, Value)> = (0..10)
            .map(|i| (if (batch * 10 + i) % 2 == 1 { "Odd" } else { "Even" }, json!({ "n": batch * 10 + i })))
            .collect();
        app.probe(&events).await;
        if batch == 10 {
            app.create_user(&admin, "secret-admin", "ADMIN").await;
        }
    }
    let mut viewer_all = Vec::new();
    let mut viewer_odd = Vec::new();
    while viewer_all.len() < 200 || viewer_odd.len() < 100 {
        let m = receive(&mut viewer_ws).await;
        assert_eq!(m["type"], "next", "{m}");
        let data = &m["payload"]["data"]["events"];
        match m["id"].as_str() {
            Some("s") => {
                assert_eq!(data["streamType"], "probe", "a viewer never sees identity events: {m}");
                viewer_all.push(data["payload"]["n"].as_i64().unwrap());
            }
            Some("odd") => viewer_odd.push(data["payload"]["n"].as_i64().unwrap()),
            other => panic!("unexpected operation {other:?}"),
        }
    }
    // Each event once, in log order (each append's events are in order, appends in sequence).
    assert_eq!(viewer_all, (0..200).collect::<Vec<_>>());
    assert_eq!(viewer_odd, (0..200).filter(|n| n % 2 == 1).collect::<Vec<_>>());
    // The admin sees the identity events too, and no ciphertext.
    let mut admin_types = BTreeSet::new();
    let mut probes = 0;
    while probes < 200 || !admin_types.contains("UserCreated") {
        let m = receive(&mut admin_ws).await;
        let data = &m["payload"]["data"]["events"];
        admin_types.insert(data["eventType"].as_str().unwrap().to_owned());
        if data["streamType"] == "probe" {
            probes += 1;
        }
        assert!(!m.to_string().contains("ciphertext\":\"AA") && !m.to_string().contains(ADMIN_PASSWORD));
        if data["eventType"] == "UserCreated" {
            assert_eq!(data["payload"]["password_hash"]["ciphertext"], "[sealed]");
            assert_eq!(data["actor"]["username"], "admin");
        }
    }
    // An invalid token is refused at connection_init.
    let mut ws = open(&app, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "token": "unity_session_nope" } })).await;
    let refused = receive(&mut ws).await;
    assert_eq!(refused["type"], "closed", "{refused}");
}

#[actix_rt::test]
async fn oversized_deep_and_malformed_requests_are_refused_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // A depth bomb through the recursive introspection types.
    let mut deep = String::from("name");
    for _ in 0..40 {
        deep = format!("ofType {{ {deep} }}");
    }
    let bomb =
        app.graphql(None, &format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}"), json!({})).await;
    assert_eq!(code(&bomb), Some("BAD_USER_INPUT"), "{bomb}");
    assert!(bomb["errors"][0]["message"].as_str().unwrap().contains("nesting exceeds"), "{bomb}");
    // An alias flood.
    let aliases: String = (0..2000).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let flood = app.graphql(Some(&admin), &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code(&flood), Some("BAD_USER_INPUT"), "{flood}");
    assert!(flood["errors"][0]["message"].as_str().unwrap().contains("limit of"), "{flood}");
    // A fragment bomb: each fragment spreads the previous one twice.
    let mut fragments = String::from("fragment f0 on User { id username }");
    for i in 1..20 {
        fragments.push_str(&format!(" fragment f{i} on User {{ ...f{} ...f{} }}", i - 1, i - 1));
    }
    let fragment_bomb = app.graphql(Some(&admin), &format!("{{ me {{ ...f19 }} }} {fragments}"), json!({})).await;
    assert_eq!(code(&fragment_bomb), Some("BAD_USER_INPUT"), "{fragment_bomb}");
    // A 10 MB body.
    let big = json!({ "query": format!("{{ me {{ id }} }} # {}", "x".repeat(10 * 1024 * 1024)) });
    let (status, body) = app.post(None, &big).await;
    assert_eq!((status, code(&body)), (413, Some("BAD_USER_INPUT")), "{body}");
    // Malformed JSON.
    let mut response = app
        .client
        .post(app.url("/graphql"))
        .insert_header(("content-type", "application/json"))
        .send_body("{\"query\": ")
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    // A WebSocket message over the limit closes that connection only.
    let mut ws = connect_ws(&app, Some(&admin)).await;
    let huge = json!({ "id": "x", "type": "subscribe", "payload": { "query": format!("subscription {{ events {{ eventType }} }} # {}", "y".repeat(200_000)) } });
    ws.send(awc::ws::Message::Text(huge.to_string().into())).await.unwrap();
    let closed = receive(&mut ws).await;
    assert_eq!(closed["type"], "closed", "{closed}");
    assert!(closed["reason"].as_str().unwrap().contains("exceeds the limit"), "{closed}");

    // Everyone else is still served.
    let me = app.ok(Some(&admin), "{ me { username } }", json!({})).await;
    assert_eq!(me["me"]["username"], "admin");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().body().await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    for name in [
        "unity_http_requests_total{",
        "unity_http_request_duration_seconds_bucket{",
        "unity_events_appended_total",
        "unity_projection_position{projection=\"users\"}",
        "unity_projection_lag_events{projection=\"audit_log\"}",
        "unity_graphql_rejected_requests_total",
        "unity_relay_lag_events",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let rejected = metrics.lines().find(|l| l.starts_with("unity_graphql_rejected_requests_total")).unwrap();
    assert!(rejected.ends_with(" 6"), "{rejected}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

#[actix_rt::test]
async fn the_first_run_creates_admin_once_with_a_one_time_password() {
    let db = TestDb::new().await;
    let vars = [("DATABASE_URL", db.url.clone()), ("UNITY_MASTER_KEY_FILE", crate::key_file().display().to_string())];
    let settings = Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap();
    let app = App::connect(settings).await.unwrap();
    app.migrate().await.unwrap();
    let identity = app.commands().await.unwrap().identity;
    let password = app.ensure_first_admin(&identity).await.unwrap().expect("a generated password");
    assert!(password.len() >= 20);
    assert_eq!(app.ensure_first_admin(&identity).await.unwrap(), None, "only once");
    // No projections run here: check the log, and that the password verifies.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserCreated'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);
    let stored: Value =
        sqlx::query_scalar("SELECT payload->'password_hash' FROM events WHERE event_type = 'UserCreated'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let hash: unity_domain::SecretRef = serde_json::from_value(stored).unwrap();
    assert!(identity.verify_password(&hash, &password).await.unwrap());
}
