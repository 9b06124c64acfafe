//! X.509 commands: internal CAs (rcgen), issuing, importing (x509-parser), revoking and CRLs.
//! Private keys are sealed in the vault before any event mentions them.

mod ca;
mod issue;
mod lifecycle;
mod material;

pub use material::*;

use rcgen::{Issuer, KeyPair};
use unity_domain::{
    certificates::{
        CertificateCommand, CertificateEvent, CertificateFacts, CertificateSource, CertificateState, CertificateUsage,
        X509Ca, X509CaEvent, X509CaState, X509Error, X509KeyAlgorithm,
    },
    EventMetadata, SecretRef,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{
    handler::{execute, load, stream_of, CommandError},
    store::{Appended, StoreError},
    vault::{Vault, VaultError},
};

/// Longest PEM text accepted (a long chain with an RSA-4096 key fits many times over).
pub const MAX_PEM: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum X509CommandError {
    #[error(transparent)]
    Rejected(#[from] X509Error),
    /// The caller's certificate or key cannot be used; the message says why.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Crypto(String),
    #[error("the stream kept changing underneath this command ({0})")]
    Contended(String),
    /// The same certificate was imported before: the existing record's id.
    #[error("this certificate was imported already (certificate {0})")]
    AlreadyImported(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<CommandError<X509Error>> for X509CommandError {
    fn from(e: CommandError<X509Error>) -> X509CommandError {
        match e {
            CommandError::Rejected(e) => X509CommandError::Rejected(e),
            CommandError::Contended(s) => X509CommandError::Contended(s),
            CommandError::Store(e) => X509CommandError::Store(e),
            CommandError::Decode(e) => X509CommandError::Crypto(e.to_string()),
        }
    }
}

fn crypto(e: impl std::fmt::Display) -> X509CommandError {
    X509CommandError::Crypto(e.to_string())
}

/// The namespace of imported certificates' ids (UUID v5 of the leaf's SHA-256).
const IMPORTED_CERTIFICATES: Uuid = Uuid::from_u128(0x5b1c_2f7e_9a43_4d0e_8c61_3f2a_7d9e_b104);

fn bad(message: impl Into<String>) -> X509CommandError {
    X509CommandError::BadInput(message.into())
}

type Result<T> = std::result::Result<T, X509CommandError>;

/// A new CA as asked for.
#[derive(Clone, Debug)]
pub struct NewCa {
    pub name: String,
    pub common_name: String,
    pub organization: Option<String>,
    pub key_algorithm: X509KeyAlgorithm,
    pub validity_days: i64,
    pub path_length: Option<u8>,
    pub parent_id: Option<Uuid>,
}

/// A certificate to issue from an internal CA.
#[derive(Clone, Debug)]
pub struct NewCertificate {
    pub ca_id: Uuid,
    pub name: Option<String>,
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<std::net::IpAddr>,
    pub validity_days: i64,
    pub usage: CertificateUsage,
    pub key_algorithm: X509KeyAlgorithm,
}

/// A certificate as its issue event recorded it.
pub struct Issued {
    pub name: String,
    pub source: CertificateSource,
    pub usage: Option<CertificateUsage>,
    pub key_algorithm: Option<X509KeyAlgorithm>,
    pub facts: CertificateFacts,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub private_key: Option<SecretRef>,
}

#[derive(Clone)]
pub struct X509Commands {
    store: crate::store::EventStore,
    vault: Vault,
}

impl X509Commands {
    pub fn new(store: crate::store::EventStore, vault: Vault) -> X509Commands {
        X509Commands { store, vault }
    }

    pub fn store(&self) -> &crate::store::EventStore {
        &self.store
    }

    pub async fn ca(&self, ca_id: Uuid) -> Result<X509CaState> {
        Ok(load::<X509Ca>(&self.store, &stream_of::<X509CaEvent>(ca_id)).await?.0)
    }

    /// The CA as an rcgen issuer, its key decrypted for Unity's own use.
    async fn issuer(&self, ca_id: Uuid) -> Result<(Box<unity_domain::certificates::CaData>, Issuer<'static, KeyPair>)> {
        let X509CaState::Active(ca) = self.ca(ca_id).await? else {
            return Err(X509Error::CaNotFound.into());
        };
        let pem = Zeroizing::new(self.vault.decrypt(&ca.private_key).await?);
        let key = KeyPair::from_pem(std::str::from_utf8(&pem).map_err(crypto)?).map_err(crypto)?;
        let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem, key).map_err(crypto)?;
        Ok((ca, issuer))
    }

    pub async fn certificate(&self, certificate_id: Uuid) -> Result<CertificateState> {
        Ok(load::<unity_domain::certificates::Certificate>(&self.store, &stream_of::<CertificateEvent>(certificate_id))
            .await?
            .0)
    }

    pub async fn certificate_command(
        &self,
        certificate_id: Uuid,
        command: CertificateCommand,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let stream = stream_of::<CertificateEvent>(certificate_id);
        let (_, appended) =
            execute::<unity_domain::certificates::Certificate>(&self.store, &stream, &command, metadata).await?;
        Ok(appended)
    }

    /// What a certificate says (from its issue event).
    pub async fn facts(&self, certificate_id: Uuid) -> Result<CertificateFacts> {
        Ok(self.issued(certificate_id).await?.facts)
    }

    /// What the certificate's `CertificateIssued` event (the first of its stream) says.
    pub async fn issued(&self, certificate_id: Uuid) -> Result<Issued> {
        let stream = stream_of::<CertificateEvent>(certificate_id).to_string();
        let events = self.store.read_stream(&stream, None).await?;
        match events.first().map(|e| e.decode::<CertificateEvent>()).transpose().map_err(crypto)? {
            Some(CertificateEvent::CertificateIssued {
                name,
                source,
                usage,
                key_algorithm,
                facts,
                certificate_pem,
                chain_pem,
                private_key,
                ..
            }) => Ok(Issued { name, source, usage, key_algorithm, facts, certificate_pem, chain_pem, private_key }),
            _ => Err(X509Error::NotFound.into()),
        }
    }
}

#[cfg(test)]
mod tests;
