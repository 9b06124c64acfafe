//! SSH certificate authorities and the certificates they sign.

use super::*;

use unity_domain::{
    credentials::{CertificateRequest, CredentialError, KeyAlgorithm, SshCa, SshCaCommand, SshCaEvent, SshCaState},
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;

use crate::{
    credentials::ssh_keys::{self, KeyError},
    handler::{execute, load, stream_of, MAX_ATTEMPTS},
    store::{ExpectedVersion, NewEvent, StoreError, StreamAppend},
    vault::VaultError,
};

impl CredentialCommands {
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
                events: NewEvent::from_domain_events(&events, metadata),
            };
            match self.store.append(vec![append]).await {
                Ok(appended) => return Ok(SignedCertificate { serial, certificate: line, appended }),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CredentialsError::Contended(stream.to_string()))
    }
}
