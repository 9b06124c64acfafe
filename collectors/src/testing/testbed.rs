//! Real ACME and DNS servers on loopback for the tests and `unity bench certificates`: Pebble
//! (Let's Encrypt's test directory) and knotd (an authoritative server taking RFC 2136 updates).
//! Both are Debian packages that scripts/provision.sh installs.

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const PEBBLE: &str = "/usr/bin/pebble";
pub const KNOTD: &str = "/usr/sbin/knotd";
pub const KDIG: &str = "/usr/bin/kdig";

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

/// A port free for both TCP and UDP (a DNS server takes both).
fn free_dual_port() -> Result<u16, String> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both TCP and UDP".into())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `ready` every 20 ms until it holds, the child dies (its log says why) or 15 s pass.
fn wait_ready(child: &mut Child, log: &Path, what: &str, ready: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not come up within 15 s: {}", std::fs::read_to_string(log).unwrap_or_default()))
}

#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// Where Pebble fetches HTTP-01 challenges: Unity's API port.
    pub http_port: u16,
    /// External account binding required, with this key id and base64url HMAC key.
    pub eab: Option<(String, String)>,
    /// A DNS server (host:port) Pebble resolves names and DNS-01 records with, instead of the
    /// system's resolver.
    pub dns_server: Option<String>,
}

pub struct Pebble {
    pub dir: PathBuf,
    pub directory_url: String,
    management_port: u16,
    /// The CA that signed Pebble's own TLS certificate: Unity's CA bundle for this directory.
    pub tls_ca_pem: String,
    child: Option<Child>,
}

impl Pebble {
    /// Starts Pebble in `dir` with a TLS certificate of its own (for 127.0.0.1 and localhost,
    /// signed by `tls_ca_pem`), validating for real: no ALWAYS_VALID, no sleep before
    /// validation, no nonce rejections, no reuse of earlier authorizations.
    pub fn start(dir: &Path, options: &PebbleOptions) -> Result<Pebble, String> {
        if !Path::new(PEBBLE).exists() {
            return Err(format!("{PEBBLE} is missing: install pebble (scripts/provision.sh does)"));
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let (tls_ca_pem, cert_pem, key_pem) =
            tls_certificate().map_err(|e| format!("Pebble's TLS certificate: {e}"))?;
        write(&dir.join("cert.pem"), &cert_pem)?;
        write(&dir.join("key.pem"), &key_pem)?;
        write(&dir.join("tls-ca.pem"), &tls_ca_pem)?;
        let (port, management_port, tls_port) = (free_port()?, free_port()?, free_port()?);
        let mut config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": options.http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": options.eab.is_some(),
        }});
        if let Some((kid, key)) = &options.eab {
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid.as_str(): key });
        }
        let config_path = dir.join("pebble.json");
        write(&config_path, &config.to_string())?;
        let log_path = dir.join("pebble.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut command = Command::new(PEBBLE);
        command.arg("-config").arg(&config_path);
        if let Some(server) = &options.dns_server {
            command.arg("-dnsserver").arg(server);
        }
        let mut child = command
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting pebble: {e}"))?;
        let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let ready = wait_ready(&mut child, &log_path, "pebble", listening);
        let mut pebble = Pebble {
            dir: dir.to_path_buf(),
            directory_url: format!("https://127.0.0.1:{port}/dir"),
            management_port,
            tls_ca_pem,
            child: Some(child),
        };
        if let Err(e) = ready {
            stop(&mut pebble.child);
            return Err(e);
        }
        Ok(pebble)
    }

    /// The root Pebble issues under (made afresh at every start), to verify issued chains.
    pub fn issuing_root_pem(&self) -> Result<String, String> {
        let output = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.dir.join("tls-ca.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management_port))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !output.status.success() {
            return Err(format!("fetching Pebble's root: {}", String::from_utf8_lossy(&output.stderr)));
        }
        String::from_utf8(output.stdout).map_err(|e| e.to_string())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A CA and a leaf for 127.0.0.1 and localhost signed by it (rustls refuses a CA certificate as
/// a server's own, so the one-line self-signed recipe will not do).
fn tls_certificate() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Unity test Pebble TLS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let leaf = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), leaf.pem(), key.serialize_pem()))
}

/// An authoritative knotd for one zone, taking TSIG-signed RFC 2136 updates.
pub struct Knotd {
    pub dir: PathBuf,
    pub port: u16,
    pub zone: String,
    pub key_name: String,
    /// base64, as knotd's configuration holds it.
    pub secret: String,
    child: Option<Child>,
}

impl Knotd {
    /// Starts knotd serving `zone` (with `hosts` as A records to 127.0.0.1) on a free port, with
    /// the hmac-sha256 TSIG key `key_name`/`secret` (base64) allowed to update it.
    pub fn start(dir: &Path, zone: &str, hosts: &[&str], key_name: &str, secret: &str) -> Result<Knotd, String> {
        if !Path::new(KNOTD).exists() || !Path::new(KDIG).exists() {
            return Err(format!(
                "{KNOTD} or {KDIG} is missing: install knot and knot-dnsutils (scripts/provision.sh does)"
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_dual_port()?;
        let d = dir.display();
        let config = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\nlog:\n  - target: stderr\n    any: info\n\
             database:\n    storage: {d}\nkey:\n  - id: {key_name}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             acl:\n  - id: update\n    key: {key_name}\n    action: update\n\
             template:\n  - id: default\n    storage: {d}\n    zonefile-sync: -1\n\
             zone:\n  - domain: {zone}\n    file: {zone}.zone\n    acl: update\n"
        );
        write(&dir.join("knot.conf"), &config)?;
        let mut records =
            format!("$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n");
        for host in hosts {
            records.push_str(&format!("{host} A 127.0.0.1\n"));
        }
        write(&dir.join(format!("{zone}.zone")), &records)?;
        let log_path = dir.join("knotd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(KNOTD)
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting knotd: {e}"))?;
        let soa = || kdig(port, "SOA", zone).is_ok_and(|answer| answer.contains("hostmaster"));
        let ready = wait_ready(&mut child, &log_path, "knotd", soa);
        let mut knotd = Knotd {
            dir: dir.to_path_buf(),
            port,
            zone: zone.to_owned(),
            key_name: key_name.to_owned(),
            secret: secret.to_owned(),
            child: Some(child),
        };
        if let Err(e) = ready {
            stop(&mut knotd.child);
            return Err(e);
        }
        Ok(knotd)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What knotd answers for `name` (`+short`: one record per line).
    pub fn query(&self, record_type: &str, name: &str) -> Result<String, String> {
        kdig(self.port, record_type, name)
    }
}

fn kdig(port: u16, record_type: &str, name: &str) -> Result<String, String> {
    let output = Command::new(KDIG)
        .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+time=1", "+retry=0", record_type, name])
        .output()
        .map_err(|e| format!("kdig: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Drop for Knotd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
