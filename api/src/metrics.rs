//! /metrics: request counts and latencies, events appended, projections' positions and lag, the
//! relay's lag, in the Prometheus (OpenMetrics) text format. Request metrics are counted as
//! requests finish; the rest is read at scrape time.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use unity_commands::store::Cursor;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlgorithmLabels {
    pub algorithm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostKeyLabels {
    pub host_key_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DistributionLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReactorLabels {
    pub reactor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub graphql_operations: Family<OperationLabels, Counter>,
    pub rejected_documents: Counter,
    pub login_failures: Counter,
    pub subscriptions: Gauge,
    pub events_appended: Counter,
    pub head_position: Gauge,
    pub projection_position: Family<ProjectionLabels, Gauge>,
    pub projection_lag: Family<ProjectionLabels, Gauge>,
    pub projection_stopped: Family<ProjectionLabels, Gauge>,
    pub relay_lag: Gauge,
    pub nats_connected: Gauge,
    pub reactor_active: Family<ReactorLabels, Gauge>,
    pub ssh_keys: Family<AlgorithmLabels, Gauge>,
    pub servers: Family<HostKeyLabels, Gauge>,
    pub distributions: Family<DistributionLabels, Counter>,
    pub certificates_signed: Counter,
    pub certificates: Family<StatusLabels, Gauge>,
    pub soonest_expiry_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub renewals: Family<StatusLabels, Counter>,
    pub acme_orders: Family<StatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("unity");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served, by route and status", requests.clone());
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        registry.register("http_request_duration_seconds", "HTTP request latency", request_seconds.clone());
        let graphql_operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "graphql_operations",
            "GraphQL operations executed, by kind (query, mutation, subscription)",
            graphql_operations.clone(),
        );
        let rejected_documents = Counter::default();
        registry.register(
            "graphql_rejected_requests",
            "Requests refused before execution: too large, malformed, too deep or too complex",
            rejected_documents.clone(),
        );
        let login_failures = Counter::default();
        registry.register("login_failures", "Failed or refused logins", login_failures.clone());
        let subscriptions = Gauge::default();
        registry.register("graphql_subscriptions_active", "Open GraphQL subscriptions", subscriptions.clone());
        let events_appended = Counter::default();
        registry.register("events_appended", "Events this process appended", events_appended.clone());
        let head_position = Gauge::default();
        registry.register(
            "event_store_head_position",
            "Global position of the newest committed event",
            head_position.clone(),
        );
        let projection_position = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_position",
            "Global position each projection has applied",
            projection_position.clone(),
        );
        let projection_lag = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag_events",
            "Committed events each projection has yet to apply",
            projection_lag.clone(),
        );
        let projection_stopped = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_stopped",
            "1 when a projection stopped on an event it cannot apply",
            projection_stopped.clone(),
        );
        let relay_lag = Gauge::default();
        registry.register("relay_lag_events", "Committed events not yet published to NATS", relay_lag.clone());
        let reactor_active = Family::<ReactorLabels, Gauge>::default();
        registry.register(
            "reactor_active",
            "Whether some process runs this reactor (holds its lease): 1, or 0 (start the collectors role)",
            reactor_active.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "nats_connected",
            "Whether this process is connected to NATS (1) or not (0)",
            nats_connected.clone(),
        );
        let ssh_keys = Family::<AlgorithmLabels, Gauge>::default();
        registry.register("ssh_keys", "SSH keys held (not deleted), by algorithm", ssh_keys.clone());
        let servers = Family::<HostKeyLabels, Gauge>::default();
        registry.register("servers", "Servers in the inventory, by host key status", servers.clone());
        let distributions = Family::<DistributionLabels, Counter>::default();
        registry.register(
            "ssh_key_distributions",
            "Key installs and removals on servers, by outcome",
            distributions.clone(),
        );
        let certificates_signed = Counter::default();
        registry.register("ssh_certificates_signed", "SSH certificates signed", certificates_signed.clone());
        let certificates = Family::<StatusLabels, Gauge>::default();
        registry.register("certificates", "X.509 certificates kept, by status", certificates.clone());
        let soonest_expiry_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "certificate_soonest_expiry_seconds",
            "Seconds until the soonest expiry among unrevoked, unexpired certificates",
            soonest_expiry_seconds.clone(),
        );
        let renewals = Family::<StatusLabels, Counter>::default();
        registry.register(
            "certificate_renewals",
            "Certificate renewals, by outcome (SUCCEEDED, FAILED)",
            renewals.clone(),
        );
        let acme_orders = Family::<StatusLabels, Gauge>::default();
        registry.register("acme_orders", "ACME orders, by status (PENDING, VALID, INVALID)", acme_orders.clone());
        Metrics {
            registry,
            renewals,
            acme_orders,
            certificates,
            soonest_expiry_seconds,
            ssh_keys,
            servers,
            distributions,
            certificates_signed,
            requests,
            request_seconds,
            graphql_operations,
            rejected_documents,
            login_failures,
            subscriptions,
            events_appended,
            head_position,
            projection_position,
            projection_lag,
            projection_stopped,
            relay_lag,
            nats_connected,
            reactor_active,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { method: method.into(), route: route.into(), status }).inc();
        self.request_seconds.get_or_create(&RouteLabels { route: route.into() }).observe(seconds);
    }

    /// Brings the process-wide counter of appended events up to the store's own count.
    pub fn set_events_appended(&self, total: u64) {
        catch_up(&self.events_appended, total as i64);
    }

    pub fn set_projection(&self, name: &str, position: Cursor, lag: i64, stopped: bool) {
        let labels = ProjectionLabels { projection: name.into() };
        self.projection_position.get_or_create(&labels).set(position.global_position);
        self.projection_lag.get_or_create(&labels).set(lag);
        self.projection_stopped.get_or_create(&labels).set(i64::from(stopped));
    }

    /// Sets the credential gauges and brings the counters up to the read model's counts.
    pub fn set_credentials(&self, counts: &unity_projections::credentials::CredentialCounts) {
        for algorithm in unity_domain::credentials::KeyAlgorithm::ALL {
            self.ssh_keys.get_or_create(&AlgorithmLabels { algorithm: algorithm.as_str().into() }).set(0);
        }
        for (algorithm, n) in &counts.keys_by_algorithm {
            self.ssh_keys.get_or_create(&AlgorithmLabels { algorithm: algorithm.clone() }).set(*n);
        }
        for status in ["UNKNOWN", "PINNED", "MISMATCH"] {
            self.servers.get_or_create(&HostKeyLabels { host_key_status: status.into() }).set(0);
        }
        for (status, n) in &counts.servers_by_host_key_status {
            self.servers.get_or_create(&HostKeyLabels { host_key_status: status.clone() }).set(*n);
        }
        for (kind, outcome, n) in &counts.distributions {
            let counter =
                self.distributions.get_or_create(&DistributionLabels { kind: kind.clone(), outcome: outcome.clone() });
            catch_up(&counter, *n);
        }
        catch_up(&self.certificates_signed, counts.certificates_signed);
    }

    pub fn set_certificates(&self, by_status: &[(String, i64)], soonest_seconds: Option<f64>) {
        for status in ["VALID", "EXPIRING", "EXPIRED", "REVOKED"] {
            self.certificates.get_or_create(&StatusLabels { status: status.into() }).set(0);
        }
        for (status, n) in by_status {
            self.certificates.get_or_create(&StatusLabels { status: status.clone() }).set(*n);
        }
        self.soonest_expiry_seconds.set(soonest_seconds.unwrap_or(f64::NAN));
    }

    pub fn set_renewals(&self, succeeded: i64, failed: i64) {
        catch_up(&self.renewals.get_or_create(&StatusLabels { status: "SUCCEEDED".into() }), succeeded);
        catch_up(&self.renewals.get_or_create(&StatusLabels { status: "FAILED".into() }), failed);
    }

    pub fn set_acme_orders(&self, by_status: &[(String, i64)]) {
        for status in ["PENDING", "VALID", "INVALID"] {
            self.acme_orders.get_or_create(&StatusLabels { status: status.into() }).set(0);
        }
        for (status, n) in by_status {
            self.acme_orders.get_or_create(&StatusLabels { status: status.clone() }).set(*n);
        }
    }

    /// The OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The classic Prometheus text format (`text/plain; version=0.0.4`), for scrapers and tools
    /// that do not speak OpenMetrics.
    pub fn encode_classic(&self) -> String {
        classic_text(&self.encode())
    }
}

/// Rewrites OpenMetrics text as the classic text format: a counter family is named after its
/// `_total` samples, `# UNIT` lines and the `# EOF` terminator go, and `_created` samples
/// (which the classic format would read as a separate metric) are dropped.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((kind, rest)) = header {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if counters.contains(name) { "_total" } else { "" };
            let tail = match tail {
                "info" | "stateset" => "gauge",
                "unknown" => "untyped",
                other => other,
            };
            out.push_str(&format!("{kind}{name}{suffix} {tail}\n"));
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if name.strip_suffix("_created").is_some_and(|family| counters.contains(family)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Moves a counter up to a total counted elsewhere (never down).
fn catch_up(counter: &Counter, total: i64) {
    let seen = counter.get();
    if total > 0 && total as u64 > seen {
        counter.inc_by(total as u64 - seen);
    }
}
