//! Credential and server commands: SSH keys, SSH CAs, server credentials, the server inventory,
//! and the requests that the SSH reactor (unity-collectors) carries out on servers.
//!
//! Private key material is sealed in the vault before any event mentions it and leaves the
//! vault only through [`CredentialCommands::reveal_private_key`] (recorded) or to log in
//! (the collectors decrypt it for their own use).

use chrono::{DateTime, Utc};
use russh::keys::PrivateKey;
use unity_domain::{
    credentials::{
        CertificateRequest, CredentialError, CredentialKind, KeyAlgorithm, KeyOrigin, ServerCredential,
        ServerCredentialCommand, ServerCredentialEvent, ServerCredentialState, SshCa, SshCaCommand, SshCaEvent,
        SshCaState, SshKey, SshKeyCommand, SshKeyEvent, SshKeyState,
    },
    servers::{Outcome, Server, ServerCommand, ServerError, ServerEvent, ServerRequest, ServerSpec, ServerState},
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;

use crate::{
    handler::{execute, load, stream_of, CommandError, MAX_ATTEMPTS},
    ssh_keys::{self, KeyError},
    store::{Appended, DecodeError, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend},
    vault::{Vault, VaultError},
};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the stream kept changing underneath this command ({0})")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl<E: std::error::Error + Into<CredentialsError>> From<CommandError<E>> for CredentialsError {
    fn from(e: CommandError<E>) -> CredentialsError {
        match e {
            CommandError::Rejected(e) => e.into(),
            CommandError::Contended(stream) => CredentialsError::Contended(stream),
            CommandError::Store(e) => CredentialsError::Store(e),
            CommandError::Decode(e) => CredentialsError::Decode(e),
        }
    }
}

type Result<T> = std::result::Result<T, CredentialsError>;

/// A new SSH key or CA and where its creation landed.
pub struct Created {
    pub id: Uuid,
    pub appended: Option<Appended>,
}

pub struct SignedCertificate {
    pub serial: u64,
    /// The OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
    pub certificate: String,
    pub appended: Appended,
}

/// Where a request to a server was recorded.
#[derive(Clone, Debug)]
pub struct Requested {
    pub server_id: Uuid,
    pub request_id: Uuid,
    pub appended: Option<Appended>,
}

#[derive(Clone)]
pub struct CredentialCommands {
    store: EventStore,
    vault: Vault,
}

