//! Typed settings, read from the environment once at start-up. Everything else receives what it
//! needs from here; nothing below `main` reads the environment.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{anyhow, bail, Result};
use sqlx::postgres::PgConnectOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `Debug` is written by hand below: the database options hold its password and
/// `admin_password` is one, and neither may reach a log line.
#[derive(Clone)]
pub struct Settings {
    pub database: PgConnectOptions,
    /// For messages: the database URL without its password.
    pub database_display: String,
    pub nats_url: Option<String>,
    pub bind: SocketAddr,
    pub master_key_file: PathBuf,
    pub admin_password: Option<String>,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    pub log_format: LogFormat,
    /// How often the projections role seals stream heads.
    pub seal_interval: std::time::Duration,
    /// How long a login session lasts.
    pub session_lifetime: chrono::Duration,
    /// SSH operations carried out at once by the collectors role.
    pub ssh_concurrency: usize,
    pub ssh_connect_timeout: std::time::Duration,
    /// How long a mutation acting on servers waits for their outcomes.
    pub ssh_wait: std::time::Duration,
    /// How often every server's managed key blocks are read back for drift.
    pub key_check_interval: std::time::Duration,
    /// How often the unused-keys report is made, and after how many days a key counts as unused.
    pub unused_keys_report_interval: std::time::Duration,
    pub unused_keys_days: u32,
    /// How often due certificates are renewed and expiry warnings checked.
    pub certificate_check_interval: std::time::Duration,
    /// Days before expiry at which `CertificateExpiring` is recorded (once each).
    pub expiry_warning_days: Vec<u32>,
    /// How long registerAcmeAccount and requestAcmeCertificate wait for the directory.
    pub acme_wait: std::time::Duration,
    /// How long a WebSocket may stay open without `connection_init`.
    pub ws_init_timeout: std::time::Duration,
    /// How long an append that finds no other waiting waits for company before it commits alone.
    pub append_group_wait: std::time::Duration,
    /// The longest one ACME order may take before it is recorded as failed.
    pub acme_order_timeout: std::time::Duration,
    /// How long samples and summaries are kept, and where removed events are archived.
    pub retention: unity_commands::retention::RetentionPolicy,
    /// How often the projections role removes expired buckets.
    pub retention_interval: std::time::Duration,
    /// Monitoring polls running at once in one collectors process, and one poll's time limit.
    pub monitoring_concurrency: usize,
    pub monitoring_poll_timeout: std::time::Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database", &self.database_display)
            .field("nats_url", &self.nats_url)
            .field("bind", &self.bind)
            .field("master_key_file", &self.master_key_file)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "[redacted]"))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("log_format", &self.log_format)
            .field("seal_interval", &self.seal_interval)
            .field("session_lifetime", &self.session_lifetime)
            .field("ssh_concurrency", &self.ssh_concurrency)
            .field("ssh_connect_timeout", &self.ssh_connect_timeout)
            .field("ssh_wait", &self.ssh_wait)
            .field("key_check_interval", &self.key_check_interval)
            .field("unused_keys_report_interval", &self.unused_keys_report_interval)
            .field("unused_keys_days", &self.unused_keys_days)
            .field("certificate_check_interval", &self.certificate_check_interval)
            .field("expiry_warning_days", &self.expiry_warning_days)
            .field("acme_wait", &self.acme_wait)
            .field("ws_init_timeout", &self.ws_init_timeout)
            .field("acme_order_timeout", &self.acme_order_timeout)
            .field("append_group_wait", &self.append_group_wait)
            .field("retention", &self.retention)
            .field("retention_interval", &self.retention_interval)
            .field("monitoring_concurrency", &self.monitoring_concurrency)
            .field("monitoring_poll_timeout", &self.monitoring_poll_timeout)
            .finish()
    }
}

