//! End-to-end tests of the `unity` binary against real PostgreSQL and NATS, driven as an
//! operator would drive it.

mod acme;
mod api;
mod certificates;
mod cli;
mod clients;
mod credentials;
mod monitoring;
mod serve;
mod websocket;

use std::process::{Command, Output};

use unity_commands::testing::TestDb;

/// Runs `unity` with the test database's settings plus `env`, feeding `stdin`.
pub fn unity(db: &TestDb, key_file: &std::path::Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unity"));
    cmd.args(args)
        .env_remove("NATS_URL")
        .env("DATABASE_URL", &db.url)
        .env("UNITY_MASTER_KEY_FILE", key_file)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run unity");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("unity finishes")
}

pub fn key_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("unity-e2e-{}/master.key", uuid::Uuid::now_v7().simple()))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
