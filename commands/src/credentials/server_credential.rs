//! Server credentials (passwords, private keys, tokens), sealed in the vault.

use super::*;

use unity_domain::{
    credentials::{
        CredentialError, CredentialKind, ServerCredential, ServerCredentialCommand, ServerCredentialEvent,
        ServerCredentialState,
    },
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;

use crate::{
    handler::{execute, load, stream_of},
    store::Appended,
    vault::VaultError,
};

impl CredentialCommands {
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
}
