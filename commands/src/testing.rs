//! Test support shared by every crate's tests: a fresh, migrated database per test (cloned from
//! a template built once per migration set), a superuser connection for tamper tests, and a
//! private nats-server that a test can stop and start.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{postgres::PgPoolOptions, AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

use crate::{store::EventStore, wakeup::Wakeup, MIGRATOR};

pub fn test_database_url() -> String {
    std::env::var("UNITY_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://unity:unity@127.0.0.1:5432/postgres".into())
}

pub fn superuser_url() -> String {
    std::env::var("UNITY_TEST_SUPERUSER_URL")
        .unwrap_or_else(|_| "postgres://unity_test_admin:unity_test_admin@127.0.0.1:5432/postgres".into())
}

/// `base` with its database name replaced.
pub fn url_for_database(base: &str, database: &str) -> String {
    let mut url = url::Url::parse(base).expect("test database URL parses");
    url.set_path(database);
    url.to_string()
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let checksum: Vec<u8> = MIGRATOR.iter().flat_map(|m| m.checksum.iter().copied()).collect();
            let digest = ring::digest::digest(&ring::digest::SHA256, &checksum);
            let name = format!("unity_tpl_{}", &hex::encode(digest)[..16]);
            let mut admin = PgConnection::connect(&test_database_url()).await.expect("connect to the test PostgreSQL");
            // One builder at a time across test binaries; the others wait and reuse it.
            sqlx::query("SELECT pg_advisory_lock(72431)").execute(&mut admin).await.expect("lock");
            let exists: bool = sqlx::query_scalar("SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .expect("query pg_database");
            if !exists {
                let building = format!("{name}_building");
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {building}"))).execute(&mut admin).await.expect("drop");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {building}"))).execute(&mut admin).await.expect("create template");
                let mut conn = PgConnection::connect(&url_for_database(&test_database_url(), &building)).await.expect("connect");
                MIGRATOR.run(&mut conn).await.expect("migrate the template");
                conn.close().await.expect("close");
                sqlx::query(AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {name}"))).execute(&mut admin).await.expect("rename");
            }
            // Databases left by earlier runs (test binaries run one after another).
            let stale: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'unity\\_test\\_%' OR (datname LIKE 'unity\\_tpl\\_%' AND datname <> $1)")
                    .bind(&name)
                    .fetch_all(&mut admin)
                    .await
                    .expect("list stale test databases");
            for database in stale {
                let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))).execute(&mut admin).await;
            }
            sqlx::query("SELECT pg_advisory_unlock(72431)").execute(&mut admin).await.expect("unlock");
            name
        })
        .await
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A new database with every migration applied, for one test.
    pub async fn new() -> TestDb {
        let template = template().await;
        let name = format!("unity_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&test_database_url()).await.expect("connect");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = url_for_database(&test_database_url(), &name);
        let pool = PgPoolOptions::new().max_connections(8).connect(&url).await.expect("connect to the test database");
        TestDb { name, url, pool }
    }

    pub fn store(&self) -> EventStore {
        EventStore::new(self.pool.clone(), Wakeup::default())
    }

    /// A superuser connection to this database: what an attacker with the server could do.
    pub async fn superuser(&self) -> PgConnection {
        PgConnection::connect(&url_for_database(&superuser_url(), &self.name))
            .await
            .expect("connect as the test superuser")
    }
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private nats-server with JetStream on a free loopback port.
pub struct NatsServer {
    pub port: u16,
    store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let store_dir = std::env::temp_dir().join(format!("unity-nats-{}", uuid::Uuid::now_v7().simple()));
        let mut server = NatsServer { port, store_dir, child: None };
        server.resume().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and storage after [`NatsServer::stop`].
    pub async fn resume(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (scripts/provision.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        eventually(Duration::from_secs(10), "nats-server to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
    }

    /// Loses JetStream's storage, as a server restarted without its volume does (call after
    /// [`NatsServer::stop`]).
    pub fn wipe_storage(&self) {
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}
