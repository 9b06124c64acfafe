//! Real OpenSSH servers on loopback, for the tests and `unity bench distribute`: each with its own
//! directory, port, host key, authorized_keys file and TrustedUserCAKeys file.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    host: Host,
}

/// What a session on this server sees of its host, for monitoring tests: a directory bound over
/// /proc (in the server's own mount namespace, so only its sessions see it) and a directory of
/// stand-in commands first on every session's PATH.
#[derive(Clone, Debug, Default)]
pub struct Host {
    pub proc_dir: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

impl Sshd {
    /// Makes `dir` (host key, config, empty authorized_keys) and starts sshd on a free port.
    pub fn start(dir: &Path) -> Result<Sshd, String> {
        Sshd::start_host(dir, Host::default())
    }

    /// The same, with the given view of the host (see [`Host`]).
    pub fn start_host(dir: &Path, host: Host) -> Result<Sshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!("{SSHD} is missing: install openssh-server (scripts/provision.sh does)"));
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let host_key = dir.join("hostkey");
        if !host_key.exists() {
            run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key))?;
        }
        let authorized_keys = dir.join("authorized_keys");
        if !authorized_keys.exists() {
            std::fs::write(&authorized_keys, "").map_err(|e| e.to_string())?;
        }
        let free_port = || -> Result<u16, String> {
            Ok(TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port())
        };
        let mut sshd = Sshd { dir: dir.to_path_buf(), port: free_port()?, child: None, host };
        // A port free when chosen may be taken before sshd binds it (tests run side by side).
        for _ in 0..4 {
            match sshd.launch() {
                Err(e) if e.contains("Address already in use") => sshd.port = free_port()?,
                other => return other.map(|()| sshd),
            }
        }
        sshd.launch().map(|()| sshd)
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n\
             TrustedUserCAKeys {d}/trusted_user_ca_keys\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nPidFile {d}/sshd.pid\nMaxStartups 100:30:200\nMaxSessions 50\nUsePAM no\n{path}",
            port = self.port,
            path = match &self.host.bin_dir {
                Some(bin) => format!("SetEnv PATH={}:/usr/bin:/bin:/usr/sbin:/sbin\n", bin.display()),
                None => String::new(),
            }
        )
    }

    fn launch(&mut self) -> Result<(), String> {
        let config = self.dir.join("sshd_config");
        std::fs::write(&config, self.config()).map_err(|e| e.to_string())?;
        let log = self.dir.join("sshd.log");
        let listening_before = self.listening_lines();
        let mut command = match &self.host.proc_dir {
            // sshd is exec'd by the shell, so the child is sshd itself and stop() kills it.
            Some(proc_dir) => {
                let mut command = Command::new("unshare");
                command.args(["-m", "--propagation", "private", "sh", "-c"]).arg(format!(
                    "mount --bind '{}' /proc && exec {SSHD} -D -f '{}' -E '{}'",
                    proc_dir.display(),
                    config.display(),
                    log.display()
                ));
                command
            }
            None => {
                let mut command = Command::new(SSHD);
                command.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log);
                command
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting sshd: {e}"))?;
        self.child = Some(child);
        // Ready when it says it listens and accepts connections (or dead, with its log to say
        // why). The log line matters: another test's server may have taken the port between
        // choosing it and binding it, and would accept in this one's place.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.listening_lines() > listening_before
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
                return Err(format!("sshd exited with {status}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("sshd on port {} did not accept connections within 10 s", self.port))
    }

    /// How many times the log says the server started listening on its port.
    fn listening_lines(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
        log.matches(&format!("Server listening on 127.0.0.1 port {}.", self.port)).count()
    }

    /// Stops the server (connections to its port are refused until [`Sshd::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with whatever host key `hostkey` now holds.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.launch()
    }

    /// Ends every session too, as a reboot would: stopping the listener leaves each session's own
    /// sshd process running. Only for a server with its own mount namespace (a [`Host`] with a
    /// /proc of its own), whose processes are exactly those in that namespace.
    pub fn kill_sessions(&mut self) -> Result<usize, String> {
        let pid = self.child.as_ref().map(Child::id).ok_or("not running")?;
        let namespace = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).map_err(|e| e.to_string())?;
        if namespace == std::fs::read_link("/proc/self/ns/mnt").map_err(|e| e.to_string())? {
            return Err("this server shares the test's mount namespace".into());
        }
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
            let Some(other) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if other != pid && std::fs::read_link(format!("/proc/{other}/ns/mnt")).is_ok_and(|ns| ns == namespace) {
                let _ = Command::new("kill").arg("-9").arg(other.to_string()).status();
                killed += 1;
            }
        }
        Ok(killed)
    }

    /// Replaces the host key (as a reinstall would) and restarts.
    pub fn new_host_key(&mut self) -> Result<(), String> {
        let key = self.dir.join("hostkey");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(self.dir.join("hostkey.pub"));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key))?;
        self.restart()
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }

    pub fn trusted_ca_file(&self) -> PathBuf {
        self.dir.join("trusted_user_ca_keys")
    }

    /// The host key's fingerprint as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self) -> Result<String, String> {
        let output = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("hostkey.pub"))
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| format!("ssh-keygen -l said: {text}"))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