impl CredentialCommands {
    pub fn new(store: EventStore, vault: Vault) -> CredentialCommands {
        CredentialCommands { store, vault }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    // -- SSH keys -----------------------------------------------------------------------------

    pub async fn generate_ssh_key(
        &self,
        name: &str,
        algorithm: KeyAlgorithm,
        bits: Option<u32>,
        comment: &str,
        tags: Vec<String>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let key = tokio::task::spawn_blocking({
            let comment = comment.to_owned();
            move || ssh_keys::generate(algorithm, bits, &comment)
        })
        .await
        .map_err(|e| KeyError::Signing(e.to_string()))??;
        self.create_key(name, KeyOrigin::Generated, Some(&key), key.public_key(), comment, tags, metadata).await
    }

    /// Imports a private key (its public half is derived, and checked against `public_key` if
    /// both are given) or, for keys people hold themselves, a public key alone.
    #[allow(clippy::too_many_arguments)]
    pub async fn import_ssh_key(
        &self,
        name: &str,
        private_key: Option<&str>,
        passphrase: Option<&str>,
        public_key: Option<&str>,
        comment: Option<&str>,
        tags: Vec<String>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let public = public_key.map(ssh_keys::parse_public).transpose()?;
        match private_key {
            Some(text) => {
                let text = text.to_owned();
                let passphrase = passphrase.map(str::to_owned);
                // bcrypt-pbkdf for encrypted keys is deliberately slow: keep it off the reactor.
                let private =
                    tokio::task::spawn_blocking(move || ssh_keys::parse_private(&text, passphrase.as_deref()))
                        .await
                        .map_err(|e| KeyError::Signing(e.to_string()))??;
                if public.as_ref().is_some_and(|p| !ssh_keys::same_key(&private, p)) {
                    return Err(KeyError::PairMismatch.into());
                }
                let comment = comment.map(str::to_owned).unwrap_or_else(|| private.comment().to_string());
                let mut private = private;
                private.set_comment(comment.as_str());
                let derived = private.public_key().clone();
                self.create_key(name, KeyOrigin::Imported, Some(&private), &derived, &comment, tags, metadata).await
            }
            None => {
                let mut public = public
                    .ok_or_else(|| KeyError::MalformedPublic("give a privateKey, a publicKey, or both".into()))?;
                let comment = comment.map(str::to_owned).unwrap_or_else(|| public.comment().to_string());
                public.set_comment(comment.as_str());
                self.create_key(name, KeyOrigin::Imported, None, &public, &comment, tags, metadata).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_key(
        &self,
        name: &str,
        origin: KeyOrigin,
        private: Option<&PrivateKey>,
        public: &russh::keys::PublicKey,
        comment: &str,
        tags: Vec<String>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let key = ssh_keys::public_info(public)?;
        // Check the command before sealing anything, so a refused key leaves no vault entry.
        let key_id = Uuid::now_v7();
        let mut command = SshKeyCommand::Create {
            key_id,
            name: name.to_owned(),
            origin,
            key,
            comment: comment.to_owned(),
            tags,
            private_key: None,
        };
        SshKey::decide(&command, &SshKeyState::Absent)?;
        if let (Some(private), SshKeyCommand::Create { private_key, .. }) = (private, &mut command) {
            let pem = ssh_keys::to_openssh(private)?;
            *private_key = Some(self.vault.seal(pem.as_bytes()).await?);
        }
        let (_, appended) =
            execute::<SshKey>(&self.store, &stream_of::<SshKeyEvent>(key_id), &command, metadata).await?;
        Ok(Created { id: key_id, appended })
    }

    pub async fn ssh_key(&self, key_id: Uuid) -> Result<SshKeyState> {
        Ok(load::<SshKey>(&self.store, &stream_of::<SshKeyEvent>(key_id)).await?.0)
    }

    async fn active_key(&self, key_id: Uuid) -> Result<Box<unity_domain::credentials::SshKeyData>> {
        match self.ssh_key(key_id).await? {
            SshKeyState::Active(data) => Ok(data),
            SshKeyState::Absent => Err(CredentialError::KeyNotFound.into()),
            SshKeyState::Deleted => Err(CredentialError::KeyDeleted.into()),
        }
    }

    /// The private key in OpenSSH form, recorded as a `SecretRevealed` event with the actor.
    pub async fn reveal_private_key(&self, key_id: Uuid, metadata: &EventMetadata) -> Result<String> {
        let data = self.active_key(key_id).await?;
        let secret = data.private_key.as_ref().ok_or(CredentialError::NoPrivateKey("reveal"))?;
        let plaintext = self.vault.reveal(secret, &format!("revealSshPrivateKey ssh_key-{key_id}"), metadata).await?;
        String::from_utf8(plaintext).map_err(|_| VaultError::Corrupt(secret.secret_id).into())
    }

    /// The private key for Unity's own use (logging in to a server); not a reveal.
    pub async fn private_key_for_login(&self, key_id: Uuid) -> Result<PrivateKey> {
        let data = self.active_key(key_id).await?;
        let secret = data.private_key.as_ref().ok_or(CredentialError::NoPrivateKey("log in with"))?;
        let pem = zeroize::Zeroizing::new(self.vault.decrypt(secret).await?);
        let text = std::str::from_utf8(&pem).map_err(|_| VaultError::Corrupt(secret.secret_id))?;
        Ok(ssh_keys::parse_private(text, None)?)
    }

    /// Makes the replacement of a key: a new key of the same kind, recorded as rotated from the
    /// old one, which is marked as replaced. Moving it onto servers is up to the caller
    /// ([`CredentialCommands::request`] with `replaces`).
    pub async fn start_rotation(&self, key_id: Uuid, metadata: &EventMetadata) -> Result<Created> {
        let old = self.active_key(key_id).await?;
        if let Some(existing) = old.replaced_by {
            return Err(CredentialError::AlreadyRotated(existing).into());
        }
        if old.private_key.is_none() {
            return Err(CredentialError::NoPrivateKey("rotate").into());
        }
        let comment = old.comment.clone();
        let algorithm = old.key.algorithm;
        let bits = (algorithm == KeyAlgorithm::Rsa).then_some(old.key.bits.max(2048));
        let new_key = tokio::task::spawn_blocking({
            let comment = comment.clone();
            move || ssh_keys::generate(algorithm, bits, &comment)
        })
        .await
        .map_err(|e| KeyError::Signing(e.to_string()))??;
        let tags = old.tags.clone();
        let created = self
            .create_key(
                &old.name,
                KeyOrigin::Rotated { from: key_id },
                Some(&new_key),
                new_key.public_key(),
                &comment,
                tags,
                metadata,
            )
            .await?;
        execute::<SshKey>(
            &self.store,
            &stream_of::<SshKeyEvent>(key_id),
            &SshKeyCommand::MarkRotated { replaced_by: created.id },
            metadata,
        )
        .await?;
        Ok(created)
    }

    /// Deletes the key and crypto-shreds its private half. The caller has removed it from every
    /// server first.
    pub async fn delete_ssh_key(&self, key_id: Uuid, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let state = self.ssh_key(key_id).await?;
        let secret = match &state {
            SshKeyState::Active(data) => data.private_key.as_ref().map(|s| s.secret_id),
            _ => None,
        };
        let (_, appended) =
            execute::<SshKey>(&self.store, &stream_of::<SshKeyEvent>(key_id), &SshKeyCommand::Delete, metadata).await?;
        if let Some(secret_id) = secret {
            self.vault.shred(secret_id, metadata).await?;
        }
        Ok(appended)
    }

    /// Records that Unity's own sessions used the key (see the collectors' usage tracker).
    pub async fn record_key_use(
        &self,
        key_id: Uuid,
        at: DateTime<Utc>,
        sessions: u64,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let (_, appended) = execute::<SshKey>(
            &self.store,
            &stream_of::<SshKeyEvent>(key_id),
            &SshKeyCommand::RecordUse { at, sessions },
            metadata,
        )
        .await?;
        Ok(appended)
    }

    /// Records the scheduled report of unused keys.
    pub async fn report_unused_keys(
        &self,
        unused_days: u32,
        keys: Vec<unity_domain::credentials::UnusedKey>,
        metadata: &EventMetadata,
    ) -> Result<Appended> {
        let event = unity_domain::credentials::SshKeyReportEvent::UnusedSshKeysReported { unused_days, keys };
        Ok(self
            .store
            .append(vec![StreamAppend {
                stream_id: stream_of::<unity_domain::credentials::SshKeyReportEvent>(
                    unity_domain::credentials::SSH_KEY_REPORT_STREAM,
                ),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::from_domain(&event, metadata)],
            }])
            .await?)
    }

    // -- SSH certificate authorities ----------------------------------------------------------

    pub async fn create_ssh_ca(
        &self,
        name: &str,
        algorithm: KeyAlgorithm,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let key = tokio::task::spawn_blocking(move || ssh_keys::generate(algorithm, None, "unity ssh ca"))
            .await
            .map_err(|e| KeyError::Signing(e.to_string()))??;
        let info = ssh_keys::public_info(key.public_key())?;
        let ca_id = Uuid::now_v7();
        let placeholder = SecretRef { secret_id: Uuid::nil(), ciphertext: String::new() };
        SshCa::decide(
            &SshCaCommand::Create { ca_id, name: name.to_owned(), key: info.clone(), private_key: placeholder },
            &SshCaState::Absent,
        )?;
        let private_key = self.vault.seal(ssh_keys::to_openssh(&key)?.as_bytes()).await?;
        let (_, appended) = execute::<SshCa>(
            &self.store,
            &stream_of::<SshCaEvent>(ca_id),
            &SshCaCommand::Create { ca_id, name: name.to_owned(), key: info, private_key },
            metadata,
        )
        .await?;
        Ok(Created { id: ca_id, appended })
    }

    pub async fn ssh_ca(&self, ca_id: Uuid) -> Result<SshCaState> {
        Ok(load::<SshCa>(&self.store, &stream_of::<SshCaEvent>(ca_id)).await?.0)
    }

    /// Signs a certificate with the CA's next serial and records it; on a race with another
    /// signer the certificate is made again with the following serial.
    pub async fn sign_ssh_certificate(
        &self,
        ca_id: Uuid,
        subject: &str,
        request: CertificateRequest,
        metadata: &EventMetadata,
    ) -> Result<SignedCertificate> {
        request.check()?;
        let subject = ssh_keys::parse_public(subject)?;
        ssh_keys::public_info(&subject)?;
        let stream = stream_of::<SshCaEvent>(ca_id);
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = load::<SshCa>(&self.store, &stream).await?;
            let SshCaState::Active { private_key, .. } = &state else {
                return Err(CredentialError::CaNotFound.into());
            };
            let serial = state.next_serial();
            let command = SshCaCommand::RecordSignature {
                serial,
                request: request.clone(),
                subject_fingerprint: ssh_keys::fingerprint(&subject),
            };
            let events = SshCa::decide(&command, &state)?;
            let pem = zeroize::Zeroizing::new(self.vault.decrypt(private_key).await?);
            let ca_key = ssh_keys::parse_private(
                std::str::from_utf8(&pem).map_err(|_| VaultError::Corrupt(private_key.secret_id))?,
                None,
            )?;
            let certificate = ssh_keys::sign_certificate(&ca_key, &subject, serial, &request)?;
            let line = certificate.to_openssh().map_err(|e| KeyError::Signing(e.to_string()))?;
            let append = StreamAppend {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exactly(version),
                events: events.iter().map(|e| NewEvent::from_domain(e, metadata)).collect(),
            };
            match self.store.append(vec![append]).await {
                Ok(appended) => return Ok(SignedCertificate { serial, certificate: line, appended }),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CredentialsError::Contended(stream.to_string()))
    }

    // -- server credentials -------------------------------------------------------------------

    pub async fn create_server_credential(
        &self,
        name: &str,
        kind: CredentialKind,
        username: &str,
        secret: &str,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        check_credential_secret(kind, secret)?;
        let credential_id = Uuid::now_v7();
        let placeholder = SecretRef { secret_id: Uuid::nil(), ciphertext: String::new() };
        let mut command = ServerCredentialCommand::Create {
            credential_id,
            name: name.to_owned(),
            kind,
            username: username.to_owned(),
            secret: placeholder,
        };
        ServerCredential::decide(&command, &ServerCredentialState::Absent)?;
        if let ServerCredentialCommand::Create { secret: sealed, .. } = &mut command {
            *sealed = self.vault.seal(secret.as_bytes()).await?;
        }
        let (_, appended) = execute::<ServerCredential>(
            &self.store,
            &stream_of::<ServerCredentialEvent>(credential_id),
            &command,
            metadata,
        )
        .await?;
        Ok(Created { id: credential_id, appended })
    }

    pub async fn server_credential(&self, credential_id: Uuid) -> Result<ServerCredentialState> {
        Ok(load::<ServerCredential>(&self.store, &stream_of::<ServerCredentialEvent>(credential_id)).await?.0)
    }

    pub async fn update_server_credential(
        &self,
        credential_id: Uuid,
        name: Option<&str>,
        username: Option<&str>,
        secret: Option<&str>,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let stream = stream_of::<ServerCredentialEvent>(credential_id);
        let (state, _) = load::<ServerCredential>(&self.store, &stream).await?;
        let (kind, old_secret) = match &state {
            ServerCredentialState::Active { kind, secret, .. } => (*kind, secret.secret_id),
            ServerCredentialState::Absent => return Err(CredentialError::CredentialNotFound.into()),
            ServerCredentialState::Deleted => return Err(CredentialError::CredentialDeleted.into()),
        };
        let mut command = ServerCredentialCommand::Update {
            name: name.map(str::to_owned),
            username: username.map(str::to_owned),
            secret: None,
        };
        ServerCredential::decide(&command, &state)?;
        if let Some(secret) = secret {
            check_credential_secret(kind, secret)?;
            if let ServerCredentialCommand::Update { secret: sealed, .. } = &mut command {
                *sealed = Some(self.vault.seal(secret.as_bytes()).await?);
            }
        }
        let (_, appended) = execute::<ServerCredential>(&self.store, &stream, &command, metadata).await?;
        if secret.is_some() {
            self.vault.shred(old_secret, metadata).await?;
        }
        Ok(appended)
    }

    pub async fn delete_server_credential(
        &self,
        credential_id: Uuid,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let stream = stream_of::<ServerCredentialEvent>(credential_id);
        let (state, _) = load::<ServerCredential>(&self.store, &stream).await?;
        let (_, appended) =
            execute::<ServerCredential>(&self.store, &stream, &ServerCredentialCommand::Delete, metadata).await?;
        if let ServerCredentialState::Active { secret, .. } = state {
            self.vault.shred(secret.secret_id, metadata).await?;
        }
        Ok(appended)
    }

    /// The credential's secret, shown to a person: recorded as a `SecretRevealed` event.
    pub async fn reveal_server_credential(&self, credential_id: Uuid, metadata: &EventMetadata) -> Result<String> {
        match self.server_credential(credential_id).await? {
            ServerCredentialState::Active { secret, .. } => {
                let plaintext = self
                    .vault
                    .reveal(&secret, &format!("revealServerCredential server_credential-{credential_id}"), metadata)
                    .await?;
                String::from_utf8(plaintext).map_err(|_| VaultError::Corrupt(secret.secret_id).into())
            }
            ServerCredentialState::Absent => Err(CredentialError::CredentialNotFound.into()),
            ServerCredentialState::Deleted => Err(CredentialError::CredentialDeleted.into()),
        }
    }

    /// The secret for Unity's own use (logging in); not a reveal.
    pub async fn credential_for_login(&self, credential_id: Uuid) -> Result<(CredentialKind, String)> {
        match self.server_credential(credential_id).await? {
            ServerCredentialState::Active { kind, secret, .. } => {
                let plaintext = self.vault.decrypt(&secret).await?;
                let text = String::from_utf8(plaintext).map_err(|_| VaultError::Corrupt(secret.secret_id))?;
                Ok((kind, text))
            }
            ServerCredentialState::Absent => Err(CredentialError::CredentialNotFound.into()),
            ServerCredentialState::Deleted => Err(CredentialError::CredentialDeleted.into()),
        }
    }

    // -- servers ------------------------------------------------------------------------------

    pub async fn register_server(
        &self,
        spec: ServerSpec,
        host_key_fingerprint: Option<String>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        self.check_authentication(&spec).await?;
        let server_id = Uuid::now_v7();
        let (_, appended) = execute::<Server>(
            &self.store,
            &stream_of::<ServerEvent>(server_id),
            &ServerCommand::Register { server_id, spec, host_key_fingerprint },
            metadata,
        )
        .await?;
        Ok(Created { id: server_id, appended })
    }

    /// The key or credential a server logs in with must exist and be usable.
    async fn check_authentication(&self, spec: &ServerSpec) -> Result<()> {
        match spec.authentication {
            unity_domain::servers::ServerAuth::SshKey { key_id } => {
                let key = self.active_key(key_id).await?;
                if key.private_key.is_none() {
                    return Err(CredentialError::NoPrivateKey("log in with").into());
                }
            }
            unity_domain::servers::ServerAuth::Credential { credential_id } => {
                match self.server_credential(credential_id).await? {
                    ServerCredentialState::Active { kind: CredentialKind::Token, .. } => {
                        return Err(CredentialError::Invalid(
                            "a TOKEN credential cannot log in over SSH; use a PASSWORD or PRIVATE_KEY".into(),
                        )
                        .into())
                    }
                    ServerCredentialState::Active { .. } => {}
                    ServerCredentialState::Absent => return Err(CredentialError::CredentialNotFound.into()),
                    ServerCredentialState::Deleted => return Err(CredentialError::CredentialDeleted.into()),
                }
            }
        }
        Ok(())
    }

    pub async fn server(&self, server_id: Uuid) -> Result<ServerState> {
        Ok(load::<Server>(&self.store, &stream_of::<ServerEvent>(server_id)).await?.0)
    }

    pub async fn update_server(
        &self,
        server_id: Uuid,
        spec: ServerSpec,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        self.check_authentication(&spec).await?;
        self.server_command(server_id, ServerCommand::Update { spec }, metadata).await
    }

    pub async fn server_command(
        &self,
        server_id: Uuid,
        command: ServerCommand,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let (_, appended) =
            execute::<Server>(&self.store, &stream_of::<ServerEvent>(server_id), &command, metadata).await?;
        Ok(appended)
    }

    /// Records a request for the SSH reactor to carry out.
    pub async fn request(
        &self,
        server_id: Uuid,
        request: ServerRequest,
        metadata: &EventMetadata,
    ) -> Result<Requested> {
        let request_id = Uuid::now_v7();
        let appended = self.server_command(server_id, ServerCommand::Request { request_id, request }, metadata).await?;
        Ok(Requested { server_id, request_id, appended })
    }

    /// Records a request's outcome (the reactor's half of the pair).
    pub async fn complete(
        &self,
        server_id: Uuid,
        request_id: Uuid,
        outcome: Outcome,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let command = ServerCommand::Complete { request_id, outcome, follow_up_id: Uuid::now_v7() };
        self.server_command(server_id, command, metadata).await
    }
}

/// A secret must look like what its kind says, so a mix-up is caught when it is stored.
fn check_credential_secret(kind: CredentialKind, secret: &str) -> Result<()> {
    if secret.is_empty() {
        return Err(CredentialError::Invalid("the secret is empty".into()).into());
    }
    if secret.len() > ssh_keys::MAX_KEY_TEXT {
        return Err(KeyError::TooLarge(secret.len()).into());
    }
    if kind == CredentialKind::PrivateKey {
        ssh_keys::parse_private(secret, None)?;
    }
    Ok(())
}