/// The settings a TOML file may hold: each environment variable's name in lower case, without
/// the `UNITY_` prefix (`database_url`, `bind`, `seal_interval_secs`, …).
const FILE_KEYS: &[(&str, &str)] = &[
    ("database_url", "DATABASE_URL"),
    ("nats_url", "NATS_URL"),
    ("bind", "UNITY_BIND"),
    ("master_key_file", "UNITY_MASTER_KEY_FILE"),
    ("admin_password", "UNITY_ADMIN_PASSWORD"),
    ("nats_stream", "UNITY_NATS_STREAM"),
    ("nats_subject_prefix", "UNITY_NATS_SUBJECT_PREFIX"),
    ("log_format", "UNITY_LOG_FORMAT"),
    ("seal_interval_secs", "UNITY_SEAL_INTERVAL_SECS"),
    ("session_ttl_secs", "UNITY_SESSION_TTL_SECS"),
    ("ssh_concurrency", "UNITY_SSH_CONCURRENCY"),
    ("ssh_connect_timeout_secs", "UNITY_SSH_CONNECT_TIMEOUT_SECS"),
    ("ssh_wait_secs", "UNITY_SSH_WAIT_SECS"),
    ("key_check_interval_secs", "UNITY_KEY_CHECK_INTERVAL_SECS"),
    ("unused_keys_report_interval_secs", "UNITY_UNUSED_KEYS_REPORT_INTERVAL_SECS"),
    ("unused_keys_days", "UNITY_UNUSED_KEYS_DAYS"),
    ("certificate_check_interval_secs", "UNITY_CERTIFICATE_CHECK_INTERVAL_SECS"),
    ("expiry_warning_days", "UNITY_EXPIRY_WARNING_DAYS"),
    ("acme_wait_secs", "UNITY_ACME_WAIT_SECS"),
    ("ws_init_timeout_secs", "UNITY_WS_INIT_TIMEOUT_SECS"),
    ("acme_order_timeout_secs", "UNITY_ACME_ORDER_TIMEOUT_SECS"),
    ("append_group_wait_us", "UNITY_APPEND_GROUP_WAIT_US"),
    ("metrics_retention_days", "UNITY_METRICS_RETENTION_DAYS"),
    ("summary_retention_days", "UNITY_SUMMARY_RETENTION_DAYS"),
    ("retention_archive_dir", "UNITY_RETENTION_ARCHIVE_DIR"),
    ("retention_interval_secs", "UNITY_RETENTION_INTERVAL_SECS"),
    ("monitoring_concurrency", "UNITY_MONITORING_CONCURRENCY"),
    ("monitoring_poll_timeout_secs", "UNITY_MONITORING_POLL_TIMEOUT_SECS"),
];

/// Reads an optional TOML settings file into environment-variable names and values.
pub fn read_config_file(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the configuration file {}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow!("the configuration file {} is not valid TOML: {}", path.display(), e.message())
    })?;
    let mut values = HashMap::new();
    for (key, value) in table {
        let Some((_, env)) = FILE_KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = FILE_KEYS.iter().map(|(k, _)| *k).collect();
            bail!(
                "the configuration file {} has an unknown setting '{key}' (known: {})",
                path.display(),
                known.join(", ")
            );
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            other => bail!(
                "the configuration file {}: '{key}' must be a string or a number, not {}",
                path.display(),
                other.type_str()
            ),
        };
        values.insert((*env).to_owned(), value);
    }
    Ok(values)
}

