//! A certificate's life after issuance: revocation, renewal settings and dispatch, expiry
//! warnings, and the material a deployment or a reveal needs.

use crate::{
    credentials::Created,
    handler::{execute, stream_of},
    store::Appended,
    vault::VaultError,
};
use chrono::{DateTime, Utc};
use unity_domain::{
    certificates::{
        CertificateCommand, CertificateEvent, CertificateSource, CertificateState, CertificateUsage, RevocationReason,
        X509Error, X509KeyAlgorithm,
    },
    EventMetadata,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::*;

impl X509Commands {
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
}
