//! X.509 end to end: internal root and intermediate CAs, issuance checked by `openssl verify` and
//! `openssl x509`, revocation seen in the CA's CRL, imports of certificates made by openssl.

use std::{path::Path, process::Command};

use serde_json::{json, Value};

use crate::api::{code, spawn_app, TestApp};

pub(crate) fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const CA_FIELDS: &str = "id subject pathLength certificatePem chainPem fingerprint crlPath";
const CERT_FIELDS: &str = "id name source subject commonName issuer serial notBefore notAfter dnsNames ipAddresses \
     fingerprint status hasPrivateKey certificatePem chainPem revokedAt revocationReason";

/// Runs `mutation { <field>(input: $i) { <fields> } }`: the field's value, or the whole body
/// (with its errors) when it failed.
pub(crate) async fn mutate(
    app: &TestApp,
    token: &str,
    field: &str,
    input_type: &str,
    fields: &str,
    input: Value,
) -> Value {
    let query = format!("mutation($i: {input_type}!) {{ {field}(input: $i) {{ {fields} }} }}");
    let body = app.graphql(Some(token), &query, json!({ "i": input })).await;
    body.get("data").and_then(|d| d.get(field)).cloned().filter(|v| !v.is_null()).unwrap_or(body)
}

async fn create_ca(app: &TestApp, token: &str, input: Value) -> Value {
    mutate(app, token, "createCertificateAuthority", "CreateCertificateAuthorityInput", CA_FIELDS, input).await
}

async fn issue(app: &TestApp, token: &str, input: Value) -> Value {
    mutate(app, token, "issueCertificate", "IssueCertificateInput", CERT_FIELDS, input).await
}

async fn import(app: &TestApp, token: &str, input: Value) -> Value {
    mutate(app, token, "importCertificate", "ImportCertificateInput", CERT_FIELDS, input).await
}

