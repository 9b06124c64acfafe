//! Certificates in: issued by an internal CA (also as a renewal), imported, or obtained by ACME.

use crate::{
    credentials::Created,
    handler::{execute, stream_of},
};
use chrono::{DateTime, Duration, Utc};
pub use material::*;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use unity_domain::{
    certificates::{
        check_dns_name, check_validity_days, CertificateCommand, CertificateEvent, CertificateSource, CertificateState,
        CertificateUsage, X509Error, X509KeyAlgorithm,
    },
    Decider, EventMetadata,
};
use uuid::Uuid;

use super::*;

impl X509Commands {
    pub async fn issue(&self, new: NewCertificate, now: DateTime<Utc>, metadata: &EventMetadata) -> Result<Created> {
        self.issue_renewing(new, None, now, metadata).await
    }

    pub(super) async fn issue_renewing(
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
    pub(super) async fn record(
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
}
