//! `unity bench certificates`: issuing internal certificates, one after another, each recorded
//! as an event with its key sealed in the vault (fresh `<database>_bench_certificates` database).

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};
use unity_commands::x509::{NewCa, NewCertificate, X509Commands};
use unity_domain::{
    x509::{CertificateUsage, X509KeyAlgorithm},
    Actor, EventMetadata,
};

use crate::config::Settings;

pub async fn certificates(settings: &Settings, count: usize) -> Result<Value> {
    let (store, vault) = super::bench_store_and_vault(settings, "_certificates").await?;
    let x509 = X509Commands::new(store, vault);
    let metadata = EventMetadata::new(Actor::system("bench"), "bench");
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
    Ok(json!({ "benchmark": "certificates", "runs": results }))
}
