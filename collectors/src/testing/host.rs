//! A monitored host on loopback: a real sshd whose sessions see a /proc made of the given files
//! and stand-in `df`, `smartctl`, `mdadm`, `zpool` and `zfs` commands that print given outputs
//! (../shared/ENVIRONMENT.md, "A test host with its own /proc and tools"). Unity logs in with
//! its own key, as root, and runs exactly what it runs on a real server.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use super::sshd::{Host, Sshd};
use crate::servers::ssh::{SshAuth, SshTarget};

/// What the host shows. `proc` maps paths under /proc (`stat`, `net/dev`,
/// `sys/kernel/random/boot_id`) to their contents; each command maps the arguments it is called
/// with (a shell `case` pattern, `*` for any) to what it prints and its exit status.
#[derive(Clone, Debug, Default)]
pub struct HostView {
    pub proc: BTreeMap<String, String>,
    pub commands: BTreeMap<String, Vec<(String, String, i32)>>,
    /// Commands given as a whole `sh` script instead (one that hangs, say).
    pub scripts: BTreeMap<String, String>,
}

impl HostView {
    pub fn proc_file(mut self, path: &str, text: impl Into<String>) -> HostView {
        self.proc.insert(path.to_string(), text.into());
        self
    }

    /// `command` called with arguments matching `pattern` prints `text` and exits with `status`.
    pub fn command(mut self, command: &str, pattern: &str, text: impl Into<String>, status: i32) -> HostView {
        self.scripts.remove(command);
        let cases = self.commands.entry(command.to_string()).or_default();
        let case = (pattern.to_string(), text.into(), status);
        match cases.iter_mut().find(|(p, _, _)| p == pattern) {
            Some(existing) => *existing = case,
            None => cases.push(case),
        }
        self
    }

    /// `command` is this `sh` script.
    pub fn script(mut self, command: &str, body: &str) -> HostView {
        self.commands.remove(command);
        self.scripts.insert(command.to_string(), format!("#!/bin/sh\n{body}\n"));
        self
    }
}

pub struct MonitoredHost {
    pub sshd: Sshd,
    pub key_file: PathBuf,
}

impl MonitoredHost {
    /// Writes the view under `dir` and starts the server.
    pub fn start(dir: &Path, view: &HostView) -> Result<MonitoredHost, String> {
        let proc_dir = dir.join("proc");
        let bin_dir = dir.join("bin");
        write_view(&proc_dir, &bin_dir, view)?;
        let key_file = dir.join("unity_key");
        if !key_file.exists() {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "unity-test", "-f"])
                .arg(&key_file)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("ssh-keygen failed".into());
            }
        }
        let public = std::fs::read_to_string(key_file.with_extension("pub")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("sshd")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("sshd").join("authorized_keys"), public).map_err(|e| e.to_string())?;
        let sshd = Sshd::start_host(&dir.join("sshd"), Host { proc_dir: Some(proc_dir), bin_dir: Some(bin_dir) })?;
        Ok(MonitoredHost { sshd, key_file })
    }

    /// Changes what the host shows from now on (the running server reads the files afresh).
    pub fn show(&self, view: &HostView) -> Result<(), String> {
        let dir = self.sshd.dir.parent().ok_or("no parent")?;
        write_view(&dir.join("proc"), &dir.join("bin"), view)
    }

    /// How Unity reaches it: root, with the generated key, host key trusted on first use.
    pub fn target(&self) -> Result<SshTarget, String> {
        let key = russh::keys::load_secret_key(&self.key_file, None).map_err(|e| e.to_string())?;
        Ok(SshTarget {
            address: "127.0.0.1".into(),
            port: self.sshd.port,
            username: "root".into(),
            auth: SshAuth::Key(Box::new(key)),
            host_key: None,
        })
    }
}

fn write_view(proc_dir: &Path, bin_dir: &Path, view: &HostView) -> Result<(), String> {
    let write = |path: &Path, text: &str| -> Result<(), String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (path, text) in &view.proc {
        write(&proc_dir.join(path), text)?;
    }
    std::fs::create_dir_all(bin_dir).map_err(|e| e.to_string())?;
    for (command, cases) in &view.commands {
        let mut script = String::from("#!/bin/sh\ncase \"$*\" in\n");
        for (n, (pattern, text, status)) in cases.iter().enumerate() {
            let output = bin_dir.join(format!(".{command}.{n}"));
            write(&output, text)?;
            // Spaces in a pattern are literal; `*` stays a glob.
            let pattern = pattern.replace(' ', "\\ ");
            script.push_str(&format!("  {pattern}) cat '{}'; exit {status};;\n", output.display()));
        }
        script.push_str("esac\necho \"$0: unexpected arguments: $*\" >&2\nexit 1\n");
        executable(&bin_dir.join(command), &script)?;
    }
    for (command, script) in &view.scripts {
        executable(&bin_dir.join(command), script)?;
    }
    Ok(())
}

fn executable(path: &Path, script: &str) -> Result<(), String> {
    // Written beside and renamed: a running server never sees half a script.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, script).map_err(|e| format!("{}: {e}", partial.display()))?;
    std::fs::set_permissions(&partial, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, path).map_err(|e| e.to_string())
}