pub(crate) fn refused(body: &Value, words: &str) {
    assert_eq!(code(body), Some("BAD_USER_INPUT"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(words), "'{message}' should say '{words}'");
}

#[actix_rt::test]
async fn an_internal_ca_issues_certificates_openssl_accepts_and_revokes_them_in_its_crl() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = std::env::temp_dir().join(format!("unity-x509-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    let root = create_ca(
        &app,
        &admin,
        json!({ "name": "lab root", "commonName": "Lab Root CA", "organization": "Lab", "keyAlgorithm": "ECDSA_P384",
                "validityDays": 3650, "pathLength": 1 }),
    )
    .await;
    let intermediate = create_ca(
        &app,
        &admin,
        json!({ "name": "lab issuing", "commonName": "Lab Issuing CA", "keyAlgorithm": "ECDSA_P256",
                "validityDays": 1825, "pathLength": 0, "parentId": root["id"] }),
    )
    .await;
    assert_eq!(intermediate["chainPem"], root["certificatePem"], "{intermediate}");
    write(&dir, "root.pem", root["certificatePem"].as_str().unwrap());
    write(&dir, "intermediate.pem", intermediate["certificatePem"].as_str().unwrap());
    let (ok, text) = openssl(&["verify", "-CAfile", "root.pem", "intermediate.pem"], &dir);
    assert!(ok, "{text}");
    let (_, text) = openssl(&["x509", "-in", "root.pem", "-noout", "-text"], &dir);
    assert!(text.contains("CA:TRUE, pathlen:1") && text.contains("Certificate Sign, CRL Sign"), "{text}");
    // The intermediate may not make CAs below it; a child may not outlive its parent.
    let refused_ca =
        create_ca(&app, &admin, json!({ "name": "x", "commonName": "x", "parentId": intermediate["id"] })).await;
    refused(&refused_ca, "path length is 0");
    let too_long = create_ca(
        &app,
        &admin,
        json!({ "name": "x", "commonName": "x", "parentId": root["id"], "pathLength": 0, "validityDays": 4000 }),
    )
    .await;
    refused(&too_long, "expires at");

    // A server-and-client certificate from the intermediate: openssl accepts the chain, and the
    // SANs, key usage and extended key usage are what was asked.
    let leaf = issue(
        &app,
        &admin,
        json!({ "caId": intermediate["id"], "commonName": "nas.lab", "dnsNames": ["nas.lab", "*.nas.lab"],
                "ipAddresses": ["10.0.0.5", "fd00::5"], "validityDays": 90, "usage": "BOTH" }),
    )
    .await;
    assert_eq!(leaf["status"], "VALID", "{leaf}");
    assert_eq!(leaf["source"], "INTERNAL");
    assert_eq!(leaf["dnsNames"], json!(["nas.lab", "*.nas.lab"]));
    assert_eq!(leaf["ipAddresses"], json!(["10.0.0.5", "fd00::5"]));
    write(&dir, "leaf.pem", leaf["certificatePem"].as_str().unwrap());
    write(&dir, "chain.pem", leaf["chainPem"].as_str().unwrap());
    let (ok, text) = openssl(&["verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"], &dir);
    assert!(ok, "{text}");
    let (_, text) = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text", "-fingerprint", "-sha256"], &dir);
    for expected in [
        "DNS:nas.lab, DNS:*.nas.lab, IP Address:10.0.0.5, IP Address:FD00:0:0:0:0:0:0:5",
        "X509v3 Key Usage: critical\n                Digital Signature",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "CA:FALSE",
        "Issuer: CN = Lab Issuing CA",
    ] {
        assert!(text.contains(expected), "openssl x509 -text lacks '{expected}':\n{text}");
    }
    let openssl_fingerprint =
        text.lines().find_map(|l| l.strip_prefix("sha256 Fingerprint=")).unwrap().replace(':', "");
    assert_eq!(openssl_fingerprint.to_lowercase(), leaf["fingerprint"].as_str().unwrap());
    let rsa = issue(
        &app,
        &admin,
        json!({ "caId": intermediate["id"], "commonName": "client", "usage": "CLIENT", "keyAlgorithm": "RSA_2048" }),
    )
    .await;
    write(&dir, "rsa.pem", rsa["certificatePem"].as_str().unwrap());
    let (_, text) = openssl(&["x509", "-in", "rsa.pem", "-noout", "-text"], &dir);
    assert!(
        text.contains("Digital Signature, Key Encipherment") && text.contains("TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    let bad =
        issue(&app, &admin, json!({ "caId": intermediate["id"], "commonName": "x", "dnsNames": ["not a name"] })).await;
    refused(&bad, "not a DNS name");
    let bad =
        issue(&app, &admin, json!({ "caId": intermediate["id"], "commonName": "x", "ipAddresses": ["10.0.0"] })).await;
    refused(&bad, "not an IP address");
    let bad = issue(&app, &admin, json!({ "caId": intermediate["id"], "commonName": "x", "validityDays": 5000 })).await;
    refused(&bad, "expires at");

    // The private key: revealed to admins only, it matches the certificate.
    let reveal = "mutation($id: ID!) { revealCertificatePrivateKey(id: $id) }";
    app.create_user(&admin, "op", "OPERATOR").await;
    let operator = app.login("op", crate::api::ADMIN_PASSWORD).await;
    assert_eq!(code(&app.graphql(Some(&operator), reveal, json!({ "id": leaf["id"] })).await), Some("FORBIDDEN"));
    let key = app.ok(Some(&admin), reveal, json!({ "id": leaf["id"] })).await["revealCertificatePrivateKey"]
        .as_str()
        .unwrap()
        .to_owned();
    write(&dir, "leaf.key", &key);
    let (_, from_key) = openssl(&["pkey", "-in", "leaf.key", "-pubout"], &dir);
    let (_, from_cert) = openssl(&["x509", "-in", "leaf.pem", "-noout", "-pubkey"], &dir);
    assert_eq!(from_key, from_cert);
    let events: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events").fetch_all(&app.db.pool).await.unwrap();
    let body_line = key.lines().nth(1).unwrap();
    assert!(events.iter().all(|e| !e.contains(body_line) && !e.contains("PRIVATE KEY")), "keys are sealed");

    // Revocation: the CA's CRL (no sign-in needed) lists the serial, and openssl refuses the leaf.
    let revoked = app
        .ok(
            Some(&operator),
            "mutation($id: ID!) { revokeCertificate(input: {id: $id, reason: KEY_COMPROMISE}) { status revokedAt revocationReason } }",
            json!({ "id": leaf["id"] }),
        )
        .await;
    assert_eq!(revoked["revokeCertificate"]["status"], "REVOKED");
    assert_eq!(revoked["revokeCertificate"]["revocationReason"], "KEY_COMPROMISE");
    let crl = app.get(intermediate["crlPath"].as_str().unwrap()).await;
    std::fs::write(dir.join("crl.der"), crl).unwrap();
    let (ok, text) = openssl(&["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"], &dir);
    assert!(ok, "{text}");
    assert!(text.to_lowercase().contains(&format!("serial number: {}", leaf["serial"].as_str().unwrap())), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    let (ok, _) = openssl(&["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"], &dir);
    assert!(ok);
    let (ok, text) = openssl(&["crl", "-in", "crl.pem", "-noout", "-CAfile", "intermediate.pem"], &dir);
    assert!(ok && text.contains("verify OK"), "the CRL is signed by its CA: {text}");
    let (ok, text) = openssl(
        &["verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        &dir,
    );
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    assert_eq!(app.get_status(&format!("/ca/{}/crl", uuid::Uuid::now_v7())).await, 404);

    // Lists and filters.
    let list = |filter: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let data = app
                .ok(
                    Some(&admin),
                    "query($f: CertificateFilterInput) { certificates(filter: $f) { edges { node { name status } } } }",
                    json!({ "f": filter }),
                )
                .await;
            let mut names: Vec<String> = data["certificates"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    issue(
        &app,
        &admin,
        json!({ "caId": intermediate["id"], "name": "soon", "commonName": "soon.lab", "validityDays": 10 }),
    )
    .await;
    assert_eq!(list(json!({ "status": "EXPIRING" })).await, vec!["soon"]);
    assert_eq!(list(json!({ "expiringWithinDays": 20 })).await, vec!["soon"]);
    assert_eq!(list(json!({ "status": "REVOKED" })).await, vec!["nas.lab"]);
    assert_eq!(list(json!({ "caId": intermediate["id"] })).await, vec!["client", "nas.lab", "soon"]);
    assert_eq!(list(json!({ "source": "IMPORTED" })).await, Vec::<String>::new());

    let metrics = app.metrics().await;
    for line in [
        "unity_certificates{status=\"VALID\"} 1",
        "unity_certificates{status=\"EXPIRING\"} 1",
        "unity_certificates{status=\"REVOKED\"} 1",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    // The soonest expiry in seconds (base units): the 10-day certificate, a little under 10 days.
    let soonest: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("unity_certificate_soonest_expiry_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the soonest expiry on /metrics");
    assert!((9.9 * 86_400.0..10.0 * 86_400.0).contains(&soonest), "{soonest}");
}

#[actix_rt::test]
async fn imports_are_parsed_checked_against_their_keys_and_refused_with_reasons() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = std::env::temp_dir().join(format!("unity-import-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // Certificates made by openssl, with keys in PKCS#1 (RSA) and SEC1 (EC) form.
    for (name, keygen) in [
        ("rsa", vec!["genrsa", "-traditional", "-out", "rsa.key", "2048"]),
        ("ec", vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key"]),
    ] {
        let (ok, text) = openssl(&keygen, &dir);
        assert!(ok, "{text}");
        let key = format!("{name}.key");
        let cert = format!("{name}.pem");
        let subject = format!("/CN={name}.example");
        let san = format!("subjectAltName=DNS:{name}.example,IP:192.0.2.7");
        let (ok, text) = openssl(
            &["req", "-x509", "-key", &key, "-out", &cert, "-days", "30", "-subj", &subject, "-addext", &san],
            &dir,
        );
        assert!(ok, "{text}");
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert!(read("rsa.key").contains("BEGIN RSA PRIVATE KEY") && read("ec.key").contains("BEGIN EC PRIVATE KEY"));
    for name in ["rsa", "ec"] {
        let imported = import(
            &app,
            &admin,
            json!({ "certificatePem": read(&format!("{name}.pem")), "privateKeyPem": read(&format!("{name}.key")) }),
        )
        .await;
        assert_eq!(imported["source"], "IMPORTED", "{imported}");
        assert_eq!(imported["commonName"], format!("{name}.example"));
        assert_eq!(imported["dnsNames"], json!([format!("{name}.example")]));
        assert_eq!(imported["ipAddresses"], json!(["192.0.2.7"]));
        assert_eq!(imported["hasPrivateKey"], true);
        assert_eq!(imported["status"], "EXPIRING", "30 days left is within the 30-day warning");
        let (_, fingerprint) =
            openssl(&["x509", "-in", &format!("{name}.pem"), "-noout", "-fingerprint", "-sha256"], &dir);
        let fingerprint = fingerprint.trim().trim_start_matches("sha256 Fingerprint=").replace(':', "").to_lowercase();
        assert_eq!(imported["fingerprint"], fingerprint);
    }
    refused(
        &import(&app, &admin, json!({ "certificatePem": read("rsa.pem"), "privateKeyPem": read("ec.key") })).await,
        "does not belong",
    );
    refused(&import(&app, &admin, json!({ "certificatePem": "garbage" })).await, "no CERTIFICATE block");
    let broken = read("rsa.pem").replace("MII", "XXX");
    assert!(code(&import(&app, &admin, json!({ "certificatePem": broken })).await) == Some("BAD_USER_INPUT"));
    // Garbage inside a well-formed block: what was expected, not the parser's internals.
    let garbage = import(
        &app,
        &admin,
        json!({ "certificatePem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }),
    )
    .await;
    refused(&garbage, "does not hold an X.509 certificate");
    assert!(!garbage.to_string().contains("Nom") && !garbage.to_string().contains("Parsing Error"), "{garbage}");
    // The same certificate and key imported again: refused, naming the record that holds it.
    let again = import(
        &app,
        &admin,
        json!({ "certificatePem": read("ec.pem"), "privateKeyPem": read("ec.key"), "name": "twice" }),
    )
    .await;
    assert_eq!(code(&again), Some("CONFLICT"), "{again}");
    let message = again["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("imported already, as \"ec.example\" (id "), "{message}");
    refused(
        &import(&app, &admin, json!({ "certificatePem": read("ec.pem"), "privateKeyPem": "nope" })).await,
        "not a private key",
    );
    // An expired certificate: made by openssl with a validity window entirely in the past.
    let (ok, text) = openssl(&["req", "-new", "-key", "ec.key", "-subj", "/CN=old.example", "-out", "old.csr"], &dir);
    assert!(ok, "{text}");
    let (ok, text) =
        openssl(&["x509", "-req", "-in", "old.csr", "-key", "ec.key", "-out", "old.pem", "-days", "-1"], &dir);
    assert!(ok, "{text}");
    refused(&import(&app, &admin, json!({ "certificatePem": read("old.pem") })).await, "expired");
    // Nothing refused was stored.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CertificateIssued'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[actix_rt::test]
async fn internal_certificates_renew_on_time_warn_before_expiry_and_back_off_after_failures() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let x509 = app.db_x509().await;
    let acme = app.db_acme().await;
    let credentials = app.db_credentials().await;
    let thresholds = [30, 14, 7, 1];
    // A CA that lives 60 days: a 30-day certificate renews once (at day 20, until day 50); the
    // next renewal (at day 40, until day 70) cannot fit inside the CA.
    let ca = create_ca(&app, &admin, json!({ "name": "short", "commonName": "Short CA", "validityDays": 60 })).await;
    let leaf = issue(
        &app,
        &admin,
        json!({ "caId": ca["id"], "commonName": "web.lab", "dnsNames": ["web.lab"], "validityDays": 30 }),
    )
    .await;
    let leaf_id: uuid::Uuid = leaf["id"].as_str().unwrap().parse().unwrap();
    let t0 = chrono::Utc::now();
    let day = |d: f64| t0 + chrono::Duration::seconds((d * 86_400.0) as i64);

    // Not due before two thirds of the lifetime; due after.
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, day(19.0)).await.unwrap(), (0, 0));
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, day(20.5)).await.unwrap(), (1, 0));
    assert_eq!(
        unity::schedule::renew_due_certificates(&acme, &credentials, day(20.6)).await.unwrap(),
        (0, 0),
        "renewed once"
    );
    let query = "query($id: ID!) { certificate(id: $id) { renewedBy renewalOf dnsNames notAfter lastRenewalError renewalFailures nextRenewalAttemptAt } }";
    let old = eventually_certificate(&app, &admin, query, &leaf_id.to_string(), |c| c["renewedBy"].is_string()).await;
    let new_id = old["renewedBy"].as_str().unwrap().to_owned();
    let new = app.ok(Some(&admin), query, json!({ "id": new_id })).await["certificate"].clone();
    assert_eq!(new["renewalOf"], leaf_id.to_string());
    assert_eq!(new["dnsNames"], json!(["web.lab"]), "the same names, a fresh key and dates");

    // The renewed certificate's own renewal would outlive its CA: it fails, is recorded with
    // an expiry warning, and is retried only after the backoff.
    let new_uuid: uuid::Uuid = new_id.parse().unwrap();
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, day(41.0)).await.unwrap(), (0, 1));
    assert_eq!(
        unity::schedule::renew_due_certificates(&acme, &credentials, day(41.02)).await.unwrap(),
        (0, 0),
        "backing off"
    );
    assert_eq!(
        unity::schedule::renew_due_certificates(&acme, &credentials, day(41.05)).await.unwrap(),
        (0, 1),
        "an hour later"
    );
    let failed = eventually_certificate(&app, &admin, query, &new_id, |c| c["renewalFailures"] == 2).await;
    assert!(failed["lastRenewalError"].as_str().unwrap().contains("expires at"), "{failed}");
    let events: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(format!("certificate-{new_uuid}"))
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "CertificateIssued",
            "CertificateRenewalFailed",
            "CertificateExpiring",
            "CertificateRenewalFailed",
            "CertificateExpiring"
        ]
    );
    assert_eq!(events[2].1["cause"], "RENEWAL_FAILED");

    // Expiry warnings: once per threshold crossed, not every day.
    let warn = |at| unity::schedule::check_certificate_expiry(&x509, at, &thresholds);
    let warnings = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'CertificateExpiring' AND payload->>'cause' = 'THRESHOLD'",
        )
        .bind(format!("certificate-{new_uuid}"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        n
    };
    let not_after: chrono::DateTime<chrono::Utc> = new["notAfter"].as_str().unwrap().parse().unwrap();
    let before_expiry = |d: f64| not_after - chrono::Duration::seconds((d * 86_400.0) as i64);
    warn(before_expiry(31.0)).await.unwrap();
    assert_eq!(warnings().await, 0);
    warn(before_expiry(29.0)).await.unwrap();
    warn(before_expiry(28.0)).await.unwrap();
    assert_eq!(warnings().await, 1, "30 days: once");
    warn(before_expiry(6.5)).await.unwrap();
    warn(before_expiry(6.0)).await.unwrap();
    assert_eq!(warnings().await, 2, "7 days (14 was missed): once");
    warn(before_expiry(0.5)).await.unwrap();
    assert_eq!(warnings().await, 3, "1 day");

    // Renewal settings: days before expiry instead of two thirds, checked against the lifetime.
    let configure = "mutation($i: ConfigureCertificateRenewalInput!) { configureCertificateRenewal(input: $i) { renewBeforeDays } }";
    let body = app.graphql(Some(&admin), configure, json!({ "i": { "id": new_id, "renewBeforeDays": 45 } })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    let set = app.ok(Some(&admin), configure, json!({ "i": { "id": new_id, "renewBeforeDays": 5 } })).await;
    assert_eq!(set["configureCertificateRenewal"]["renewBeforeDays"], 5);
    let metrics = app.metrics().await;
    for line in [
        "unity_certificate_renewals_total{status=\"SUCCEEDED\"} 1",
        "unity_certificate_renewals_total{status=\"FAILED\"} 2",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
}

async fn eventually_certificate(
    app: &TestApp,
    token: &str,
    query: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    unity_commands::testing::eventually(std::time::Duration::from_secs(10), "the read model", || async {
        let c = app.ok(Some(token), query, json!({ "id": id })).await["certificate"].clone();
        done(&c).then_some(c)
    })
    .await
}

#[actix_rt::test]
async fn certificates_are_deployed_over_ssh_reloaded_and_redeployed_after_renewal() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let dir = std::env::temp_dir().join(format!("unity-deploy-{}", uuid::Uuid::now_v7().simple()));
    let sshd = unity_collectors::testing::sshd::Sshd::start(&dir.join("sshd")).unwrap();
    let login = app
        .ok(
            Some(&admin),
            "mutation { generateSshKey(input: {name: \"login\", algorithm: ED25519}) { id publicKey } }",
            json!({}),
        )
        .await["generateSshKey"]
        .clone();
    std::fs::write(sshd.authorized_keys(), format!("{}\n", login["publicKey"].as_str().unwrap())).unwrap();
    let server_id = app
        .ok(
            Some(&admin),
            "mutation($i: RegisterServerInput!) { registerServer(input: $i) { id } }",
            json!({ "i": { "name": "web", "address": "127.0.0.1", "port": sshd.port, "username": "root",
                           "authentication": { "sshKeyId": login["id"] } } }),
        )
        .await["registerServer"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ca = create_ca(&app, &admin, json!({ "name": "ca", "commonName": "Deploy CA", "validityDays": 365 })).await;
    let cert = issue(
        &app,
        &admin,
        json!({ "caId": ca["id"], "commonName": "web.lab", "dnsNames": ["web.lab"], "validityDays": 30 }),
    )
    .await;
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let path = |f: &str| tls.join(f).display().to_string();
    let deploy = "mutation($i: DeployCertificateInput!) { deployCertificate(input: $i) { kind state error } }";
    let input = json!({
        "certificateId": cert["id"], "serverId": server_id, "certPath": path("web.crt"), "keyPath": path("web.key"),
        "chainPath": path("chain.pem"), "mode": "0640", "reloadCommand": format!("echo reloaded >> {}", path("reloads")),
    });
    let op = app.ok(Some(&admin), deploy, json!({ "i": input })).await["deployCertificate"].clone();
    assert_eq!(op, json!({ "kind": "DEPLOY", "state": "SUCCEEDED", "error": null }));
    assert_eq!(std::fs::read_to_string(tls.join("web.crt")).unwrap(), cert["certificatePem"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(tls.join("chain.pem")).unwrap(), cert["chainPem"].as_str().unwrap());
    let key = std::fs::read_to_string(tls.join("web.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tls.join("web.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(std::fs::read_to_string(tls.join("reloads")).unwrap(), "reloaded\n");
    let (ok, text) = openssl(&["verify", "-CAfile", "chain.pem", "web.crt"], &tls);
    assert!(ok, "the deployed files make a valid chain: {text}");
    let shown = app
        .ok(Some(&admin), "query($id: ID!) { certificate(id: $id) { deployments { serverName certPath keyPath fingerprint reloadExitStatus } } }", json!({ "id": cert["id"] }))
        .await;
    assert_eq!(
        shown["certificate"]["deployments"],
        json!([{ "serverName": "web", "certPath": path("web.crt"), "keyPath": path("web.key"), "fingerprint": cert["fingerprint"], "reloadExitStatus": 0 }])
    );

    // A failing reload: the files are written, the exit status recorded, the operation FAILED.
    let mut failing = input.clone();
    failing["reloadCommand"] = json!("echo nginx: bad config >&2; exit 3");
    let op = app.ok(Some(&admin), deploy, json!({ "i": failing })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "FAILED");
    assert!(op["error"].as_str().unwrap().contains("status 3"), "{op}");
    // Put right: the latest deployment's settings are what renewal reuses.
    let op = app.ok(Some(&admin), deploy, json!({ "i": input })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "SUCCEEDED");
    // Never through a symbolic link (it could point anywhere, /root/.ssh included).
    std::os::unix::fs::symlink(tls.join("web.crt"), tls.join("link.crt")).unwrap();
    let mut linked = input.clone();
    linked["certPath"] = json!(path("link.crt"));
    let op = app.ok(Some(&admin), deploy, json!({ "i": linked })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "FAILED");
    assert!(op["error"].as_str().unwrap().contains("symbolic link"), "{op}");
    // The files are one change: another certificate whose certificate file cannot be written
    // leaves the key file as it was (never a new key beside the old certificate), and no
    // temporary files behind.
    let other = issue(
        &app,
        &admin,
        json!({ "caId": ca["id"], "commonName": "other.lab", "dnsNames": ["other.lab"], "validityDays": 30 }),
    )
    .await;
    let mut partial = linked.clone();
    partial["certificateId"] = other["id"].clone();
    let op = app.ok(Some(&admin), deploy, json!({ "i": partial })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "FAILED", "{op}");
    assert_eq!(std::fs::read_to_string(tls.join("web.key")).unwrap(), key, "the key file is untouched");
    let leftovers: Vec<String> = std::fs::read_dir(&tls)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".unity."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // An operator may deploy a certificate, but writing its key out or running a command is an
    // admin's call.
    app.create_user(&admin, "op", "OPERATOR").await;
    let operator = app.login("op", crate::api::ADMIN_PASSWORD).await;
    assert_eq!(code(&app.graphql(Some(&operator), deploy, json!({ "i": input })).await), Some("FORBIDDEN"));
    let plain = json!({ "certificateId": cert["id"], "serverId": server_id, "certPath": path("plain.crt") });
    let op = app.ok(Some(&operator), deploy, json!({ "i": plain })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "SUCCEEDED");
    // Bad input is refused before anything is asked of the server.
    let mut bad = input.clone();
    bad["certPath"] = json!("relative/web.crt");
    assert_eq!(code(&app.graphql(Some(&admin), deploy, json!({ "i": bad })).await), Some("BAD_USER_INPUT"));
    let mut bad = input.clone();
    bad["mode"] = json!("rwx");
    assert_eq!(code(&app.graphql(Some(&admin), deploy, json!({ "i": bad })).await), Some("BAD_USER_INPUT"));

    // Drift: a hand-replaced certificate file is found by the (scheduled) check and recorded once.
    std::fs::write(tls.join("web.crt"), cert["chainPem"].as_str().unwrap()).unwrap();
    let check = "mutation($id: ID!) { checkServerKeys(serverId: $id) { state } }";
    app.ok(Some(&admin), check, json!({ "id": server_id })).await;
    app.ok(Some(&admin), check, json!({ "id": server_id })).await;
    let drift = app
        .ok(Some(&admin), "query($id: ID!) { server(id: $id) { certificateDrift { certPath expectedFingerprint foundFingerprint } } }", json!({ "id": server_id }))
        .await;
    let found = &drift["server"]["certificateDrift"][0];
    assert_eq!(found["certPath"], path("web.crt"));
    assert_eq!(found["expectedFingerprint"], cert["fingerprint"]);
    assert!(found["foundFingerprint"].is_string() && found["foundFingerprint"] != cert["fingerprint"], "{drift}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CertificateDriftDetected'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(events, 1, "once per distinct difference");
    let op = app.ok(Some(&admin), deploy, json!({ "i": input })).await["deployCertificate"].clone();
    assert_eq!(op["state"], "SUCCEEDED");
    app.ok(Some(&admin), check, json!({ "id": server_id })).await;
    let drift = app
        .ok(
            Some(&admin),
            "query($id: ID!) { server(id: $id) { certificateDrift { certPath } } }",
            json!({ "id": server_id }),
        )
        .await;
    assert_eq!(drift["server"]["certificateDrift"], json!([]), "redeploying puts it right");

    // Renewal redeploys the new certificate to the same place, with the same reload.
    let acme = app.db_acme().await;
    let credentials = app.db_credentials().await;
    let later = chrono::Utc::now() + chrono::Duration::days(21);
    // (web.lab, deployed, and other.lab, whose deployment failed.)
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, later).await.unwrap(), (2, 0));
    let renewed = eventually_certificate(
        &app,
        &admin,
        "query($id: ID!) { certificate(id: $id) { renewedBy } }",
        cert["id"].as_str().unwrap(),
        |c| c["renewedBy"].is_string(),
    )
    .await;
    let new_id = renewed["renewedBy"].as_str().unwrap().to_owned();
    let new = unity_commands::testing::eventually(
        std::time::Duration::from_secs(30),
        "both redeployments (web.crt and the operator's plain.crt)",
        || async {
            let c = app
                .ok(
                    Some(&admin),
                    "query($id: ID!) { certificate(id: $id) { certificatePem deployments { serverName } } }",
                    json!({ "id": new_id }),
                )
                .await["certificate"]
                .clone();
            (c["deployments"].as_array().is_some_and(|d| d.len() == 2)).then_some(c)
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(tls.join("web.crt")).unwrap(), new["certificatePem"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(tls.join("reloads")).unwrap().lines().count(),
        4,
        "reloaded after the redeployment too"
    );

    // A redeployment that fails (the server is down) is asked for again at the next run, until
    // it succeeds.
    let mut sshd = sshd;
    sshd.stop();
    let even_later = later + chrono::Duration::days(21);
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, even_later).await.unwrap(), (2, 0));
    let newest =
        eventually_certificate(&app, &admin, "query($id: ID!) { certificate(id: $id) { renewedBy } }", &new_id, |c| {
            c["renewedBy"].is_string()
        })
        .await["renewedBy"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .unwrap();
    let failed_deploys = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ssh_requests WHERE kind = 'DEPLOY' AND entry_id = $1 AND state = 'FAILED'",
        )
        .bind(newest)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        n
    };
    unity_commands::testing::eventually(std::time::Duration::from_secs(30), "both redeployments failing", || async {
        (failed_deploys().await == 2).then_some(())
    })
    .await;
    sshd.restart().unwrap();
    assert_eq!(unity::schedule::renew_due_certificates(&acme, &credentials, even_later).await.unwrap(), (0, 0));
    let newest_pem = app
        .ok(Some(&admin), "query($id: ID!) { certificate(id: $id) { certificatePem } }", json!({ "id": newest }))
        .await["certificate"]["certificatePem"]
        .as_str()
        .unwrap()
        .to_owned();
    unity_commands::testing::eventually(std::time::Duration::from_secs(30), "the retried redeployment", || async {
        (std::fs::read_to_string(tls.join("web.crt")).unwrap() == newest_pem).then_some(())
    })
    .await;
    drop(sshd);
}
