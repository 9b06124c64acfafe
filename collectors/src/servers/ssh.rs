//! Unity's SSH client (russh): connect with a pinned or first-use host key, log in with a key
//! or password, run commands, and edit a managed block in a remote file atomically.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use russh::{
    client::{self, AuthResult},
    keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate},
    ChannelMsg, Disconnect,
};
use unity_domain::servers::managed_block::{BlockError, ManagedText};

/// Timeouts and keepalive for every session.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// TCP connect, key exchange and authentication together.
    pub connect_timeout: Duration,
    /// One command, from exec to exit status.
    pub command_timeout: Duration,
    pub keepalive_interval: Duration,
}

impl Default for SshConfig {
    fn default() -> SshConfig {
        SshConfig {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
        }
    }
}

pub enum SshAuth {
    Key(Box<PrivateKey>),
    Password(String),
}

/// Where to connect, as whom, and which host key to expect (`None`: trust on first use).
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub username: String,
    pub auth: SshAuth,
    pub host_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach {0}")]
    Connect(String),
    #[error("the server presented host key {presented}, not the pinned {expected}; refused")]
    HostKeyMismatch { expected: String, presented: String },
    #[error("the server refused to let {0} log in with the configured credential")]
    AuthenticationFailed(String),
    #[error("timed out after {0:?} ({1})")]
    Timeout(Duration, &'static str),
    #[error("`{command}` exited with status {status}: {stderr}")]
    Command { command: String, status: u32, stderr: String },
    #[error("the file changed while Unity was editing it; gave up after {0} attempts")]
    ContendedFile(usize),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("ssh: {0}")]
    Protocol(String),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> SshError {
        SshError::Protocol(e.to_string())
    }
}

struct Checker {
    expected: Option<String>,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let public = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
        };
        let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
        let accept = self.expected.as_ref().is_none_or(|expected| *expected == fingerprint);
        *self.presented.lock().expect("not poisoned") = Some(fingerprint);
        Ok(accept)
    }
}

/// An authenticated session.
pub struct SshSession {
    handle: client::Handle<Checker>,
    /// The host key's fingerprint as the server presented it.
    pub host_key: String,
    /// Connect + key exchange + authentication.
    pub connect_time: Duration,
    command_timeout: Duration,
}

#[derive(Debug)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What a connection attempt learned about the host key, even when it failed: the caller
/// records a first-use pin or a mismatch from it.
pub struct Attempt {
    pub presented_host_key: Option<String>,
    pub result: Result<SshSession, SshError>,
}

pub async fn connect(target: &SshTarget, config: &SshConfig) -> Attempt {
    let presented = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let result = tokio::time::timeout(config.connect_timeout, connect_inner(target, config, presented.clone())).await;
    let presented_host_key = presented.lock().expect("not poisoned").clone();
    let result = match result {
        Err(_) => Err(SshError::Timeout(config.connect_timeout, "connecting")),
        Ok(Err(e)) => Err(match (&target.host_key, &presented_host_key) {
            (Some(expected), Some(presented)) if expected != presented => {
                SshError::HostKeyMismatch { expected: expected.clone(), presented: presented.clone() }
            }
            _ => e,
        }),
        Ok(Ok(handle)) => Ok(SshSession {
            handle,
            host_key: presented_host_key.clone().unwrap_or_default(),
            connect_time: started.elapsed(),
            command_timeout: config.command_timeout,
        }),
    };
    Attempt { presented_host_key, result }
}

async fn connect_inner(
    target: &SshTarget,
    config: &SshConfig,
    presented: Arc<Mutex<Option<String>>>,
) -> Result<client::Handle<Checker>, SshError> {
    let russh_config = Arc::new(client::Config {
        inactivity_timeout: Some(config.command_timeout + config.keepalive_interval),
        keepalive_interval: Some(config.keepalive_interval),
        ..Default::default()
    });
    let checker = Checker { expected: target.host_key.clone(), presented };
    let address = (target.address.trim_start_matches('[').trim_end_matches(']'), target.port);
    let mut handle = client::connect(russh_config, address, checker).await.map_err(|e| match e {
        russh::Error::IO(io) => SshError::Connect(format!("{}:{}: {io}", target.address, target.port)),
        e => SshError::from(e),
    })?;
    let result = match &target.auth {
        SshAuth::Key(key) => {
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new((**key).clone()), hash);
            handle.authenticate_publickey(&target.username, key).await?
        }
        SshAuth::Password(password) => handle.authenticate_password(&target.username, password).await?,
    };
    match result {
        AuthResult::Success => Ok(handle),
        AuthResult::Failure { .. } => Err(SshError::AuthenticationFailed(target.username.clone())),
    }
}

