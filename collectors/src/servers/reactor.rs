//! The SSH reactor: carries out the requests recorded on `server` streams (connection tests,
//! key installs and removals, drift checks) and records each outcome beside its request.
//!
//! It reads the log in store order from its own checkpoint, like a projection, and holds an
//! advisory lock so that only one Unity process acts on servers at a time. A request is acted on
//! only while the server's state says it is pending, so a restart after a crash (outcome
//! recorded, checkpoint not yet moved) skips it instead of doing it twice; every action is
//! idempotent besides, so a crash before the outcome is recorded repeats it harmlessly.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;
use unity_commands::{
    certificates::{X509CommandError, X509Commands},
    credentials::{CredentialCommands, CredentialsError},
    lease::{checkpoint, Lease},
    servers::ServerCommands,
    store::{Cursor, StoreError},
};
use unity_domain::{
    credentials::CredentialKind,
    servers::{
        drift, FileDrift, ManagedFile, Outcome, ServerAuth, ServerCommand, ServerData, ServerEvent, ServerRequest,
        ServerState, SystemInfo,
    },
    Actor, DomainEvent, EventMetadata, StreamId,
};
use uuid::Uuid;

use crate::{
    reactor::{run_batches, Reactor},
    servers::ssh::{self, SshAuth, SshConfig, SshError, SshSession, SshTarget},
};

pub const CHECKPOINT: &str = unity_commands::lease::SSH_REACTOR;
const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this process does not hold the SSH reactor's lease")]
    NotLeader,
    #[error("{0} outcome(s) of this batch could not be recorded; it will run again")]
    Unrecorded(usize),
}

impl From<sqlx::Error> for ReactorError {
    fn from(e: sqlx::Error) -> ReactorError {
        ReactorError::Store(e.into())
    }
}

/// Records key use from Unity's own sessions: the first use after start-up at once, later ones
/// at most once an hour per key, so `lastUsedAt` is fresh without an event per command.
#[derive(Clone, Default)]
pub struct KeyUsage {
    inner: Arc<Mutex<HashMap<Uuid, Usage>>>,
}

/// One request to carry out: its id, what, and the metadata its outcome is recorded with.
type Job = (Uuid, ServerRequest, EventMetadata);

/// When a key's use was last recorded, and the sessions since.
type Usage = (Option<Instant>, u64);

const USAGE_FLUSH: Duration = Duration::from_secs(3600);

impl KeyUsage {
    /// Counts a session; returns the sessions to record if it is time to record them.
    fn used(&self, key_id: Uuid) -> Option<u64> {
        let mut map = self.inner.lock().expect("not poisoned");
        let (last, sessions) = map.entry(key_id).or_insert((None, 0));
        *sessions += 1;
        if last.is_none_or(|t| t.elapsed() >= USAGE_FLUSH) {
            *last = Some(Instant::now());
            Some(std::mem::take(sessions))
        } else {
            None
        }
    }
}

pub struct SshReactor {
    commands: CredentialCommands,
    servers: ServerCommands,
    x509: X509Commands,
    config: SshConfig,
    concurrency: usize,
    usage: KeyUsage,
    lease: Lease,
}

impl SshReactor {
    pub fn new(commands: CredentialCommands, x509: X509Commands, config: SshConfig, concurrency: usize) -> SshReactor {
        SshReactor {
            servers: ServerCommands::new(commands.clone()),
            commands,
            x509,
            config,
            concurrency: concurrency.max(1),
            usage: KeyUsage::default(),
            lease: Lease::new(CHECKPOINT),
        }
    }

    fn metadata() -> EventMetadata {
        unity_commands::metadata(Actor::system("ssh-reactor"), "reactor:ssh")
    }

    pub async fn checkpoint(&self) -> Result<Cursor, ReactorError> {
        Ok(checkpoint(self.commands.store().pool(), CHECKPOINT).await?)
    }

