//! Internal CAs: creating a root or an intermediate, and the CRL each one publishes.

use crate::{
    credentials::Created,
    handler::{execute, stream_of},
};
use chrono::{DateTime, Duration, Utc};
pub use material::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, IsCa, KeyIdMethod,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use unity_domain::{
    certificates::{check_validity_days, CreateCa, RevocationReason, X509Ca, X509CaEvent, X509CaState},
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;

use super::*;

impl X509Commands {
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
