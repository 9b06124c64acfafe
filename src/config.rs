//! Typed settings, read from the environment once at start-up. Everything else receives what it
//! needs from here; nothing below `main` reads the environment.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use anyhow::{anyhow, bail, Result};
use sqlx::postgres::PgConnectOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug)]
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
}

impl Settings {
    /// Reads the settings from environment variables, with the defaults of the README.
    pub fn from_env() -> Result<Settings> {
        Settings::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
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
        let seal_interval = match var("UNITY_SEAL_INTERVAL_SECS") {
            None => 10,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("UNITY_SEAL_INTERVAL_SECS '{s}' is not a positive number"))?,
        };
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