    /// Handles the requests in the next batch of the log. Returns how many events it passed
    /// (0: nothing new, or another process holds the lease).
    pub async fn run_once(&mut self) -> Result<usize, ReactorError> {
        let pool = self.commands.store().pool().clone();
        let Some((through, count, events)) = self.lease.next_batch(&pool, &[ServerEvent::STREAM_TYPE], BATCH).await?
        else {
            return Ok(0);
        };
        let mut jobs = Vec::new();
        for event in &events {
            let Ok(decoded) = event.decode::<ServerEvent>() else {
                tracing::warn!(event_id = %event.event_id, "Skipping a server event this build cannot read.");
                continue;
            };
            if let Some((request_id, request)) = decoded.opened_request() {
                let Ok(stream) = event.stream_id.parse::<StreamId>() else { continue };
                let server_id = stream.id();
                let mut metadata = Self::metadata();
                metadata.causation_id = Some(event.event_id);
                if let Some(correlation) = event.metadata.get("correlation_id").and_then(|v| v.as_str()) {
                    metadata.correlation_id = correlation.parse().unwrap_or(metadata.correlation_id);
                }
                jobs.push((server_id, request_id, request, metadata));
            }
        }
        // One server's requests run in log order (an install then a removal of the same key must
        // not swap); different servers run `concurrency` at a time.
        let mut by_server: Vec<(Uuid, Vec<Job>)> = Vec::new();
        for (server_id, request_id, request, metadata) in jobs {
            match by_server.iter_mut().find(|(id, _)| *id == server_id) {
                Some((_, queue)) => queue.push((request_id, request, metadata)),
                None => by_server.push((server_id, vec![(request_id, request, metadata)])),
            }
        }
        let this = &*self;
        let unrecorded = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(by_server)
            .for_each_concurrent(this.concurrency, |(server_id, queue)| {
                let unrecorded = &unrecorded;
                async move {
                    for (request_id, request, metadata) in queue {
                        if let Err(e) = this.handle(server_id, request_id, request, &metadata).await {
                            tracing::warn!(%server_id, %request_id, error = %e, "Could not record an SSH request's outcome.");
                            unrecorded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
            .await;
        // An outcome that could not be recorded leaves its request pending: keep the checkpoint
        // where it is, so the batch runs again (requests already done are skipped then).
        let unrecorded = unrecorded.into_inner();
        if unrecorded > 0 {
            return Err(ReactorError::Unrecorded(unrecorded));
        }
        self.commit(through).await?;
        Ok(count as usize)
    }

    async fn commit(&mut self, cursor: Cursor) -> Result<(), ReactorError> {
        if !self.lease.commit(cursor).await? {
            return Err(ReactorError::NotLeader);
        }
        Ok(())
    }

    #[tracing::instrument(name = "reactor_step", skip_all, fields(stream = %format_args!("server-{server_id}"), request = %request_id))]
    async fn handle(
        &self,
        server_id: Uuid,
        request_id: Uuid,
        request: ServerRequest,
        metadata: &EventMetadata,
    ) -> Result<(), CredentialsError> {
        let ServerState::Active(server) = self.servers.server(server_id).await? else {
            return Ok(());
        };
        if !server.pending.contains_key(&request_id) {
            return Ok(()); // done before a restart
        }
        let outcome = match self.perform(&server, &request, metadata).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        if let Outcome::Failed(error) = &outcome {
            tracing::info!(%server_id, request = request.kind(), %error, "SSH request failed.");
        }
        self.servers.complete(server_id, request_id, outcome, metadata).await?;
        Ok(())
    }

    async fn login(&self, server: &ServerData) -> Result<SshAuth, CredentialsError> {
        Ok(match server.spec.authentication {
            ServerAuth::SshKey { key_id } => SshAuth::Key(Box::new(self.commands.private_key_for_login(key_id).await?)),
            ServerAuth::Credential { credential_id } => {
                match self.commands.credential_for_login(credential_id).await? {
                    (CredentialKind::PrivateKey, pem) => {
                        SshAuth::Key(Box::new(unity_commands::credentials::ssh_keys::parse_private(&pem, None)?))
                    }
                    (_, password) => SshAuth::Password(password),
                }
            }
        })
    }

    /// Opens a session to the server, recording a first-use pin or a host key mismatch.
    pub async fn open(&self, server: &ServerData, metadata: &EventMetadata) -> Result<SshSession, RequestError> {
        let target = SshTarget {
            address: server.spec.address.clone(),
            port: server.spec.port,
            username: server.spec.username.clone(),
            auth: self.login(server).await?,
            host_key: server.host_key.clone(),
        };
        let attempt = ssh::connect(&target, &self.config).await;
        if let Some(presented) = attempt.presented_host_key {
            self.servers
                .server_command(server.server_id, ServerCommand::ObserveHostKey { presented }, metadata)
                .await?;
        }
        let session = attempt.result?;
        if let ServerAuth::SshKey { key_id } = server.spec.authentication {
            if let Some(sessions) = self.usage.used(key_id) {
                // Bookkeeping: a failure here must not fail the operation the session is for.
                if let Err(e) = self.commands.record_key_use(key_id, Utc::now(), sessions, metadata).await {
                    tracing::warn!(%key_id, error = %e, "Could not record an SSH key's use.");
                }
            }
        }
        Ok(session)
    }

    async fn perform(
        &self,
        server: &ServerData,
        request: &ServerRequest,
        metadata: &EventMetadata,
    ) -> Result<Outcome, RequestError> {
        if let ServerRequest::DeployCertificate { deployment } = request {
            // The material first: no connection for a certificate that cannot be sent.
            let material = self.x509.deployment_material(deployment.certificate_id).await?;
            let session = self.open(server, metadata).await?;
            let outcome = deploy_on(&session, deployment, material).await;
            session.close().await;
            return Ok(outcome?);
        }
        let session = self.open(server, metadata).await?;
        let outcome = perform_on(&session, server, request).await;
        session.close().await;
        Ok(outcome?)
    }

    /// Runs until `shutdown` turns true, woken by appends and polling every `poll` besides.
    pub async fn run(self, shutdown: watch::Receiver<bool>, poll: Duration) {
        run_batches(self, shutdown, poll).await
    }
}

impl Reactor for SshReactor {
    const NAME: &'static str = "SSH reactor";
    type Error = ReactorError;

    fn store(&self) -> &unity_commands::store::EventStore {
        self.commands.store()
    }

    async fn run_once(&mut self) -> Result<usize, ReactorError> {
        SshReactor::run_once(self).await
    }

    fn lease(&mut self) -> &mut Lease {
        &mut self.lease
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    X509(#[from] X509CommandError),
}

/// Writes a certificate (0644), its chain (0644) and key (the deployment's mode, else 0600) as
/// one change, then runs the reload command and reports its exit status.
async fn deploy_on(
    session: &SshSession,
    deployment: &unity_domain::servers::CertificateDeployment,
    (certificate, chain, key): (String, String, Option<zeroize::Zeroizing<String>>),
) -> Result<Outcome, SshError> {
    let owner = deployment.owner.as_deref();
    let full;
    let mut files = Vec::with_capacity(3);
    if let Some(key_path) = &deployment.key_path {
        let Some(key) = &key else {
            return Ok(Outcome::Failed("Unity does not hold this certificate's private key; leave keyPath out".into()));
        };
        let mode = deployment.mode.as_deref().unwrap_or("0600");
        files.push(ssh::FileToInstall { path: key_path, content: key.as_bytes(), mode, owner });
    }
    match &deployment.chain_path {
        Some(chain_path) => {
            files.push(ssh::FileToInstall { path: chain_path, content: chain.as_bytes(), mode: "0644", owner });
            let cert = certificate.as_bytes();
            files.push(ssh::FileToInstall { path: &deployment.cert_path, content: cert, mode: "0644", owner });
        }
        // Without a separate chain file, the certificate file carries the full chain.
        None => {
            full = format!("{certificate}{chain}");
            let cert = full.as_bytes();
            files.push(ssh::FileToInstall { path: &deployment.cert_path, content: cert, mode: "0644", owner });
        }
    }
    // All uploaded first, then renamed together: never a new key beside an old certificate.
    ssh::install_files(session, &files).await?;
    let reload_exit_status = match &deployment.reload_command {
        Some(command) => Some(session.exec(&format!("sh -c {}", ssh::shell_quote(command)), None).await?.status),
        None => None,
    };
    Ok(Outcome::Deployed { reload_exit_status })
}

/// Where a managed file is, the mode and owner a new one gets, and who owns a directory made for it.
struct Located {
    path: String,
    mode: &'static str,
    owner: Option<String>,
    dir_owner: Option<String>,
}

async fn locate(session: &SshSession, server: &ServerData, file: &ManagedFile) -> Result<Located, SshError> {
    Ok(match file {
        ManagedFile::AuthorizedKeys { user } => {
            let pattern = &server.spec.authorized_keys_file;
            Located {
                path: ssh::authorized_keys_path(session, pattern, user).await?,
                mode: "600",
                owner: Some(user.clone()),
                // Only a directory in the user's home is the user's; a shared one (say
                // /etc/ssh/keys) stays root's.
                dir_owner: pattern.starts_with("%h/").then(|| user.clone()),
            }
        }
        ManagedFile::TrustedUserCaKeys { path } => {
            Located { path: path.clone(), mode: "644", owner: None, dir_owner: None }
        }
    })
}

async fn perform_on(session: &SshSession, server: &ServerData, request: &ServerRequest) -> Result<Outcome, SshError> {
    match request {
        ServerRequest::TestConnection => {
            let started = Instant::now();
            session.run("true", None).await?;
            let rtt_micros = started.elapsed().as_micros() as u64;
            let (os, kernel, hostname) = ssh::system_info(session).await?;
            Ok(Outcome::Tested(SystemInfo { os, kernel, hostname, rtt_micros }))
        }
        ServerRequest::Install { file, entry, .. } => {
            let at = locate(session, server, file).await?;
            ssh::edit_managed_block(session, &at.path, at.mode, at.owner.as_deref(), at.dir_owner.as_deref(), |text| {
                text.with_key(&entry.public_key)
            })
            .await?;
            Ok(Outcome::Done)
        }
        ServerRequest::Remove { file, entry } => {
            let at = locate(session, server, file).await?;
            ssh::edit_managed_block(session, &at.path, at.mode, at.owner.as_deref(), at.dir_owner.as_deref(), |text| {
                text.without_key(&entry.public_key)
            })
            .await?;
            Ok(Outcome::Done)
        }
        ServerRequest::DeployCertificate { .. } => unreachable!("handled by deploy_on"),
        ServerRequest::Check => {
            let mut files = server.managed_files();
            let login = ManagedFile::AuthorizedKeys { user: server.spec.username.clone() };
            if !files.contains(&login) {
                files.push(login);
            }
            let mut drifts: Vec<FileDrift> = Vec::new();
            for file in files {
                let path = locate(session, server, &file).await?.path;
                let content = ssh::read_file(session, &path).await?.content;
                let text = unity_domain::servers::managed_block::ManagedText::parse(&content)?;
                let installed: Vec<_> = server.installed_in(&file).collect();
                drifts.extend(drift(&file, &installed, &text.block));
            }
            // Deployed certificates: the first certificate in each file must be the one written.
            let mut certificate_drift = Vec::new();
            for (path, deployment) in &server.certificates {
                let content = ssh::read_file(session, path).await?;
                let found = unity_commands::certificates::parse_pem_chain(&content.content)
                    .ok()
                    .and_then(|ders| ders.first().map(|der| ssh::sha256_hex(der)));
                if found.as_deref() != Some(deployment.fingerprint.as_str()) {
                    certificate_drift.push(unity_domain::servers::CertificateDrift {
                        cert_path: path.clone(),
                        certificate_id: deployment.certificate_id,
                        expected_fingerprint: deployment.fingerprint.clone(),
                        found_fingerprint: found,
                    });
                }
            }
            Ok(Outcome::Checked(drifts, certificate_drift))
        }
    }
}