impl SshSession {
    /// Runs `command`, feeding it `stdin`, and collects its output.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        tokio::time::timeout(self.command_timeout, self.exec_inner(command, stdin))
            .await
            .map_err(|_| SshError::Timeout(self.command_timeout, "running a command"))?
    }

    async fn exec_inner(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let mut channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        if let Some(input) = stdin {
            channel.data(input).await?;
        }
        channel.eof().await?;
        let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        let status = status.ok_or_else(|| SshError::Protocol("the command ended without an exit status".into()))?;
        Ok(Output { status, stdout, stderr })
    }

    /// Runs `command` and returns its stdout, or an error carrying its stderr.
    pub async fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<String, SshError> {
        let output = self.exec(command, stdin).await?;
        if output.status != 0 {
            return Err(SshError::Command {
                command: command.lines().next().unwrap_or_default().chars().take(80).collect(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().chars().take(500).collect(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// A string as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A file as read from the server: its text, and its SHA-256 (`None` when it does not exist),
/// which the write compares against to notice a concurrent edit.
pub struct RemoteFile {
    pub content: String,
    pub sha256: Option<String>,
}

const STATUS_CHANGED: u32 = 75;

/// Never write through a symbolic link: a user who points `~/.ssh` at `/root/.ssh` must not get
/// root's authorized_keys edited instead of their own.
const REFUSE_LINKS: &str =
    "if [ -L \"$f\" ] || [ -L \"$d\" ]; then echo \"refusing to write through a symbolic link ($f)\" >&2; exit 1; fi\n";

pub async fn read_file(session: &SshSession, path: &str) -> Result<RemoteFile, SshError> {
    let script = format!(
        "f={}; if [ -e \"$f\" ]; then printf 'present\\n'; cat -- \"$f\"; else printf 'absent\\n'; fi",
        shell_quote(path)
    );
    let out = session.run(&script, None).await?;
    match out.split_once('\n') {
        Some(("present", content)) => {
            Ok(RemoteFile { sha256: Some(sha256_hex(content.as_bytes())), content: content.to_owned() })
        }
        Some(("absent", _)) => Ok(RemoteFile { content: String::new(), sha256: None }),
        _ => Err(SshError::Protocol(format!("unexpected reply reading {path}"))),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Replaces the file with `content` if it still has the SHA-256 it was read with: written to a
/// temporary file beside it, given the old file's owner and mode (or 0600 and `owner` for a new
/// file), then renamed over it. Returns `false` if the file changed in between.
pub async fn write_file(
    session: &SshSession,
    path: &str,
    content: &str,
    read_sha256: Option<&str>,
    new_mode: &str,
    owner: Option<&str>,
    dir_owner: Option<&str>,
) -> Result<bool, SshError> {
    let expected = read_sha256.unwrap_or("absent");
    let chown_new = owner
        .map_or(String::new(), |o| format!("[ \"$(id -un)\" = {o} ] || chown {o}: \"$tmp\"; ", o = shell_quote(o)));
    let mkdir_owner = dir_owner
        .map_or(String::new(), |o| format!("[ \"$(id -un)\" = {o} ] || chown {o}: \"$d\"; ", o = shell_quote(o)));
    // A directory made for a user's own keys is theirs (0700); a shared one stays root's (0755).
    let dir_mode = if dir_owner.is_some() { "700" } else { "755" };
    let script = format!(
        "set -eu\n\
         f={path}; expected={expected}\n\
         if [ \"$expected\" = absent ]; then [ ! -e \"$f\" ] || exit {STATUS_CHANGED}\n\
         else [ \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" = \"$expected\" ] || exit {STATUS_CHANGED}; fi\n\
         d=$(dirname -- \"$f\")\n\
         {refuse_links}\
         if [ ! -d \"$d\" ]; then mkdir -p -m {dir_mode} -- \"$d\"; {mkdir_owner}fi\n\
         tmp=$(mktemp \"$d/.unity.XXXXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         cat > \"$tmp\"\n\
         if [ -e \"$f\" ]; then chmod --reference=\"$f\" \"$tmp\"; chown --reference=\"$f\" \"$tmp\"\n\
         else chmod {new_mode} \"$tmp\"; {chown_new}fi\n\
         mv -f -- \"$tmp\" \"$f\"\n\
         trap - EXIT\n",
        path = shell_quote(path),
        expected = shell_quote(expected),
        refuse_links = REFUSE_LINKS,
    );
    let output = session.exec(&script, Some(content.as_bytes())).await?;
    match output.status {
        0 => Ok(true),
        STATUS_CHANGED => Ok(false),
        status => Err(SshError::Command {
            command: format!("write {path}"),
            status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().chars().take(500).collect(),
        }),
    }
}

/// Edits the managed block of a remote file: `edit` gets the parsed file and returns the new
/// text, or `None` for no change. Retries when someone else wrote the file in between.
pub async fn edit_managed_block(
    session: &SshSession,
    path: &str,
    new_mode: &str,
    owner: Option<&str>,
    dir_owner: Option<&str>,
    edit: impl Fn(&ManagedText) -> Option<String>,
) -> Result<bool, SshError> {
    const ATTEMPTS: usize = 3;
    for _ in 0..ATTEMPTS {
        let file = read_file(session, path).await?;
        let text = ManagedText::parse(&file.content)?;
        let Some(new_content) = edit(&text) else {
            return Ok(false);
        };
        if write_file(session, path, &new_content, file.sha256.as_deref(), new_mode, owner, dir_owner).await? {
            return Ok(true);
        }
    }
    Err(SshError::ContendedFile(ATTEMPTS))
}

/// The path of `user`'s authorized_keys, given sshd's `AuthorizedKeysFile` pattern (`%h` the
/// user's home directory, `%u` the user name, `%%` a percent sign).
pub async fn authorized_keys_path(session: &SshSession, pattern: &str, user: &str) -> Result<String, SshError> {
    let home = if pattern.contains("%h") {
        let line = session.run(&format!("getent passwd {}", shell_quote(user)), None).await.map_err(|e| match e {
            SshError::Command { status: 2, .. } => {
                SshError::Protocol(format!("there is no user '{user}' on the server"))
            }
            e => e,
        })?;
        line.trim_end()
            .split(':')
            .nth(5)
            .filter(|h| h.starts_with('/'))
            .map(str::to_owned)
            .ok_or_else(|| SshError::Protocol(format!("cannot find the home directory of '{user}'")))?
    } else {
        String::new()
    };
    Ok(pattern
        .replace("%%", "\u{0}")
        .replace("%h", home.trim_end_matches('/'))
        .replace("%u", user)
        .replace('\u{0}', "%"))
}

/// `uname`, hostname and os-release in one round trip.
pub async fn system_info(session: &SshSession) -> Result<(String, String, String), SshError> {
    let out = session
        .run("uname -r; hostname; (. /etc/os-release 2>/dev/null && echo \"${PRETTY_NAME:-$NAME}\") || uname -s", None)
        .await?;
    let mut lines = out.lines();
    let kernel = lines.next().unwrap_or_default().trim().to_owned();
    let hostname = lines.next().unwrap_or_default().trim().to_owned();
    let os = lines.next().unwrap_or_default().trim().to_owned();
    Ok((os, kernel, hostname))
}

/// One file of a set written together by [`install_files`].
pub struct FileToInstall<'a> {
    pub path: &'a str,
    pub content: &'a [u8],
    pub mode: &'a str,
    pub owner: Option<&'a str>,
}

/// Writes files through temporary files beside them and renames, with their modes and, if
/// given, owners (`user` or `user:group`); directories must exist. Several files are one
/// change: each is uploaded first, and only when all are there does one command rename them all
/// into place. A failed upload leaves every target as it was (a key beside the certificate it does
/// not belong to would break the service that reads them).
pub async fn install_files(session: &SshSession, files: &[FileToInstall<'_>]) -> Result<(), SshError> {
    let mut staged: Vec<(String, &str)> = Vec::with_capacity(files.len());
    for file in files {
        match stage(session, file).await {
            Ok(tmp) => staged.push((tmp, file.path)),
            Err(e) => {
                let temps: Vec<String> = staged.iter().map(|(tmp, _)| shell_quote(tmp)).collect();
                if !temps.is_empty() {
                    let _ = session.run(&format!("rm -f -- {}", temps.join(" ")), None).await;
                }
                return Err(e);
            }
        }
    }
    let mut script = String::from("set -eu\n");
    for (tmp, path) in &staged {
        script.push_str(&format!("mv -f -- {} {}\n", shell_quote(tmp), shell_quote(path)));
    }
    session.run(&script, None).await.map(|_| ())
}

/// Uploads one file to a temporary file beside its target; returns the temporary's path.
async fn stage(session: &SshSession, file: &FileToInstall<'_>) -> Result<String, SshError> {
    let chown = file.owner.map_or(String::new(), |o| format!("chown {} \"$tmp\"\n", shell_quote(o)));
    let script = format!(
        "set -eu\n\
         f={path}; d=$(dirname -- \"$f\")\n\
         {refuse_links}\
         tmp=$(mktemp \"$d/.unity.XXXXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         cat > \"$tmp\"\n\
         chmod {mode} \"$tmp\"\n\
         {chown}\
         trap - EXIT\n\
         printf '%s' \"$tmp\"\n",
        path = shell_quote(file.path),
        mode = shell_quote(file.mode),
        refuse_links = REFUSE_LINKS,
    );
    let tmp = session.run(&script, Some(file.content)).await?;
    if tmp.is_empty() || tmp.contains('\n') {
        return Err(SshError::Command {
            command: "mktemp".into(),
            status: 0,
            stderr: format!("unexpected temporary file name {tmp:?}"),
        });
    }
    Ok(tmp)
}