impl Settings {
    /// Reads the settings from environment variables, falling back to the TOML file named by
    /// `config_file` (or `UNITY_CONFIG`), then to the defaults of the README.
    pub fn from_env(config_file: Option<&Path>) -> Result<Settings> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = match config_file.map(Path::to_path_buf).or_else(|| env("UNITY_CONFIG").map(PathBuf::from)) {
            Some(path) => read_config_file(&path)?,
            None => HashMap::new(),
        };
        Settings::from_lookup(|name| env(name).or_else(|| file.get(name).cloned()))
    }

    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let database_url = var("DATABASE_URL").unwrap_or_else(|| "postgres://unity:unity@127.0.0.1:5432/unity".into());
        let (database, database_display) = parse_database_url(&database_url)?;
        let nats_url = var("NATS_URL").map(|u| parse_nats_url(&u)).transpose()?;
        let bind = var("UNITY_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind = SocketAddr::from_str(&bind)
            .map_err(|_| anyhow!("UNITY_BIND '{bind}' is not an address:port such as 127.0.0.1:8080"))?;
        let master_key_file = var("UNITY_MASTER_KEY_FILE").map(PathBuf::from).unwrap_or_else(default_master_key_file);
        let nats_stream = var("UNITY_NATS_STREAM").unwrap_or_else(|| "UNITY_EVENTS".into());
        if nats_stream.is_empty() || !nats_stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("UNITY_NATS_STREAM '{nats_stream}' may hold only letters, digits, '_' and '-'");
        }
        let nats_subject_prefix = var("UNITY_NATS_SUBJECT_PREFIX").unwrap_or_else(|| "unity.events".into());
        let valid_prefix = nats_subject_prefix
            .split('.')
            .all(|token| !token.is_empty() && token.chars().all(|c| !c.is_whitespace() && c != '*' && c != '>'));
        if !valid_prefix {
            bail!("UNITY_NATS_SUBJECT_PREFIX '{nats_subject_prefix}' is not a NATS subject (dot-separated tokens, no wildcards)");
        }
        let log_format = match var("UNITY_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("UNITY_LOG_FORMAT '{other}' is neither 'json' nor 'pretty'"),
        };
        let seconds = |name: &str, default: u64| match var(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && *n <= 10 * 365 * 24 * 3600)
                .ok_or_else(|| anyhow!("{name} '{s}' is not a positive number of seconds")),
        };
        let seal_interval = seconds("UNITY_SEAL_INTERVAL_SECS", 10)?;
        let session_lifetime = seconds("UNITY_SESSION_TTL_SECS", 12 * 3600)?;
        let ssh_concurrency = seconds("UNITY_SSH_CONCURRENCY", 16)?;
        if ssh_concurrency > 1024 {
            bail!("UNITY_SSH_CONCURRENCY '{ssh_concurrency}' is more than 1024");
        }
        let ssh_connect_timeout = seconds("UNITY_SSH_CONNECT_TIMEOUT_SECS", 10)?;
        let ssh_wait = seconds("UNITY_SSH_WAIT_SECS", 30)?;
        let key_check_interval = seconds("UNITY_KEY_CHECK_INTERVAL_SECS", 3600)?;
        let unused_keys_report_interval = seconds("UNITY_UNUSED_KEYS_REPORT_INTERVAL_SECS", 7 * 24 * 3600)?;
        let unused_keys_days = seconds("UNITY_UNUSED_KEYS_DAYS", 90)?;
        if unused_keys_days > 3650 {
            bail!("UNITY_UNUSED_KEYS_DAYS '{unused_keys_days}' is more than 3650");
        }
        let certificate_check_interval = seconds("UNITY_CERTIFICATE_CHECK_INTERVAL_SECS", 3600)?;
        let acme_wait = seconds("UNITY_ACME_WAIT_SECS", 90)?;
        let ws_init_timeout = seconds("UNITY_WS_INIT_TIMEOUT_SECS", 10)?;
        let acme_order_timeout = seconds("UNITY_ACME_ORDER_TIMEOUT_SECS", 300)?;
        if acme_order_timeout == 0 {
            bail!("UNITY_ACME_ORDER_TIMEOUT_SECS must be at least 1");
        }
        let append_group_wait = match var("UNITY_APPEND_GROUP_WAIT_US") {
            None => 0,
            Some(s) => s.parse::<u64>().ok().filter(|us| *us <= 100_000).ok_or_else(|| {
                anyhow!("UNITY_APPEND_GROUP_WAIT_US '{s}' is not a number of microseconds from 0 to 100000")
            })?,
        };
        let days = |name: &str, default: u32| match var(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| anyhow!("{name} '{s}' is not a number of days from 1 to 36500")),
        };
        let retention = unity_commands::retention::RetentionPolicy {
            samples_days: days("UNITY_METRICS_RETENTION_DAYS", 30)?,
            summaries_days: days("UNITY_SUMMARY_RETENTION_DAYS", 730)?,
            archive_dir: var("UNITY_RETENTION_ARCHIVE_DIR").map(PathBuf::from),
        };
        let retention_interval = seconds("UNITY_RETENTION_INTERVAL_SECS", 3600)?;
        let monitoring_concurrency = seconds("UNITY_MONITORING_CONCURRENCY", 32)?;
        if !(1..=1024).contains(&monitoring_concurrency) {
            bail!("UNITY_MONITORING_CONCURRENCY '{monitoring_concurrency}' is not between 1 and 1024");
        }
        let monitoring_poll_timeout = seconds("UNITY_MONITORING_POLL_TIMEOUT_SECS", 20)?;
        if !(1..=600).contains(&monitoring_poll_timeout) {
            bail!("UNITY_MONITORING_POLL_TIMEOUT_SECS '{monitoring_poll_timeout}' is not between 1 and 600");
        }
        let warning_text = var("UNITY_EXPIRY_WARNING_DAYS").unwrap_or_else(|| "30,14,7,1".into());
        let expiry_warning_days = warning_text
            .split(',')
            .map(|d| d.trim().parse::<u32>().ok().filter(|d| (1..=3650).contains(d)))
            .collect::<Option<Vec<u32>>>()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                anyhow!("UNITY_EXPIRY_WARNING_DAYS '{warning_text}' is not a comma-separated list of days (1 to 3650)")
            })?;
        Ok(Settings {
            database,
            database_display,
            nats_url,
            bind,
            master_key_file,
            admin_password: var("UNITY_ADMIN_PASSWORD"),
            nats_stream,
            nats_subject_prefix,
            log_format,
            seal_interval: std::time::Duration::from_secs(seal_interval),
            session_lifetime: chrono::Duration::seconds(session_lifetime as i64),
            ssh_concurrency: ssh_concurrency as usize,
            ssh_connect_timeout: std::time::Duration::from_secs(ssh_connect_timeout),
            ssh_wait: std::time::Duration::from_secs(ssh_wait),
            key_check_interval: std::time::Duration::from_secs(key_check_interval),
            unused_keys_report_interval: std::time::Duration::from_secs(unused_keys_report_interval),
            unused_keys_days: unused_keys_days as u32,
            certificate_check_interval: std::time::Duration::from_secs(certificate_check_interval),
            expiry_warning_days,
            acme_wait: std::time::Duration::from_secs(acme_wait),
            ws_init_timeout: std::time::Duration::from_secs(ws_init_timeout),
            acme_order_timeout: std::time::Duration::from_secs(acme_order_timeout),
            append_group_wait: std::time::Duration::from_micros(append_group_wait),
            retention,
            retention_interval: std::time::Duration::from_secs(retention_interval),
            monitoring_concurrency: monitoring_concurrency as usize,
            monitoring_poll_timeout: std::time::Duration::from_secs(monitoring_poll_timeout),
        })
    }
}

