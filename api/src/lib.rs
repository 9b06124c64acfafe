//! Unity's front door: actix-web serving the GraphQL API (queries, mutations, subscriptions over
//! graphql-transport-ws), authentication and roles, /metrics, /healthz and /readyz.

pub mod auth;
pub mod errors;
pub mod fleet;
mod http;
pub mod metrics;
mod operation;
pub mod orchestration;
pub mod schema;
mod state;
pub mod tail;
mod ws;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{middleware::from_fn, web, HttpServer};
pub use auth::ThrottleConfig;
pub use state::ApiState;
use tokio::sync::watch;
pub use unity_commands::Commands;

/// Bounds on what one request may ask of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Nesting of selection sets, fragments, input values and list types.
    pub max_depth: usize,
    /// Tokens in a document.
    pub max_tokens: usize,
    /// Fields in an operation, fragments expanded (aliases count, so an alias flood is refused).
    pub max_fields: usize,
    pub max_body_bytes: usize,
    pub max_ws_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 15,
            max_tokens: 5_000,
            max_fields: 300,
            max_body_bytes: 1024 * 1024,
            max_ws_message_bytes: 64 * 1024,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub session_lifetime: chrono::Duration,
    /// How long a mutation waits for the read models to show its effect before answering.
    pub read_your_writes_timeout: Duration,
    pub limits: Limits,
    pub throttle: ThrottleConfig,
    /// HTTP worker threads (actix-web's own runtimes).
    pub workers: usize,
    /// How long a mutation that acts on servers waits for their outcomes before answering
    /// with what it has (the rest show as PENDING).
    pub ssh_wait: Duration,
    /// A certificate within this many days of its expiry has status EXPIRING.
    pub expiring_days: i64,
    /// How long registerAcmeAccount and requestAcmeCertificate wait for the ACME reactor's
    /// outcome before answering with a PENDING record (to be followed by query or subscription).
    pub acme_wait: Duration,
    /// How long a WebSocket may stay open without `connection_init` (then it is closed, 4408).
    pub ws_init_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            session_lifetime: chrono::Duration::hours(12),
            read_your_writes_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            throttle: ThrottleConfig::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            ssh_wait: Duration::from_secs(30),
            expiring_days: 30,
            acme_wait: Duration::from_secs(90),
            ws_init_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves the API on `listener` until `shutdown` turns true; open connections get a few seconds
/// to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    tokio::spawn(state.tail.clone().run(shutdown.clone()));
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        actix_web::App::new().app_data(data.clone()).wrap(from_fn(http::observe)).configure(http::routes)
    })
    .workers(state.config.workers)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        handle.stop(true).await;
    });
    server.await
}
