//! X.509 commands: internal CAs (rcgen), issuing, importing (x509-parser), revoking and CRLs.
//! Private keys are sealed in the vault before any event mentions them.

mod material;

pub use material::*;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use unity_domain::{
    certificates::{
        check_dns_name, check_validity_days, CertificateCommand, CertificateEvent, CertificateFacts, CertificateSource,
        CertificateState, CertificateUsage, CreateCa, RevocationReason, X509Ca, X509CaEvent, X509CaState, X509Error,
        X509KeyAlgorithm,
    },
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{
    credentials::Created,
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

    pub async fn create_ca(&self, new: NewCa, now: DateTime<Utc>, metadata: &EventMetadata) -> Result<Created> {
        check_validity_days(new.validity_days)?;
        if new.common_name.trim().is_empty() || new.common_name.len() > 64 {
            return Err(bad("commonName must be 1 to 64 characters"));
        }
        let not_after = now + Duration::days(new.validity_days);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, new.common_name.trim());
        if let Some(org) = new.organization.as_deref().filter(|o| !o.trim().is_empty()) {
            params.distinguished_name.push(DnType::OrganizationName, org.trim());
        }
        params.not_before = offset(now - Duration::minutes(5))?;
        params.not_after = offset(not_after)?;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(match new.path_length {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = new.parent_id.is_some();
        let key = tokio::task::spawn_blocking(move || generate_key(new.key_algorithm)).await.map_err(crypto)??;
        let (certificate, chain_pem) = match new.parent_id {
            None => (params.self_signed(&key).map_err(crypto)?, String::new()),
            Some(parent_id) => {
                let (parent, issuer) = self.issuer(parent_id).await?;
                match parent.path_length {
                    Some(0) => return Err(bad("the parent CA's path length is 0: it cannot sign another CA")),
                    Some(n) if new.path_length.is_none_or(|p| p >= n) => {
                        return Err(bad(format!(
                            "the parent CA allows {n} level(s) below it: pathLength must be below {n}"
                        )))
                    }
                    _ => {}
                }
                if not_after > parent.facts.not_after {
                    return Err(bad(format!(
                        "the parent CA expires at {}; ask for fewer validityDays",
                        parent.facts.not_after.to_rfc3339()
                    )));
                }
                let certificate = params.signed_by(&key, &issuer).map_err(crypto)?;
                (certificate, format!("{}{}", parent.certificate_pem, parent.chain_pem))
            }
        };
        let facts = facts_of(certificate.der())?;
        let ca_id = Uuid::now_v7();
        let placeholder = SecretRef { secret_id: Uuid::nil(), ciphertext: String::new() };
        let mut command = CreateCa {
            ca_id,
            name: new.name.clone(),
            key_algorithm: new.key_algorithm,
            path_length: new.path_length,
            parent_id: new.parent_id,
            facts,
            certificate_pem: certificate.pem(),
            chain_pem,
            private_key: placeholder,
        };
        X509Ca::decide(&command, &X509CaState::Absent)?;
        command.private_key = self.vault.seal(key.serialize_pem().as_bytes()).await?;
        let (_, appended) =
            execute::<X509Ca>(&self.store, &stream_of::<X509CaEvent>(ca_id), &command, metadata).await?;
        Ok(Created { id: ca_id, appended })
    }

    pub async fn issue(&self, new: NewCertificate, now: DateTime<Utc>, metadata: &EventMetadata) -> Result<Created> {
        self.issue_renewing(new, None, now, metadata).await
    }

    async fn issue_renewing(
        &self,
        new: NewCertificate,
        renewal_of: Option<Uuid>,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        check_validity_days(new.validity_days)?;
        for name in &new.dns_names {
            check_dns_name(name)?;
        }
        if new.common_name.trim().is_empty() || new.common_name.len() > 64 {
            return Err(bad("commonName must be 1 to 64 characters"));
        }
        if new.dns_names.len() + new.ip_addresses.len() > 100 {
            return Err(bad("at most 100 DNS names and IP addresses"));
        }
        let (ca, issuer) = self.issuer(new.ca_id).await?;
        let not_after = now + Duration::days(new.validity_days);
        if not_after > ca.facts.not_after {
            return Err(bad(format!(
                "the CA expires at {}; ask for fewer validityDays",
                ca.facts.not_after.to_rfc3339()
            )));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, new.common_name.trim());
        for name in &new.dns_names {
            params.subject_alt_names.push(SanType::DnsName(name.as_str().try_into().map_err(crypto)?));
        }
        for ip in &new.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.not_before = offset(now - Duration::minutes(5))?;
        params.not_after = offset(not_after)?;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        let rsa = matches!(new.key_algorithm, X509KeyAlgorithm::Rsa2048 | X509KeyAlgorithm::Rsa4096);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if rsa {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = match new.usage {
            CertificateUsage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertificateUsage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            CertificateUsage::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let algorithm = new.key_algorithm;
        let key = tokio::task::spawn_blocking(move || generate_key(algorithm)).await.map_err(crypto)??;
        let certificate = params.signed_by(&key, &issuer).map_err(crypto)?;
        let chain_pem = format!("{}{}", ca.certificate_pem, ca.chain_pem);
        self.record(
            Uuid::now_v7(),
            new.name.unwrap_or_else(|| new.common_name.clone()),
            CertificateSource::Internal { ca_id: new.ca_id },
            Some(new.usage),
            Some(new.key_algorithm),
            certificate.der(),
            certificate.pem(),
            chain_pem,
            Some(&key),
            renewal_of,
            metadata,
        )
        .await
    }

    /// Imports a certificate (and its chain and key); refuses garbage, a key that does not
    /// match, and a certificate already expired.
    pub async fn import(
        &self,
        name: Option<&str>,
        certificate_pem: &str,
        chain_pem: Option<&str>,
        private_key_pem: Option<&str>,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let ders = parse_pem_chain(certificate_pem)?;
        let leaf = ders.first().ok_or_else(|| bad("certificatePem holds no CERTIFICATE block"))?;
        let facts = facts_of(leaf)?;
        if facts.not_after <= now {
            return Err(bad(format!("this certificate expired at {}", facts.not_after.to_rfc3339())));
        }
        // A chain may come inside certificatePem (a fullchain file) or in chainPem.
        let mut chain: Vec<Vec<u8>> = ders[1..].to_vec();
        if let Some(extra) = chain_pem.filter(|c| !c.trim().is_empty()) {
            let parsed = parse_pem_chain(extra)?;
            if parsed.is_empty() {
                return Err(bad("chainPem holds no CERTIFICATE block"));
            }
            chain.extend(parsed);
        }
        for der in &chain {
            facts_of(der)?;
        }
        let key = private_key_pem.filter(|k| !k.trim().is_empty()).map(parse_private_key).transpose()?;
        if let Some(key) = &key {
            if !key_matches(key, leaf) {
                return Err(bad("the private key does not belong to this certificate"));
            }
        }
        let leaf_pem = pem_of(leaf);
        let chain_pem: String = chain.iter().map(|d| pem_of(d)).collect();
        let name =
            name.map(str::to_owned).or_else(|| facts.common_name.clone()).unwrap_or_else(|| facts.subject.clone());
        // The id comes from the certificate itself, so importing it again finds its record
        // (atomically: the stream exists) instead of keeping it twice.
        let certificate_id =
            Uuid::new_v5(&IMPORTED_CERTIFICATES, ring::digest::digest(&ring::digest::SHA256, leaf).as_ref());
        let recorded = self
            .record(
                certificate_id,
                name,
                CertificateSource::Imported,
                None,
                None,
                leaf,
                leaf_pem,
                chain_pem,
                key.as_ref(),
                None,
                metadata,
            )
            .await;
        match recorded {
            Err(X509CommandError::Rejected(X509Error::Exists)) => {
                Err(X509CommandError::AlreadyImported(certificate_id))
            }
            other => other,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        certificate_id: Uuid,
        name: String,
        source: CertificateSource,
        usage: Option<CertificateUsage>,
        key_algorithm: Option<X509KeyAlgorithm>,
        der: &[u8],
        certificate_pem: String,
        chain_pem: String,
        key: Option<&KeyPair>,
        renewal_of: Option<Uuid>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let mut command = CertificateCommand::Record {
            certificate_id,
            name,
            source,
            usage,
            key_algorithm,
            facts: facts_of(der)?,
            certificate_pem,
            chain_pem,
            private_key: None,
            renewal_of,
        };
        unity_domain::certificates::Certificate::decide(&command, &CertificateState::Absent)?;
        if let (Some(key), CertificateCommand::Record { private_key, .. }) = (key, &mut command) {
            *private_key = Some(self.vault.seal(key.serialize_pem().as_bytes()).await?);
        }
        let (_, appended) = execute::<unity_domain::certificates::Certificate>(
            &self.store,
            &stream_of::<CertificateEvent>(certificate_id),
            &command,
            metadata,
        )
        .await?;
        Ok(Created { id: certificate_id, appended })
    }

    /// Records a certificate an ACME directory issued: `chain_pem` as downloaded (leaf first),
    /// `key` the one its CSR was made with. The id is the caller's, so a repeat is refused
    /// (`Exists`) instead of recording the certificate twice.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_acme(
        &self,
        certificate_id: Uuid,
        name: String,
        (account_id, order_id): (Uuid, Uuid),
        key_algorithm: X509KeyAlgorithm,
        chain_pem: &str,
        key: &KeyPair,
        renewal_of: Option<Uuid>,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let ders = parse_pem_chain(chain_pem)?;
        let leaf = ders.first().ok_or_else(|| bad("the directory sent no certificate"))?;
        if !key_matches(key, leaf) {
            return Err(bad("the directory's certificate is not for the key Unity sent"));
        }
        let chain: String = ders[1..].iter().map(|d| pem_of(d)).collect();
        self.record(
            certificate_id,
            name,
            CertificateSource::Acme { account_id, order_id: Some(order_id) },
            Some(CertificateUsage::Server),
            Some(key_algorithm),
            leaf,
            pem_of(leaf),
            chain,
            Some(key),
            renewal_of,
            metadata,
        )
        .await
    }

    pub async fn certificate(&self, certificate_id: Uuid) -> Result<CertificateState> {
        Ok(load::<unity_domain::certificates::Certificate>(&self.store, &stream_of::<CertificateEvent>(certificate_id))
            .await?
            .0)
    }

    pub async fn revoke(
        &self,
        certificate_id: Uuid,
        reason: RevocationReason,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let (_, appended) = execute::<unity_domain::certificates::Certificate>(
            &self.store,
            &stream_of::<CertificateEvent>(certificate_id),
            &CertificateCommand::Revoke { reason, at: now },
            metadata,
        )
        .await?;
        Ok(appended)
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

    /// `None`: renew at two thirds of the lifetime; else this many days before expiry.
    pub async fn configure_renewal(
        &self,
        certificate_id: Uuid,
        renew_before_days: Option<u32>,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        self.certificate_command(certificate_id, CertificateCommand::ConfigureRenewal { renew_before_days }, metadata)
            .await
    }

    /// Warns (once per threshold) if the certificate expires within one of `thresholds` days.
    pub async fn check_expiry(
        &self,
        certificate_id: Uuid,
        now: DateTime<Utc>,
        thresholds: &[u32],
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let command = CertificateCommand::CheckExpiry { now, thresholds: thresholds.to_vec() };
        self.certificate_command(certificate_id, command, metadata).await
    }

    /// Renews an internal certificate if it is due at `now`: the same names, usage, key type and
    /// lifetime from the same CA, with a fresh key. A failure is recorded (with the next attempt's
    /// time and an expiry warning) and returned. `Ok(None)`: not due.
    pub async fn renew_if_due(
        &self,
        certificate_id: Uuid,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Option<Created>> {
        let CertificateState::Present(data) = self.certificate(certificate_id).await? else {
            return Err(X509Error::NotFound.into());
        };
        if !data.renewal_due(now) {
            return Ok(None);
        }
        let Issued { name, source, usage, key_algorithm, facts, .. } = self.issued(certificate_id).await?;
        let CertificateSource::Internal { ca_id } = source else {
            return Err(bad(format!("Unity cannot renew a {} certificate by itself", source.as_str())));
        };
        let new = NewCertificate {
            ca_id,
            name: Some(name),
            common_name: facts.common_name.clone().unwrap_or_else(|| facts.subject.clone()),
            dns_names: facts.dns_names.clone(),
            ip_addresses: facts.ip_addresses.iter().filter_map(|ip| ip.parse().ok()).collect(),
            validity_days: (data.not_after - data.not_before).num_days().max(1),
            usage: usage.unwrap_or(CertificateUsage::Server),
            key_algorithm: key_algorithm.unwrap_or(X509KeyAlgorithm::EcdsaP256),
        };
        match self.issue_renewing(new, Some(certificate_id), now, metadata).await {
            Ok(created) => {
                self.certificate_command(
                    certificate_id,
                    CertificateCommand::RecordRenewal { replaced_by: created.id },
                    metadata,
                )
                .await?;
                Ok(Some(created))
            }
            Err(e) => {
                let error = e.to_string();
                self.certificate_command(
                    certificate_id,
                    CertificateCommand::RecordRenewalFailure { error, now },
                    metadata,
                )
                .await?;
                Err(e)
            }
        }
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

    /// A certificate, its chain and (if Unity holds it) its key, for deploying to a server. The
    /// deployment's own events record where the key went; this is not a reveal to a person.
    pub async fn deployment_material(
        &self,
        certificate_id: Uuid,
    ) -> Result<(String, String, Option<Zeroizing<String>>)> {
        let Issued { certificate_pem, chain_pem, private_key, .. } = self.issued(certificate_id).await?;
        let key = match private_key {
            Some(secret) => {
                let bytes = self.vault.decrypt(&secret).await?;
                Some(Zeroizing::new(String::from_utf8(bytes).map_err(|_| VaultError::Corrupt(secret.secret_id))?))
            }
            None => None,
        };
        Ok((certificate_pem, chain_pem, key))
    }

    /// The private key in PEM, recorded as a `SecretRevealed` event with the actor.
    pub async fn reveal_private_key(&self, certificate_id: Uuid, metadata: &EventMetadata) -> Result<String> {
        let secret = match self.certificate(certificate_id).await? {
            CertificateState::Absent => return Err(X509Error::NotFound.into()),
            CertificateState::Present(data) => data.private_key,
        };
        let secret = secret.ok_or_else(|| bad("Unity does not hold this certificate's private key"))?;
        let plaintext = self
            .vault
            .reveal(&secret, &format!("revealCertificatePrivateKey certificate-{certificate_id}"), metadata)
            .await?;
        String::from_utf8(plaintext).map_err(|_| VaultError::Corrupt(secret.secret_id).into())
    }

    /// The CA's CRL (DER), listing `revoked` (serial in hex, when, why), valid for a week.
    pub async fn crl(
        &self,
        ca_id: Uuid,
        revoked: &[(String, DateTime<Utc>, RevocationReason)],
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        let (_, issuer) = self.issuer(ca_id).await?;
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for (serial, at, reason) in revoked {
            let bytes = hex::decode(if serial.len() % 2 == 1 { format!("0{serial}") } else { serial.clone() })
                .map_err(crypto)?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: offset(*at)?,
                reason_code: Some(match reason {
                    RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
                    RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
                    RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
                    RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
                    RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
                    RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
                }),
                invalidity_date: None,
            });
        }
        let crl = CertificateRevocationListParams {
            this_update: offset(now)?,
            next_update: offset(now + Duration::days(7))?,
            // Increases with time, as RFC 5280 asks, without a counter to keep.
            crl_number: SerialNumber::from(now.timestamp().max(1) as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .map_err(crypto)?;
        Ok(crl.der().to_vec())
    }
}

#[cfg(test)]
mod tests;
