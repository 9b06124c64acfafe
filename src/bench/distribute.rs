//! `unity bench distribute`: one key distributed to N real sshd instances on loopback, timed from
//! the first request recorded to the last outcome recorded, with the SSH reactor at several
//! concurrency limits. Each server's work is a connection (key exchange, Ed25519 login), a read
//! of authorized_keys and an atomic rewrite of it, each request and outcome an event.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use unity_collectors::{
    servers::{ssh::SshConfig, SshReactor},
    testing::sshd::Sshd,
};
use unity_commands::credentials::CredentialCommands;
use unity_domain::{
    credentials::{KeyAlgorithm, SshKeyState},
    servers::{EntryKind, ManagedEntry, ManagedFile, ServerAuth, ServerRequest, ServerSpec, ServerState},
    Actor,
};
use uuid::Uuid;

use crate::config::Settings;

pub async fn distribute(settings: &Settings, servers: usize, concurrency: &[usize], rounds: usize) -> Result<Value> {
    let (store, vault) = super::bench_store_and_vault(settings, "_distribute").await?;
    let x509 = unity_commands::certificates::X509Commands::new(store.clone(), vault.clone());
    let commands = CredentialCommands::new(store, vault);
    let inventory = unity_commands::servers::ServerCommands::new(commands.clone());
    let metadata = unity_commands::metadata(Actor::system("bench"), "bench");

    // The fleet: N sshd, each trusting Unity's login key in its own lines.
    let login =
        commands.generate_ssh_key("bench-login", KeyAlgorithm::Ed25519, None, "bench", vec![], &metadata).await?;
    let SshKeyState::Active(login_key) = commands.ssh_key(login.id).await? else { bail!("the login key vanished") };
    let root = std::env::temp_dir().join(format!("unity-bench-sshd-{}", Uuid::now_v7().simple()));
    let mut fleet = Vec::with_capacity(servers);
    let mut server_ids = Vec::with_capacity(servers);
    for n in 0..servers {
        let sshd = Sshd::start(&root.join(format!("s{n}"))).map_err(|e| anyhow!(e))?;
        std::fs::write(sshd.authorized_keys(), format!("{}\n", login_key.key.public_key))?;
        let spec = ServerSpec {
            name: format!("bench-{n}"),
            address: "127.0.0.1".into(),
            port: sshd.port,
            username: "root".into(),
            authentication: ServerAuth::SshKey { key_id: login.id },
            authorized_keys_file: sshd.authorized_keys().display().to_string(),
            tags: vec![],
        };
        let host_key = sshd.host_key_fingerprint().map_err(|e| anyhow!(e))?;
        server_ids.push(inventory.register_server(spec, Some(host_key), &metadata).await?.id);
        fleet.push(sshd);
    }

    let mut runs = Vec::new();
    for &limit in concurrency {
        let mut reactor = SshReactor::new(commands.clone(), x509.clone(), SshConfig::default(), limit);
        // Start each run's reactor at the head: the requests of earlier runs are done.
        while reactor.run_once().await? > 0 {}
        let mut seconds = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let key =
                commands.generate_ssh_key("bench", KeyAlgorithm::Ed25519, None, "bench", vec![], &metadata).await?;
            let SshKeyState::Active(data) = commands.ssh_key(key.id).await? else { bail!("the key vanished") };
            let entry = ManagedEntry {
                kind: EntryKind::SshKey,
                id: key.id,
                fingerprint: data.key.fingerprint.clone(),
                public_key: data.key.public_key.clone(),
            };
            let started = Instant::now();
            for server_id in &server_ids {
                let request = ServerRequest::Install {
                    file: ManagedFile::AuthorizedKeys { user: "root".into() },
                    entry: entry.clone(),
                    replaces: None,
                };
                inventory.request(*server_id, request, &metadata).await?;
            }
            while reactor.run_once().await? > 0 {}
            seconds.push(started.elapsed().as_secs_f64());
            // Every server must have it, or the number means nothing.
            for server_id in &server_ids {
                let ServerState::Active(server) = inventory.server(*server_id).await? else {
                    bail!("a server vanished")
                };
                if !server.installed.contains_key(&(ManagedFile::AuthorizedKeys { user: "root".into() }, key.id)) {
                    bail!("the key did not reach server {server_id}: see its KeyInstallFailed event");
                }
            }
        }
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        runs.push(json!({
            "concurrency": limit,
            "seconds_median": median,
            "seconds_min": seconds[0],
            "seconds_max": seconds[seconds.len() - 1],
            "servers_per_second": servers as f64 / median,
        }));
    }
    drop(fleet);
    let _ = std::fs::remove_dir_all(&root).context("removing the bench sshd directories");
    Ok(json!({ "benchmark": "distribute", "servers": servers, "rounds": rounds, "runs": runs }))
}
