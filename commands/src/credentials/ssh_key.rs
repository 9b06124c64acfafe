//! SSH keys: generation, import, use, rotation and deletion.

use super::*;

use chrono::{DateTime, Utc};
use russh::keys::PrivateKey;
use unity_domain::{
    credentials::{CredentialError, KeyAlgorithm, KeyOrigin, SshKey, SshKeyCommand, SshKeyEvent, SshKeyState},
    Decider, EventMetadata,
};
use uuid::Uuid;

use crate::{
    credentials::ssh_keys::{self, KeyError},
    handler::{execute, load, stream_of},
    store::{Appended, ExpectedVersion, NewEvent, StreamAppend},
    vault::VaultError,
};

impl CredentialCommands {
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

    pub(crate) async fn active_key(&self, key_id: Uuid) -> Result<Box<unity_domain::credentials::SshKeyData>> {
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
}
