//! `unity bench certificates`: issuing internal certificates, one after another, each recorded
//! as an event with its key sealed in the vault (fresh `<database>_bench_certificates` database);
//! then ACME certificates from a real Pebble, through the whole application (fresh
//! `<database>_bench_acme` database): HTTP-01 answered by Unity's API, the ACME reactor, the
//! projections, from the order's request to its certificate recorded.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use unity_collectors::testing::testbed::{Pebble, PebbleOptions};
use unity_commands::{
    acme::{AcmeCommands, NewAcmeAccount},
    certificates::{NewCa, NewCertificate, X509Commands},
};
use unity_domain::{
    acme::{AcmeAccountState, AcmeOrderSpec, AcmeOrderState, ChallengeKind},
    certificates::{CertificateUsage, X509KeyAlgorithm},
    Actor,
};

use crate::{
    app::{App, Role},
    config::Settings,
};

pub async fn certificates(settings: &Settings, count: usize, acme_orders: usize) -> Result<Value> {
    let (store, vault) = super::bench_store_and_vault(settings, "_certificates").await?;
    let x509 = X509Commands::new(store, vault);
    let metadata = unity_commands::metadata(Actor::system("bench"), "bench");
    let now = chrono::Utc::now();
    let ca = NewCa {
        name: "bench".into(),
        common_name: "Bench CA".into(),
        organization: None,
        key_algorithm: X509KeyAlgorithm::EcdsaP256,
        validity_days: 3650,
        path_length: Some(0),
        parent_id: None,
    };
    let ca_id = x509.create_ca(ca, now, &metadata).await?.id;
    let mut results = Vec::new();
    for algorithm in [X509KeyAlgorithm::EcdsaP256, X509KeyAlgorithm::Rsa2048] {
        let started = Instant::now();
        for n in 0..count {
            let name = format!("host{n}.bench.lab");
            let new = NewCertificate {
                ca_id,
                name: None,
                common_name: name.clone(),
                dns_names: vec![name],
                ip_addresses: vec![],
                validity_days: 90,
                usage: CertificateUsage::Server,
                key_algorithm: algorithm,
            };
            x509.issue(new, chrono::Utc::now(), &metadata).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        results.push(json!({
            "key_algorithm": algorithm.as_str(),
            "certificates": count,
            "seconds": seconds,
            "per_second": count as f64 / seconds,
        }));
    }
    let acme = match acme_orders {
        0 => Value::Null,
        n => acme(settings, n).await?,
    };
    Ok(json!({ "benchmark": "certificates", "runs": results, "acme": acme }))
}

/// Registers an account at a Pebble started here, then orders `orders` certificates for
/// `localhost` one after another, each validated over HTTP-01 for real.
async fn acme(settings: &Settings, orders: usize) -> Result<Value> {
    let name = super::bench_database(settings, true, "_acme").await?.1;
    let mut settings = settings.clone();
    settings.database = settings.database.clone().database(&name);
    settings.admin_password = Some("bench password, long enough".into());
    settings.master_key_file = std::env::temp_dir().join(format!("unity-bench-acme-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&settings.master_key_file);
    let app = App::connect(settings.clone()).await?;
    let commands = app.commands().await?.acme;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("unity-bench-pebble-{}", std::process::id()));
    let pebble = Pebble::start(&dir, &PebbleOptions { http_port: port, ..PebbleOptions::default() })
        .map_err(|e| anyhow!("Pebble: {e}"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(app.serve(&[Role::All], Some(listener), stopped));
    let result = acme_orders(&commands, &pebble, orders).await;
    let _ = stop.send(true);
    let _ = server.await;
    drop(pebble);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&settings.master_key_file);
    result
}

async fn acme_orders(acme: &AcmeCommands, pebble: &Pebble, orders: usize) -> Result<Value> {
    let metadata = unity_commands::metadata(Actor::system("bench"), "bench");
    let started = Instant::now();
    let account = NewAcmeAccount {
        name: "pebble".into(),
        directory_url: pebble.directory_url.clone(),
        email: None,
        eab: None,
        ca_bundle_pem: Some(pebble.tls_ca_pem.clone()),
        terms_agreed: true,
    };
    let account_id = acme.register_account(account, &metadata).await?.id;
    loop {
        match acme.account(account_id).await? {
            AcmeAccountState::Registered { .. } => break,
            AcmeAccountState::Failed { error, .. } => bail!("registering at Pebble failed: {error}"),
            _ if started.elapsed() > Duration::from_secs(60) => bail!("no registration within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let registration = started.elapsed().as_secs_f64();
    let mut seconds = Vec::with_capacity(orders);
    for _ in 0..orders {
        let spec = AcmeOrderSpec {
            account_id,
            name: "localhost".into(),
            domains: vec!["localhost".into()],
            challenge: ChallengeKind::Http01,
            key_algorithm: X509KeyAlgorithm::EcdsaP256,
            dns_provider_id: None,
            renewal_of: None,
        };
        let started = Instant::now();
        let order_id = acme.request_order(uuid::Uuid::now_v7(), spec, &metadata).await?.id;
        loop {
            match acme.order(order_id).await? {
                AcmeOrderState::Completed { .. } => break,
                AcmeOrderState::Failed { error, .. } => bail!("the ACME order failed: {error}\n{}", pebble.log()),
                _ if started.elapsed() > Duration::from_secs(120) => bail!("no certificate within 120 s"),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        seconds.push(started.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(json!({
        "directory": "pebble",
        "challenge": "HTTP01",
        "registration_seconds": registration,
        "orders": orders,
        "order_seconds_median": seconds[seconds.len() / 2],
        "order_seconds_max": seconds.last(),
    }))
}
