//! The secrets vault: AES-256-GCM envelope encryption.
//!
//! Every secret gets its own random data key; the data key is wrapped by the master key (a file
//! that never enters the database) and kept in `vault_keys`, a mutable table. The secret's
//! ciphertext travels in events as a [`SecretRef`]. Shredding deletes the data key, so the
//! ciphertext in the append-only log can never be opened again while the hash chain still
//! verifies. Reveals and shreds are themselves events in the `secret` stream.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use ring::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN},
    rand::{SecureRandom, SystemRandom},
};
use serde::{Deserialize, Serialize};
use unity_domain::{DomainEvent, EventMetadata, SecretRef, StreamId};
use uuid::Uuid;

use crate::store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key file {path}: {reason}")]
    MasterKeyFile { path: PathBuf, reason: String },
    #[error("the master key does not match the one this database's secrets were sealed with")]
    WrongMasterKey,
    #[error("secret {0} has been shredded")]
    Shredded(Uuid),
    #[error("secret {0} cannot be decrypted: its ciphertext is damaged or belongs to another secret")]
    Corrupt(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VaultError {
    fn from(e: sqlx::Error) -> VaultError {
        VaultError::Store(e.into())
    }
}

/// The 256-bit key that wraps every data key.
pub struct MasterKey(LessSafeKey);

impl MasterKey {
    /// Reads the key file (64 hex characters), creating it with mode 0600 if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, VaultError> {
        match MasterKey::load(path)? {
            Some(key) => Ok(key),
            None => MasterKey::create(path),
        }
    }

    /// Reads the key file; `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<MasterKey>, VaultError> {
        let fail = |reason: String| VaultError::MasterKeyFile { path: path.to_owned(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| fail("expected 64 hexadecimal characters (a 256-bit key)".into()))?;
                Ok(Some(MasterKey::from_bytes(&bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(format!("cannot read it: {e}"))),
        }
    }

    /// Generates a new key and writes it to a new file with mode 0600.
    pub fn create(path: &Path) -> Result<MasterKey, VaultError> {
        let fail = |reason: String| VaultError::MasterKeyFile { path: path.to_owned(), reason };
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| fail("no randomness available".into()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| fail(format!("cannot create it: {e}")))?;
        writeln!(file, "{}", hex::encode(key))
            .and_then(|_| file.sync_all())
            .map_err(|e| fail(format!("cannot write it: {e}")))?;
        tracing::warn!(path = %path.display(), "Created a new master key file; back it up, secrets cannot be read without it.");
        Ok(MasterKey::from_bytes(&key))
    }

    pub fn from_bytes(bytes: &[u8]) -> MasterKey {
        MasterKey(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key")))
    }
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).expect("system randomness");
    let mut out = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out)
        .expect("AES-GCM sealing cannot fail for in-range lengths");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&out);
    sealed
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let mut buffer = ciphertext.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plaintext = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    Some(plaintext.to_vec())
}

/// Events of the `secret` stream: what happened to a secret after it was sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum SecretEvent {
    SecretRevealed { secret_id: Uuid, purpose: String },
    SecretShredded { secret_id: Uuid },
}

unity_domain::domain_event!(SecretEvent, "secret", [SecretRevealed, SecretShredded]);

const MASTER_CHECK: &[u8] = b"unity master key check v1";

#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
    store: EventStore,
}

