//! Credentials end to end: SSH keys, servers, distribution, rotation, deletion, drift, host keys
//! and SSH certificates, against real sshd instances on loopback, checked from outside with
//! `ssh-keygen` and `ssh`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, OnceLock},
};

use serde_json::{json, Value};
use unity_collectors::testing::sshd::Sshd;
use unity_domain::servers::managed_block::{BEGIN_MARKER, END_MARKER};

use crate::api::{code, spawn_app, TestApp};

/// Everything the application logs while these tests run, to search for secrets.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=warn,russh=info,actix_server=info,actix_http=info,h2=warn,async_nats=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("unity-ssh-{name}-{}", uuid::Uuid::now_v7().simple()))
}

fn sh(command: &mut Command) -> String {
    let output = command.output().expect("run a tool");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ssh-keygen -l` of a public key line: its `SHA256:` fingerprint.
fn keygen_fingerprint(public_key: &str, dir: &Path) -> String {
    let file = dir.join(format!("k{}.pub", uuid::Uuid::now_v7().simple()));
    std::fs::write(&file, format!("{public_key}\n")).unwrap();
    sh(Command::new("ssh-keygen").arg("-lf").arg(&file)).split_whitespace().nth(1).unwrap().to_owned()
}

/// Logs in with the system `ssh` client and runs `true`; whether sshd let the key in.
fn ssh_login(sshd: &Sshd, private_key: &str, certificate: Option<&str>) -> bool {
    let dir = temp_dir("client");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id");
    std::fs::write(&key, private_key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut command = Command::new("ssh");
    command.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
    ]);
    command.arg("-i").arg(&key).arg("-p").arg(sshd.port.to_string());
    if let Some(cert) = certificate {
        let file = dir.join("id-cert.pub");
        std::fs::write(&file, format!("{cert}\n")).unwrap();
        command.arg("-o").arg(format!("CertificateFile={}", file.display()));
    }
    command.arg("root@127.0.0.1").arg("true");
    command.status().expect("run ssh").success()
}

const KEY_FIELDS: &str = "id name algorithm bits fingerprint publicKey comment tags origin hasPrivateKey lastUsedAt \
     replacedBy deletedAt installations { serverId serverName file { kind user path } installedAt removedAt }";

async fn generate_key(app: &TestApp, token: &str, name: &str) -> Value {
    let data = app
        .ok(
            Some(token),
            &format!("mutation($i: GenerateSshKeyInput!) {{ generateSshKey(input: $i) {{ {KEY_FIELDS} }} }}"),
            json!({ "i": { "name": name, "algorithm": "ED25519", "comment": format!("{name}@unity"), "tags": ["env:lab"] } }),
        )
        .await;
    data["generateSshKey"].clone()
}

async fn reveal(app: &TestApp, token: &str, key_id: &str) -> String {
    let data =
        app.ok(Some(token), "mutation($id: ID!) { revealSshPrivateKey(id: $id) }", json!({ "id": key_id })).await;
    data["revealSshPrivateKey"].as_str().unwrap().to_owned()
}

async fn register(
    app: &TestApp,
    token: &str,
    name: &str,
    sshd: &Sshd,
    login_key: &str,
    host_key: Option<String>,
) -> Value {
    let data = app
        .ok(
            Some(token),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id name hostKeyStatus hostKeyFingerprint } }",
            json!({ "i": {
                "name": name, "address": "127.0.0.1", "port": sshd.port, "username": "root",
                "authentication": { "sshKeyId": login_key }, "hostKeyFingerprint": host_key,
                "authorizedKeysFile": sshd.authorized_keys().display().to_string(), "tags": ["lab"],
            } }),
        )
        .await;
    data["registerServer"].clone()
}

const OPERATION: &str = "requestId serverId kind state error";

async fn distribute(app: &TestApp, token: &str, key_id: &str, servers: &[&str]) -> Vec<Value> {
    let data = app
        .ok(
            Some(token),
            &format!("mutation($i: DistributeSshKeyInput!) {{ distributeSshKey(input: $i) {{ {OPERATION} }} }}"),
            json!({ "i": { "keyId": key_id, "serverIds": servers } }),
        )
        .await;
    data["distributeSshKey"].as_array().unwrap().clone()
}

async fn server(app: &TestApp, token: &str, id: &str) -> Value {
    let query = "query($id: ID!) { server(id: $id) { id hostKeyStatus hostKeyFingerprint presentedHostKeyFingerprint os \
                 kernel hostname rttMs lastTestError keyDrift { file { kind user } unexpectedLines missingKeys { id fingerprint } } \
                 installedKeys { entryId entryKind fingerprint } } }";
    app.ok(Some(token), query, json!({ "id": id })).await["server"].clone()
}

async fn test_connection(app: &TestApp, token: &str, id: &str) -> Value {
    app.ok(
        Some(token),
        "mutation($id: ID!) { testServerConnection(serverId: $id) { succeeded error os kernel hostname rttMs server { hostKeyStatus } } }",
        json!({ "id": id }),
    )
    .await["testServerConnection"]
        .clone()
}

fn states(operations: &[Value]) -> Vec<(String, String)> {
    operations
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().to_owned(), o["state"].as_str().unwrap().to_owned()))
        .collect()
}

/// An authorized_keys file of someone's own making: comments, options, a blank line, no final newline.
const UNMANAGED: &str = "# keys of the people who run this box\n\
    from=\"10.0.0.0/8\",no-agent-forwarding ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGyJ1wHqe3XWJ0CfCs1WZLWK0Od+2x3PxThvDaP3vJ0B ops@bastion\n\
    \n\
    command=\"/usr/local/bin/backup --serve\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnU0lIDnIQRXz0TSv4gF4Ie6xNUwkb5rRIqWPlVyvGz backup";

#[actix_rt::test]
async fn ssh_keys_are_made_imported_and_refused_with_clear_reasons() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = temp_dir("keys");
    std::fs::create_dir_all(&dir).unwrap();

    // Generated keys: what ssh-keygen sees is what Unity says.
    for (algorithm, bits, size) in
        [("ED25519", None, 256), ("ECDSA_P256", None, 256), ("ECDSA_P384", None, 384), ("RSA", Some(2048), 2048)]
    {
        let data = app
            .ok(
                Some(&admin),
                "mutation($i: GenerateSshKeyInput!) { generateSshKey(input: $i) { id algorithm bits fingerprint publicKey comment } }",
                json!({ "i": { "name": format!("k-{algorithm}"), "algorithm": algorithm, "bits": bits, "comment": "c" } }),
            )
            .await;
        let key = &data["generateSshKey"];
        assert_eq!(key["algorithm"], algorithm);
        assert_eq!(key["bits"], size);
        let public_key = key["publicKey"].as_str().unwrap();
        assert_eq!(key["fingerprint"], keygen_fingerprint(public_key, &dir), "{algorithm}");
        // The revealed private key is a working OpenSSH key with the same public half.
        let private = reveal(&app, &admin, key["id"].as_str().unwrap()).await;
        let file = dir.join(format!("{algorithm}.key"));
        std::fs::write(&file, &private).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let derived = sh(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&file));
        assert_eq!(
            derived.split_whitespace().take(2).collect::<Vec<_>>(),
            public_key.split_whitespace().take(2).collect::<Vec<_>>()
        );
    }
    let small = app
        .graphql(
            Some(&admin),
            "mutation { generateSshKey(input: {name: \"small\", algorithm: RSA, bits: 1024}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&small), Some("BAD_USER_INPUT"), "{small}");
    assert!(small["errors"][0]["message"].as_str().unwrap().contains("at least 2048 bits"), "{small}");

    // Imports, made by ssh-keygen: encrypted OpenSSH, PEM, a 1024-bit RSA key, public only.
    let make = |name: &str, args: &[&str]| {
        let path = dir.join(name);
        sh(Command::new("ssh-keygen").args(["-q", "-C", name, "-f"]).arg(&path).args(args));
        (std::fs::read_to_string(&path).unwrap(), std::fs::read_to_string(path.with_extension("pub")).unwrap())
    };
    let (encrypted, encrypted_pub) = make("enc", &["-t", "ed25519", "-N", "sesame-open"]);
    let (pem, pem_pub) = make("pem", &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]);
    let (weak, _) = make("weak", &["-t", "rsa", "-b", "1024", "-N", ""]);
    let import = |input: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.graphql(
                Some(&admin),
                "mutation($i: ImportSshKeyInput!) { importSshKey(input: $i) { id fingerprint hasPrivateKey algorithm bits } }",
                json!({ "i": input }),
            )
            .await
        }
    };
    let refused = |body: &Value, words: &str| {
        assert_eq!(code(body), Some("BAD_USER_INPUT"), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(words), "'{message}' should say '{words}'");
    };
    refused(&import(json!({ "name": "e", "privateKey": encrypted })).await, "give its passphrase");
    refused(
        &import(json!({ "name": "e", "privateKey": encrypted, "passphrase": "wrong" })).await,
        "passphrase does not open",
    );
    let ok = import(json!({ "name": "e", "privateKey": encrypted, "passphrase": "sesame-open" })).await;
    assert_eq!(ok["data"]["importSshKey"]["fingerprint"], keygen_fingerprint(&encrypted_pub, &dir), "{ok}");
    let ok = import(json!({ "name": "p", "privateKey": pem })).await;
    assert_eq!(ok["data"]["importSshKey"]["fingerprint"], keygen_fingerprint(&pem_pub, &dir), "{ok}");
    assert_eq!(ok["data"]["importSshKey"]["bits"], 2048);
    refused(&import(json!({ "name": "w", "privateKey": weak })).await, "at least 2048 bits; this one has 1024");
    refused(&import(json!({ "name": "m", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n" })).await, "not a private key");
    refused(&import(json!({ "name": "g", "privateKey": "x".repeat(1_000_000) })).await, "keys are at most");
    refused(
        &import(json!({ "name": "g", "publicKey": "ssh-ed25519 !!!! garbage" })).await,
        "not an OpenSSH public key",
    );
    refused(&import(json!({ "name": "mix", "privateKey": pem, "publicKey": encrypted_pub })).await, "does not belong");
    let public_only = import(json!({ "name": "bob's laptop", "publicKey": encrypted_pub })).await;
    assert_eq!(public_only["data"]["importSshKey"]["hasPrivateKey"], false, "{public_only}");
    let id = public_only["data"]["importSshKey"]["id"].as_str().unwrap();
    let body =
        app.graphql(Some(&admin), "mutation($id: ID!) { revealSshPrivateKey(id: $id) }", json!({ "id": id })).await;
    refused(&body, "without its private half");

    // Reveals are for admins, and each is recorded with who asked.
    app.create_user(&admin, "op", "OPERATOR").await;
    let operator = app.login("op", crate::api::ADMIN_PASSWORD).await;
    let key = generate_key(&app, &operator, "ops-key").await;
    let key_id = key["id"].as_str().unwrap();
    let body = app
        .graphql(Some(&operator), "mutation($id: ID!) { revealSshPrivateKey(id: $id) }", json!({ "id": key_id }))
        .await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    reveal(&app, &admin, key_id).await;
    let audit = app
        .ok(
            Some(&admin),
            "{ auditLog(first: 100, filter: {eventTypes: [\"SecretRevealed\"]}) { edges { node { actor { username } payload } } } }",
            json!({}),
        )
        .await;
    let reveals: Vec<&Value> = audit["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["payload"]["purpose"].as_str().unwrap_or("").contains(key_id))
        .collect();
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0]["node"]["actor"]["username"], "admin");
}

#[actix_rt::test]
async fn keys_are_distributed_rotated_and_deleted_on_real_servers() {
    let logs = captured_logs();
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = temp_dir("fleet");
    let one = Sshd::start(&dir.join("one")).unwrap();
    let mut two = Sshd::start(&dir.join("two")).unwrap();

    // Unity's login key sits in each server's own (unmanaged) lines, as an admin would put it.
    let login = generate_key(&app, &admin, "unity-login").await;
    let login_id = login["id"].as_str().unwrap();
    let login_line = login["publicKey"].as_str().unwrap();
    let original = format!("{UNMANAGED}\n{login_line}");
    for sshd in [&one, &two] {
        std::fs::write(sshd.authorized_keys(), &original).unwrap();
        std::fs::set_permissions(sshd.authorized_keys(), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    }
    // One server's host key is given up front, the other's is trusted on first use.
    let s1 = register(&app, &admin, "one", &one, login_id, Some(one.host_key_fingerprint().unwrap())).await;
    let s2 = register(&app, &admin, "two", &two, login_id, None).await;
    assert_eq!(s1["hostKeyStatus"], "PINNED");
    assert_eq!(s2["hostKeyStatus"], "UNKNOWN");
    let (s1, s2) = (s1["id"].as_str().unwrap().to_owned(), s2["id"].as_str().unwrap().to_owned());
    for id in [&s1, &s2] {
        let test = test_connection(&app, &admin, id).await;
        assert_eq!(test["succeeded"], true, "{test}");
        assert!(test["kernel"].as_str().unwrap().chars().next().unwrap().is_ascii_digit(), "{test}");
        assert!(!test["hostname"].as_str().unwrap().is_empty() && !test["os"].as_str().unwrap().is_empty(), "{test}");
        assert!(test["rttMs"].as_f64().unwrap() > 0.0);
    }
    let pinned = server(&app, &admin, &s2).await;
    assert_eq!(pinned["hostKeyStatus"], "PINNED");
    assert_eq!(pinned["hostKeyFingerprint"], two.host_key_fingerprint().unwrap(), "first use pins the real host key");
    let used =
        app.ok(Some(&admin), "query($id: ID!) { sshKey(id: $id) { lastUsedAt } }", json!({ "id": login_id })).await;
    assert!(used["sshKey"]["lastUsedAt"].is_string(), "Unity's sessions mark the login key used: {used}");

    // Distribution: into the managed block only; the key then logs in for real.
    let deploy = generate_key(&app, &admin, "deploy").await;
    let deploy_id = deploy["id"].as_str().unwrap().to_owned();
    let deploy_private = reveal(&app, &admin, &deploy_id).await;
    assert!(!ssh_login(&one, &deploy_private, None), "not installed yet");
    let ops = distribute(&app, &admin, &deploy_id, &[&s1, &s2]).await;
    assert_eq!(states(&ops), vec![("INSTALL".into(), "SUCCEEDED".into()); 2], "{ops:?}");
    for sshd in [&one, &two] {
        let content = std::fs::read_to_string(sshd.authorized_keys()).unwrap();
        assert!(content.starts_with(&original), "the file's own lines are untouched, byte for byte");
        assert_eq!(
            &content[original.len()..],
            format!("\n{BEGIN_MARKER}\n{}\n{END_MARKER}\n", deploy["publicKey"].as_str().unwrap())
        );
        assert!(ssh_login(sshd, &deploy_private, None), "sshd accepts the distributed key");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(sshd.authorized_keys()).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o640, "the rewritten file keeps its mode");
    }
    // Distributing again changes nothing.
    let again = distribute(&app, &admin, &deploy_id, &[&s1]).await;
    assert_eq!(states(&again), vec![("INSTALL".into(), "SUCCEEDED".into())]);
    assert_eq!(
        std::fs::read_to_string(one.authorized_keys()).unwrap().matches(deploy["publicKey"].as_str().unwrap()).count(),
        1
    );
    let installed = app
        .ok(
            Some(&admin),
            &format!("query($id: ID!) {{ sshKey(id: $id) {{ {KEY_FIELDS} }} }}"),
            json!({ "id": deploy_id }),
        )
        .await;
    let names: Vec<&str> = installed["sshKey"]["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["serverName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["one", "two"]);

    // Removal from one server: its block empties, everything else stays.
    let removed = app
        .ok(
            Some(&admin),
            &format!("mutation($i: RemoveSshKeyFromServersInput!) {{ removeSshKeyFromServers(input: $i) {{ {OPERATION} }} }}"),
            json!({ "i": { "keyId": deploy_id, "serverIds": [s2] } }),
        )
        .await;
    assert_eq!(
        states(removed["removeSshKeyFromServers"].as_array().unwrap()),
        vec![("REMOVE".into(), "SUCCEEDED".into())]
    );
    assert_eq!(
        std::fs::read_to_string(two.authorized_keys()).unwrap(),
        format!("{original}\n{BEGIN_MARKER}\n{END_MARKER}\n")
    );
    assert!(!ssh_login(&two, &deploy_private, None));

    // Drift: a key added by hand inside the block, and Unity's key taken out by hand.
    let hand = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBYTqdnlrv2CbQm6FcbRyV2FJ4Ij7yC6IXLNCqCyW6Ux added-by-hand";
    let edited =
        std::fs::read_to_string(one.authorized_keys()).unwrap().replace(deploy["publicKey"].as_str().unwrap(), hand);
    std::fs::write(one.authorized_keys(), edited).unwrap();
    let check = app
        .ok(
            Some(&admin),
            &format!("mutation($id: ID!) {{ checkServerKeys(serverId: $id) {{ {OPERATION} }} }}"),
            json!({ "id": s1 }),
        )
        .await;
    assert_eq!(check["checkServerKeys"]["state"], "SUCCEEDED", "{check}");
    let drifted = server(&app, &admin, &s1).await;
    let drift = &drifted["keyDrift"][0];
    assert_eq!(drift["unexpectedLines"], json!([hand]), "{drifted}");
    assert_eq!(drift["missingKeys"][0]["id"], deploy_id.as_str(), "{drifted}");
    let events = app
        .ok(Some(&admin), "{ auditLog(first: 10, filter: {eventTypes: [\"KeyDriftDetected\"]}) { edges { node { streamId payload } } } }", json!({}))
        .await;
    let drift_events = events["auditLog"]["edges"].as_array().unwrap();
    assert_eq!(drift_events.len(), 1, "{events}");
    assert_eq!(drift_events[0]["node"]["payload"]["unexpected"], json!([hand]));
    // Put right by distributing again; the hand-made line is left for a person to judge.
    distribute(&app, &admin, &deploy_id, &[&s1]).await;
    app.ok(Some(&admin), "mutation($id: ID!) { checkServerKeys(serverId: $id) { state } }", json!({ "id": s1 })).await;
    let drifted = server(&app, &admin, &s1).await;
    assert_eq!(drifted["keyDrift"][0]["missingKeys"], json!([]), "{drifted}");

    // Rotation across two servers while one is down: nothing is lost, and the state says where.
    let ops = distribute(&app, &admin, &deploy_id, &[&s2]).await;
    assert_eq!(states(&ops), vec![("INSTALL".into(), "SUCCEEDED".into())]);
    two.stop();
    let rotation = app
        .ok(
            Some(&admin),
            &format!("mutation($id: ID!) {{ rotateSshKey(id: $id) {{ oldKey {{ {KEY_FIELDS} }} newKey {{ {KEY_FIELDS} }} operations {{ {OPERATION} }} }} }}"),
            json!({ "id": deploy_id }),
        )
        .await["rotateSshKey"]
        .clone();
    let new_id = rotation["newKey"]["id"].as_str().unwrap().to_owned();
    let by_server: Vec<(String, String, String)> = rotation["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["serverId"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
                o["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(by_server.contains(&(s1.clone(), "INSTALL".into(), "SUCCEEDED".into())), "{by_server:?}");
    assert!(by_server.contains(&(s1.clone(), "REMOVE".into(), "SUCCEEDED".into())), "{by_server:?}");
    assert!(by_server.contains(&(s2.clone(), "INSTALL".into(), "FAILED".into())), "{by_server:?}");
    assert!(
        !by_server.iter().any(|(s, k, _)| *s == s2 && k == "REMOVE"),
        "the old key stays where the new one is not in"
    );
    assert_eq!(rotation["oldKey"]["replacedBy"], new_id.as_str());
    let old_where: Vec<&str> = rotation["oldKey"]["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["serverName"].as_str().unwrap())
        .collect();
    let new_where: Vec<&str> = rotation["newKey"]["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["serverName"].as_str().unwrap())
        .collect();
    assert_eq!((old_where, new_where), (vec!["two"], vec!["one"]));
    let new_private = reveal(&app, &admin, &new_id).await;
    assert!(ssh_login(&one, &new_private, None) && !ssh_login(&one, &deploy_private, None));
    two.restart().unwrap();
    assert!(ssh_login(&two, &deploy_private, None), "the unreachable server still has a working key");

    // Exposure: every stay of the old key, from the log.
    let exposure = app
        .ok(
            Some(&admin),
            "query($i: KeyExposureInput!) { keyExposure(input: $i) { serverName installedAt removedAt } }",
            json!({ "i": { "keyId": deploy_id, "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z" } }),
        )
        .await;
    let mut stays: Vec<(String, bool)> = exposure["keyExposure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["serverName"].as_str().unwrap().to_owned(), s["removedAt"].is_string()))
        .collect();
    stays.sort();
    // one: installed, taken out by hand (still recorded as installed), re-installed, rotated out;
    // two: installed, removed, installed again and still there.
    assert_eq!(stays, vec![("one".into(), true), ("two".into(), false), ("two".into(), true)], "{exposure}");
    let before = app
        .ok(
            Some(&admin),
            "query($i: KeyExposureInput!) { keyExposure(input: $i) { serverName } }",
            json!({ "i": { "keyId": deploy_id, "from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z" } }),
        )
        .await;
    assert_eq!(before["keyExposure"], json!([]));

    // Deletion: removed from every server first, then shredded; the history stays readable.
    let refused = app
        .graphql(Some(&admin), "mutation($id: ID!) { deleteSshKey(id: $id) { deleted } }", json!({ "id": login_id }))
        .await;
    assert_eq!(code(&refused), Some("CONFLICT"), "the key Unity logs in with: {refused}");
    let deletion = app
        .ok(Some(&admin), &format!("mutation($id: ID!) {{ deleteSshKey(id: $id) {{ deleted operations {{ {OPERATION} }} key {{ deletedAt hasPrivateKey }} }} }}"), json!({ "id": deploy_id }))
        .await["deleteSshKey"]
        .clone();
    assert_eq!(deletion["deleted"], true, "{deletion}");
    assert_eq!(deletion["key"]["hasPrivateKey"], false, "the private half is shredded: {deletion}");
    assert_eq!(states(deletion["operations"].as_array().unwrap()), vec![("REMOVE".into(), "SUCCEEDED".into())]);
    assert!(!ssh_login(&two, &deploy_private, None));
    assert!(!std::fs::read_to_string(two.authorized_keys()).unwrap().contains(deploy["publicKey"].as_str().unwrap()));
    let gone = app
        .graphql(Some(&admin), "mutation($id: ID!) { revealSshPrivateKey(id: $id) }", json!({ "id": deploy_id }))
        .await;
    assert!(code(&gone).is_some(), "a deleted key cannot be revealed: {gone}");
    let history = app.ok(Some(&admin), "query($id: ID!) { keyExposure(input: {keyId: $id, from: \"2000-01-01T00:00:00Z\", to: \"2100-01-01T00:00:00Z\"}) { serverName } }", json!({ "id": deploy_id })).await;
    assert_eq!(history["keyExposure"].as_array().unwrap().len(), 3);
    let report = unity_commands::integrity::verify(&app.db.pool, |_| {}).await.unwrap();
    assert!(report.ok(), "unity audit verify passes after shredding: {report:?}");
    // Every distribution step is a requested/outcome pair in the audit.
    let audit = app
        .ok(Some(&admin), "{ auditLog(first: 100, filter: {eventTypes: [\"KeyInstallRequested\", \"KeyInstalled\", \"KeyInstallFailed\"]}) { edges { node { eventType } } } }", json!({}))
        .await;
    let types: Vec<&str> = audit["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["eventType"].as_str().unwrap())
        .collect();
    let requested = types.iter().filter(|t| **t == "KeyInstallRequested").count();
    assert_eq!(requested, types.len() - requested, "{types:?}");

    // The periodic drift check asks for a check of every server; the reactor carries them out.
    let last_checked = "query($id: ID!) { server(id: $id) { lastCheckedAt } }";
    let before = app.ok(Some(&admin), last_checked, json!({ "id": s1 })).await["server"].clone();
    assert!(before["lastCheckedAt"].is_string(), "checked by hand above");
    assert_eq!(unity::schedule::check_all_servers(&app.db_credentials().await).await.unwrap(), 2);
    unity_commands::testing::eventually(std::time::Duration::from_secs(20), "the scheduled checks", || async {
        let now = app.ok(Some(&admin), last_checked, json!({ "id": s2 })).await;
        let s1_now = app.ok(Some(&admin), last_checked, json!({ "id": s1 })).await;
        (now["server"]["lastCheckedAt"].is_string() && s1_now["server"]["lastCheckedAt"] != before["lastCheckedAt"])
            .then_some(())
    })
    .await;

    // Unused keys: a report event and a query.
    let reported = unity::schedule::report_unused_keys(&app.db_credentials().await, 0).await.unwrap();
    assert!(reported >= 1);
    // Written outside the app (as the scheduler of another process would): the projections
    // pick it up at their next poll.
    let report = unity_commands::testing::eventually(std::time::Duration::from_secs(10), "the report", || async {
        let data = app.ok(Some(&admin), "{ unusedSshKeysReport { unusedDays keys { keyId name } } }", json!({})).await;
        (!data["unusedSshKeysReport"].is_null()).then_some(data)
    })
    .await;
    assert_eq!(report["unusedSshKeysReport"]["unusedDays"], 0);
    assert_eq!(report["unusedSshKeysReport"]["keys"].as_array().unwrap().len(), reported);

    // Metrics.
    let metrics = app.metrics().await;
    for line in [
        "unity_ssh_keys{algorithm=\"ED25519\"}",
        "unity_servers{host_key_status=\"PINNED\"} 2",
        "unity_ssh_key_distributions_total{kind=\"INSTALL\",outcome=\"FAILED\"} 1",
        "unity_ssh_key_distributions_total{kind=\"INSTALL\",outcome=\"SUCCEEDED\"}",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }

    // No private key material anywhere but the vault: not in the events, NATS or the logs.
    scan_for_private_keys(&app, &[&deploy_private, &new_private, &reveal(&app, &admin, login_id).await], &logs).await;
    drop((one, two));
}

/// Fails if any line of the private keys' base64 body shows up in the event table, in the
/// JetStream stream the relay fills, or in the logs.
async fn scan_for_private_keys(app: &TestApp, keys: &[&str], logs: &Arc<Mutex<Vec<u8>>>) {
    let needles: Vec<&str> =
        keys.iter().flat_map(|k| k.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40)).collect();
    assert!(!needles.is_empty());
    let events: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || metadata::text FROM events").fetch_all(&app.db.pool).await.unwrap();
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("UNITY_EVENTS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert!(last > 0, "the relay published");
    let mut messages = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("Request served."), "the logs were captured, so their scan means something");
    for (place, haystacks) in [("events", events), ("NATS", messages), ("logs", vec![logs])] {
        for haystack in &haystacks {
            assert!(!haystack.contains("PRIVATE KEY-----"), "a PEM header in the {place}");
            for needle in &needles {
                assert!(!haystack.contains(needle), "private key material in the {place}");
            }
        }
    }
}

#[actix_rt::test]
async fn a_changed_host_key_is_refused_until_accepted() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut sshd = Sshd::start(&temp_dir("hostkey")).unwrap();
    let login = generate_key(&app, &admin, "login").await;
    std::fs::write(sshd.authorized_keys(), format!("{}\n", login["publicKey"].as_str().unwrap())).unwrap();
    let id = register(&app, &admin, "box", &sshd, login["id"].as_str().unwrap(), None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(test_connection(&app, &admin, &id).await["succeeded"], true);
    let first = sshd.host_key_fingerprint().unwrap();

    // Reinstalled: a new host key on the same address.
    sshd.new_host_key().unwrap();
    let second = sshd.host_key_fingerprint().unwrap();
    let test = test_connection(&app, &admin, &id).await;
    assert_eq!(test["succeeded"], false, "{test}");
    assert!(test["error"].as_str().unwrap().contains("not the pinned"), "{test}");
    let state = server(&app, &admin, &id).await;
    assert_eq!(state["hostKeyStatus"], "MISMATCH");
    assert_eq!(state["hostKeyFingerprint"], first.as_str(), "the pin does not move by itself");
    assert_eq!(state["presentedHostKeyFingerprint"], second.as_str());
    // Nothing else gets through either, and the mismatch is in the audit once.
    let key = generate_key(&app, &admin, "k").await;
    let ops = distribute(&app, &admin, key["id"].as_str().unwrap(), &[&id]).await;
    assert_eq!(states(&ops), vec![("INSTALL".into(), "FAILED".into())]);
    let audit = app
        .ok(
            Some(&admin),
            "{ auditLog(first: 10, filter: {eventTypes: [\"HostKeyMismatch\"]}) { edges { node { payload } } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["edges"].as_array().unwrap().len(), 1, "{audit}");

    // An operator may not accept it; an admin does, deliberately.
    app.create_user(&admin, "op", "OPERATOR").await;
    let operator = app.login("op", crate::api::ADMIN_PASSWORD).await;
    let accept = "mutation($i: AcceptServerHostKeyInput!) { acceptServerHostKey(input: $i) { hostKeyStatus hostKeyFingerprint } }";
    let body = app.graphql(Some(&operator), accept, json!({ "i": { "serverId": id, "fingerprint": second } })).await;
    assert_eq!(code(&body), Some("FORBIDDEN"));
    let body = app.graphql(Some(&admin), accept, json!({ "i": { "serverId": id, "fingerprint": "MD5:aa:bb" } })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    let accepted = app.ok(Some(&admin), accept, json!({ "i": { "serverId": id, "fingerprint": second } })).await;
    assert_eq!(accepted["acceptServerHostKey"]["hostKeyStatus"], "PINNED");
    assert_eq!(test_connection(&app, &admin, &id).await["succeeded"], true);

    // Updates change only what is given; a bad port is refused; removal takes it out of the list.
    let update = "mutation($i: UpdateServerInput!) { updateServer(input: $i) { name port tags hostKeyStatus } }";
    let updated = app.ok(Some(&admin), update, json!({ "i": { "id": id, "name": "box-2", "tags": ["rack:1"] } })).await;
    assert_eq!(
        updated["updateServer"],
        json!({ "name": "box-2", "port": sshd.port, "tags": ["rack:1"], "hostKeyStatus": "PINNED" })
    );
    let bad = app.graphql(Some(&admin), update, json!({ "i": { "id": id, "port": 70000 } })).await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    let removed =
        app.ok(Some(&admin), "mutation($id: ID!) { removeServer(id: $id) { removedAt } }", json!({ "id": id })).await;
    assert!(removed["removeServer"]["removedAt"].is_string());
    let listed = app.ok(Some(&admin), "{ servers { edges { node { id } } } }", json!({})).await;
    assert_eq!(listed["servers"]["edges"], json!([]));
    let gone = test_connection_raw(&app, &admin, &id).await;
    assert_eq!(code(&gone), Some("CONFLICT"), "{gone}");
}

async fn test_connection_raw(app: &TestApp, token: &str, id: &str) -> Value {
    app.graphql(
        Some(token),
        "mutation($id: ID!) { testServerConnection(serverId: $id) { succeeded } }",
        json!({ "id": id }),
    )
    .await
}

#[actix_rt::test]
async fn sshd_accepts_a_user_certificate_from_a_ca_unity_installed() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = temp_dir("ca");
    let sshd = Sshd::start(&dir.join("sshd")).unwrap();
    let login = generate_key(&app, &admin, "login").await;
    std::fs::write(sshd.authorized_keys(), format!("{}\n", login["publicKey"].as_str().unwrap())).unwrap();
    let id = register(&app, &admin, "box", &sshd, login["id"].as_str().unwrap(), None).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ca = app
        .ok(Some(&admin), "mutation { createSshCertificateAuthority(input: {name: \"users\", algorithm: ED25519}) { id publicKey fingerprint } }", json!({}))
        .await["createSshCertificateAuthority"]
        .clone();
    let ca_id = ca["id"].as_str().unwrap();
    let ops = app
        .ok(
            Some(&admin),
            &format!(
                "mutation($i: InstallSshCaOnServersInput!) {{ installSshCaOnServers(input: $i) {{ {OPERATION} }} }}"
            ),
            json!({ "i": { "caId": ca_id, "serverIds": [id], "path": sshd.trusted_ca_file().display().to_string() } }),
        )
        .await;
    assert_eq!(states(ops["installSshCaOnServers"].as_array().unwrap()), vec![("INSTALL".into(), "SUCCEEDED".into())]);
    assert!(std::fs::read_to_string(sshd.trusted_ca_file()).unwrap().contains(ca["publicKey"].as_str().unwrap()));

    // A user key nobody put in authorized_keys gets in with a certificate for root.
    let user = generate_key(&app, &admin, "ada").await;
    let user_private = reveal(&app, &admin, user["id"].as_str().unwrap()).await;
    assert!(!ssh_login(&sshd, &user_private, None));
    let sign = "mutation($i: SignSshCertificateInput!) { signSshCertificate(input: $i) { serial certificate } }";
    let input = json!({
        "caId": ca_id, "publicKey": user["publicKey"], "certType": "USER", "keyId": "ada@laptop",
        "principals": ["root", "ada"], "validAfter": "2020-01-01T00:00:00Z", "validBefore": "2099-01-01T00:00:00Z",
        "criticalOptions": [{ "name": "source-address", "value": "127.0.0.1/32" }],
    });
    let signed = app.ok(Some(&admin), sign, json!({ "i": input })).await["signSshCertificate"].clone();
    assert_eq!(signed["serial"], "1");
    let cert = signed["certificate"].as_str().unwrap();
    let cert_file = dir.join("ada-cert.pub");
    std::fs::write(&cert_file, format!("{cert}\n")).unwrap();
    let shown = sh(Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert_file));
    for expected in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate".to_string(),
        format!("Signing CA: ED25519 {} (using ssh-ed25519)", ca["fingerprint"].as_str().unwrap()),
        "Key ID: \"ada@laptop\"".to_string(),
        "Serial: 1".to_string(),
        "Valid: from 2020-01-01T00:00:00 to 2099-01-01T00:00:00".to_string(),
        "source-address 127.0.0.1/32".to_string(),
        "permit-pty".to_string(),
    ] {
        assert!(shown.contains(&expected), "ssh-keygen -L lacks '{expected}':\n{shown}");
    }
    let principals: Vec<&str> = shown
        .split("Principals:")
        .nth(1)
        .unwrap()
        .split("Critical Options:")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(principals, vec!["root", "ada"]);
    assert!(ssh_login(&sshd, &user_private, Some(cert)), "sshd accepts the certificate through TrustedUserCAKeys");

    // Another certificate gets the next serial; both are on record.
    let mut other = input_with(&input, "validBefore", "2099-06-01T00:00:00Z");
    other["principals"] = json!(["nobody"]);
    let second = app.ok(Some(&admin), sign, json!({ "i": other })).await["signSshCertificate"].clone();
    assert_eq!(second["serial"], "2");
    assert!(!ssh_login(&sshd, &user_private, Some(second["certificate"].as_str().unwrap())), "wrong principal");
    let listed = app
        .ok(Some(&admin), "query($id: ID!) { sshCertificateAuthority(id: $id) { certificatesSigned certificates { serial keyId principals signedBy } } }", json!({ "id": ca_id }))
        .await;
    assert_eq!(listed["sshCertificateAuthority"]["certificatesSigned"], "2");
    assert_eq!(listed["sshCertificateAuthority"]["certificates"][1]["principals"], json!(["root", "ada"]));
    assert_eq!(listed["sshCertificateAuthority"]["certificates"][1]["signedBy"], "admin");
    let bad = app
        .graphql(Some(&admin), sign, json!({ "i": input_with(&input, "validBefore", "2019-01-01T00:00:00Z") }))
        .await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    let bad =
        app.graphql(Some(&admin), sign, json!({ "i": input_with(&input, "publicKey", "ssh-ed25519 nope") })).await;
    assert_eq!(code(&bad), Some("BAD_USER_INPUT"), "{bad}");

    // Server credentials: sealed, listed without secrets, revealed by admins only.
    let created = app
        .ok(Some(&admin), "mutation { createServerCredential(input: {name: \"nas root\", kind: PASSWORD, username: \"root\", secret: \"hunter2-but-longer\"}) { id name kind username } }", json!({}))
        .await;
    let credential_id = created["createServerCredential"]["id"].as_str().unwrap();
    let listed = app.ok(Some(&admin), "{ serverCredentials { id name kind } }", json!({})).await;
    assert!(!listed.to_string().contains("hunter2"));
    let revealed = app
        .ok(Some(&admin), "mutation($id: ID!) { revealServerCredential(id: $id) }", json!({ "id": credential_id }))
        .await;
    assert_eq!(revealed["revealServerCredential"], "hunter2-but-longer");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events").fetch_all(&app.db.pool).await.unwrap();
    assert!(stored.iter().all(|p| !p.contains("hunter2")), "the secret is sealed in the events");
    app.ok(
        Some(&admin),
        "mutation($id: ID!) { updateServerCredential(input: {id: $id, secret: \"another-one-entirely\"}) { id } }",
        json!({ "id": credential_id }),
    )
    .await;
    let revealed = app
        .ok(Some(&admin), "mutation($id: ID!) { revealServerCredential(id: $id) }", json!({ "id": credential_id }))
        .await;
    assert_eq!(revealed["revealServerCredential"], "another-one-entirely");
    // A PRIVATE_KEY credential logs Unity in; while a server uses it, it cannot be deleted.
    let key_dir = dir.join("credential");
    std::fs::create_dir_all(&key_dir).unwrap();
    sh(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(key_dir.join("id")));
    let pem = std::fs::read_to_string(key_dir.join("id")).unwrap();
    let public = std::fs::read_to_string(key_dir.join("id.pub")).unwrap();
    std::fs::write(sshd.authorized_keys(), format!("{}\n{public}", login["publicKey"].as_str().unwrap())).unwrap();
    let create_key = "mutation($s: String!) { createServerCredential(input: {name: \"deploy key\", kind: PRIVATE_KEY, username: \"root\", secret: $s}) { id } }";
    let key_credential = app.ok(Some(&admin), create_key, json!({ "s": pem })).await["createServerCredential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_credential = app
        .ok(
            Some(&admin),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id } }",
            json!({ "i": { "name": "by-credential", "address": "127.0.0.1", "port": sshd.port, "username": "root",
                           "authentication": { "credentialId": key_credential } } }),
        )
        .await["registerServer"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(test_connection(&app, &admin, &by_credential).await["succeeded"], true);
    let in_use = app
        .graphql(
            Some(&admin),
            "mutation($id: ID!) { deleteServerCredential(id: $id) }",
            json!({ "id": key_credential }),
        )
        .await;
    assert_eq!(code(&in_use), Some("CONFLICT"), "{in_use}");
    let not_a_key = app.graphql(Some(&admin), create_key, json!({ "s": "hello" })).await;
    assert_eq!(code(&not_a_key), Some("BAD_USER_INPUT"), "{not_a_key}");

    app.ok(Some(&admin), "mutation($id: ID!) { deleteServerCredential(id: $id) }", json!({ "id": credential_id }))
        .await;
    let gone = app
        .graphql(Some(&admin), "query($id: ID!) { serverCredential(id: $id) { id } }", json!({ "id": credential_id }))
        .await;
    assert_eq!(code(&gone), Some("NOT_FOUND"));
}

fn input_with(input: &Value, field: &str, value: &str) -> Value {
    let mut changed = input.clone();
    changed[field] = json!(value);
    changed
}