fn default_master_key_file() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("unity/master.key")
}

/// Parses a PostgreSQL URL, refusing anything else with a message that never repeats a password.
pub fn parse_database_url(raw: &str) -> Result<(PgConnectOptions, String)> {
    let url = url::Url::parse(raw).map_err(|e| anyhow!("DATABASE_URL is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("DATABASE_URL must start with postgres:// (found '{}://')", url.scheme());
    }
    let mut display = url.clone();
    if display.password().is_some() {
        let _ = display.set_password(Some("***"));
    }
    let options = PgConnectOptions::from_str(raw).map_err(|e| anyhow!("DATABASE_URL {display} is malformed ({e})"))?;
    Ok((options, display.to_string()))
}

pub fn parse_nats_url(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw).map_err(|e| anyhow!("NATS_URL '{raw}' is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "nats" | "tls" | "ws" | "wss") || url.host_str().is_none() {
        bail!("NATS_URL '{raw}' must look like nats://host:4222");
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Settings> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_local_and_loopback() {
        let s = with(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!((s.nats_stream.as_str(), s.nats_subject_prefix.as_str()), ("UNITY_EVENTS", "unity.events"));
        assert!(s.nats_url.is_none());
    }

    #[test]
    fn a_toml_file_fills_in_what_the_environment_leaves_unset() {
        let dir = std::env::temp_dir().join(format!("unity-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unity.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:9090\"\nseal_interval_secs = 3\nnats_stream = \"FROM_FILE\"\n")
            .unwrap();
        let file = read_config_file(&path).unwrap();
        let env = [("UNITY_NATS_STREAM", "FROM_ENV")];
        let s = Settings::from_lookup(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()).or_else(|| file.get(name).cloned())
        })
        .unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:9090");
        assert_eq!(s.seal_interval.as_secs(), 3);
        assert_eq!(s.nats_stream, "FROM_ENV", "the environment wins");

        std::fs::write(&path, "bnd = \"x\"\n").unwrap();
        assert!(read_config_file(&path).unwrap_err().to_string().contains("unknown setting 'bnd'"));
        std::fs::write(&path, "bind = [1]\n").unwrap();
        assert!(read_config_file(&path).unwrap_err().to_string().contains("must be a string or a number"));
        std::fs::write(&path, "bind = \n").unwrap();
        assert!(read_config_file(&path).unwrap_err().to_string().contains("not valid TOML"));
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let s = with(&[("DATABASE_URL", "postgres://u:hunter2@h/db"), ("UNITY_ADMIN_PASSWORD", "swordfish")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("h/db"), "what is not secret is still shown: {shown}");
    }

    #[test]
    fn bad_values_get_one_clear_line_without_the_password() {
        for (name, value, expect) in [
            ("DATABASE_URL", "mysql://u:hunter2@h/db", "must start with postgres://"),
            ("DATABASE_URL", "not a url", "not a valid URL"),
            ("DATABASE_URL", "postgres://u:hunter2@h:notaport/db", "not a valid URL"),
            ("NATS_URL", "http://localhost:4222", "must look like nats://"),
            ("NATS_URL", "::::", "not a valid URL"),
            ("UNITY_BIND", "everywhere", "not an address:port"),
            ("UNITY_NATS_SUBJECT_PREFIX", "unity.*", "not a NATS subject"),
            ("UNITY_LOG_FORMAT", "xml", "neither"),
        ] {
            let err = with(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(expect), "{name}={value}: {err}");
            assert!(!err.contains("hunter2") && !err.contains('\n'), "{err}");
        }
    }
}