impl Vault {
    /// Binds the master key to the store, checking that it is the key this database's secrets
    /// were sealed with (the first key used is remembered by a check value).
    pub async fn open(master: MasterKey, store: EventStore) -> Result<Vault, VaultError> {
        let existing: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed FROM vault_master_check").fetch_optional(store.pool()).await?;
        match existing {
            Some(sealed) => {
                if open_with(&master.0, b"master-check", &sealed).as_deref() != Some(MASTER_CHECK) {
                    return Err(VaultError::WrongMasterKey);
                }
            }
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO vault_master_check (sealed) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(seal_with(&master.0, b"master-check", MASTER_CHECK))
                .fetch_optional(store.pool())
                .await?;
                if inserted.is_none() {
                    // Another process recorded its key first: this one must be the same key.
                    return Box::pin(Vault::open(master, store)).await;
                }
            }
        }
        Ok(Vault { master: Arc::new(master), store })
    }

    /// Whether any master key has been used with this database yet.
    pub async fn initialised(store: &EventStore) -> Result<bool, VaultError> {
        Ok(sqlx::query_scalar("SELECT exists(SELECT 1 FROM vault_master_check)").fetch_one(store.pool()).await?)
    }

    /// Encrypts a secret under a fresh data key. The result may go into events.
    pub async fn seal(&self, plaintext: &[u8]) -> Result<SecretRef, VaultError> {
        let secret_id = Uuid::now_v7();
        let mut data_key = [0u8; 32];
        SystemRandom::new().fill(&mut data_key).expect("system randomness");
        let aad = secret_id.as_bytes();
        let wrapped = seal_with(&self.master.0, aad, &data_key);
        let data = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).expect("32-byte key"));
        let ciphertext = seal_with(&data, aad, plaintext);
        data_key.fill(0);
        sqlx::query("INSERT INTO vault_keys (secret_id, wrapped_key) VALUES ($1, $2)")
            .bind(secret_id)
            .bind(wrapped)
            .execute(self.store.pool())
            .await?;
        Ok(SecretRef { secret_id, ciphertext: BASE64.encode(ciphertext) })
    }

    /// Decrypts a secret for Unity's own use (verifying a password, a collector logging in).
    /// The caller's own events record that use; see [`Vault::reveal`] for showing it to a person.
    pub async fn decrypt(&self, secret: &SecretRef) -> Result<Vec<u8>, VaultError> {
        let wrapped: Option<Vec<u8>> = sqlx::query_scalar("SELECT wrapped_key FROM vault_keys WHERE secret_id = $1")
            .bind(secret.secret_id)
            .fetch_optional(self.store.pool())
            .await?;
        let wrapped = wrapped.ok_or(VaultError::Shredded(secret.secret_id))?;
        let aad = secret.secret_id.as_bytes();
        let data_key = open_with(&self.master.0, aad, &wrapped).ok_or(VaultError::WrongMasterKey)?;
        let data = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &data_key).map_err(|_| VaultError::Corrupt(secret.secret_id))?,
        );
        let sealed = BASE64.decode(&secret.ciphertext).map_err(|_| VaultError::Corrupt(secret.secret_id))?;
        open_with(&data, aad, &sealed).ok_or(VaultError::Corrupt(secret.secret_id))
    }

    /// Decrypts a secret to show it to someone, recording who and why as a `SecretRevealed` event.
    pub async fn reveal(
        &self,
        secret: &SecretRef,
        purpose: &str,
        metadata: &EventMetadata,
    ) -> Result<Vec<u8>, VaultError> {
        let plaintext = self.decrypt(secret).await?;
        self.record(
            secret.secret_id,
            SecretEvent::SecretRevealed { secret_id: secret.secret_id, purpose: purpose.into() },
            metadata,
        )
        .await?;
        Ok(plaintext)
    }

    /// Destroys the secret's data key. Idempotent; records a `SecretShredded` event the first time.
    pub async fn shred(&self, secret_id: Uuid, metadata: &EventMetadata) -> Result<(), VaultError> {
        let deleted = sqlx::query("DELETE FROM vault_keys WHERE secret_id = $1")
            .bind(secret_id)
            .execute(self.store.pool())
            .await?;
        if deleted.rows_affected() > 0 {
            self.record(secret_id, SecretEvent::SecretShredded { secret_id }, metadata).await?;
            // Dead row versions keep the wrapped key until vacuum; do not leave that to chance.
            if let Err(e) = sqlx::query("VACUUM vault_keys").execute(self.store.pool()).await {
                tracing::warn!(error = %e, "Could not vacuum vault_keys after shredding; autovacuum will.");
            }
        }
        Ok(())
    }

    async fn record(&self, secret_id: Uuid, event: SecretEvent, metadata: &EventMetadata) -> Result<(), VaultError> {
        self.store
            .append(vec![StreamAppend {
                stream_id: StreamId::new(SecretEvent::STREAM_TYPE, secret_id),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::from_domain(&event, metadata)],
            }])
            .await?;
        Ok(())
    }
}
