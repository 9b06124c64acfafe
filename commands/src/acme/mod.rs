//! ACME commands: accounts, orders and DNS providers, as requests and their recorded outcomes.
//! The network half (instant-acme, DNS updates, webhooks) lives in unity-collectors' ACME
//! reactor; this module seals the secrets, checks what is asked, and records what happened.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use rcgen::KeyPair;
use unity_domain::{
    acme::{
        AcmeAccount, AcmeAccountCommand, AcmeAccountEvent, AcmeAccountSpec, AcmeAccountState, AcmeError, AcmeOrder,
        AcmeOrderCommand, AcmeOrderEvent, AcmeOrderSpec, AcmeOrderState, AuthorizationFailure, DnsProvider,
        DnsProviderCommand, DnsProviderConfig, DnsProviderEvent, DnsProviderState, TsigAlgorithm,
    },
    certificates::{CertificateCommand, CertificateSource, CertificateState, X509Error, X509KeyAlgorithm},
    Decider, EventMetadata, SecretRef,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{
    certificates::{parse_pem_chain, X509CommandError, X509Commands, MAX_PEM},
    credentials::Created,
    handler::{execute, load, stream_of, CommandError},
    store::{Appended, StoreError},
    vault::{Vault, VaultError},
};

#[derive(Debug, thiserror::Error)]
pub enum AcmeCommandError {
    #[error(transparent)]
    Rejected(#[from] AcmeError),
    #[error(transparent)]
    X509(#[from] X509CommandError),
    #[error("{0}")]
    BadInput(String),
    #[error("the stream kept changing underneath this command ({0})")]
    Contended(String),
    #[error("a stored record cannot be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<CommandError<AcmeError>> for AcmeCommandError {
    fn from(e: CommandError<AcmeError>) -> AcmeCommandError {
        match e {
            CommandError::Rejected(e) => AcmeCommandError::Rejected(e),
            CommandError::Contended(s) => AcmeCommandError::Contended(s),
            CommandError::Store(e) => AcmeCommandError::Store(e),
            CommandError::Decode(e) => AcmeCommandError::Corrupt(e.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, AcmeCommandError>;

fn bad(message: impl Into<String>) -> AcmeCommandError {
    AcmeCommandError::BadInput(message.into())
}

/// Well-known directories, so nobody has to look their URLs up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmePreset {
    LetsEncrypt,
    LetsEncryptStaging,
    ZeroSsl,
    /// smallstep's step-ca: the directory is `{caUrl}/acme/{provisioner}/directory`, and its
    /// root (`step ca root`) goes in the CA bundle.
    StepCa,
}

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
pub const ZEROSSL: &str = "https://acme.zerossl.com/v2/DV90";

/// The directory URL for a preset. `url` is the directory for no preset, step-ca's base URL
/// (or its directory) for `StepCa`, and must be absent for the public presets.
pub fn directory_url(preset: Option<AcmePreset>, url: Option<&str>, provisioner: Option<&str>) -> Result<String> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    match (preset, url) {
        (None, Some(url)) => Ok(url.to_owned()),
        (None, None) => Err(bad("give a directoryUrl or a preset")),
        (Some(AcmePreset::StepCa), None) => Err(bad("the STEP_CA preset needs directoryUrl: the CA's URL")),
        (Some(AcmePreset::StepCa), Some(url)) if url.ends_with("/directory") => Ok(url.to_owned()),
        (Some(AcmePreset::StepCa), Some(url)) => {
            let provisioner = provisioner.map(str::trim).filter(|p| !p.is_empty()).unwrap_or("acme");
            if !provisioner.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(bad(format!("'{provisioner}' is not a step-ca provisioner name")));
            }
            Ok(format!("{}/acme/{provisioner}/directory", url.trim_end_matches('/')))
        }
        (Some(_), Some(_)) => Err(bad("a preset sets the directory; leave directoryUrl out")),
        (Some(AcmePreset::LetsEncrypt), None) => Ok(LETS_ENCRYPT.into()),
        (Some(AcmePreset::LetsEncryptStaging), None) => Ok(LETS_ENCRYPT_STAGING.into()),
        (Some(AcmePreset::ZeroSsl), None) => Ok(ZEROSSL.into()),
    }
}

/// What `registerAcmeAccount` asks for, secrets in plaintext (sealed here).
pub struct NewAcmeAccount {
    pub name: String,
    pub directory_url: String,
    pub email: Option<String>,
    /// Key id and HMAC key (base64url, as ZeroSSL and step-ca show it).
    pub eab: Option<(String, String)>,
    pub ca_bundle_pem: Option<String>,
    pub terms_agreed: bool,
}

pub enum NewDnsProvider {
    Rfc2136 { server: String, zone: String, tsig: Option<(String, TsigAlgorithm, String)> },
    Webhook { url: String, bearer_token: Option<String> },
}

/// What a renewal check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    NotDue,
    /// Renewed at once (an internal certificate): the new certificate's id.
    Renewed(Uuid),
    /// An ACME order is under way (just requested, or still running).
    Ordered(Uuid),
}

/// Decodes an EAB HMAC key as ZeroSSL, step-ca and Pebble print it (base64url, padding optional).
pub fn decode_hmac_key(text: &str) -> Result<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| bad("eab.hmacKey is not base64url (as the directory shows it)"))?;
    if raw.len() < 16 {
        return Err(bad("eab.hmacKey is too short to be an HMAC key"));
    }
    Ok(raw)
}

#[derive(Clone)]
pub struct AcmeCommands {
    x509: X509Commands,
    vault: Vault,
}

impl AcmeCommands {
    pub fn new(x509: X509Commands, vault: Vault) -> AcmeCommands {
        AcmeCommands { x509, vault }
    }

    pub fn store(&self) -> &crate::store::EventStore {
        self.x509.store()
    }

    pub fn x509(&self) -> &X509Commands {
        &self.x509
    }

    pub async fn register_account(&self, new: NewAcmeAccount, metadata: &EventMetadata) -> Result<Created> {
        if let Some(bundle) = new.ca_bundle_pem.as_deref().filter(|b| !b.trim().is_empty()) {
            if bundle.len() > MAX_PEM || parse_pem_chain(bundle)?.is_empty() {
                return Err(bad("caBundlePem holds no CERTIFICATE block"));
            }
        }
        if let Some((_, key)) = &new.eab {
            decode_hmac_key(key)?;
        }
        let account_id = Uuid::now_v7();
        let mut spec = AcmeAccountSpec {
            name: new.name,
            directory_url: new.directory_url,
            email: new.email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
            eab_kid: new.eab.as_ref().map(|(kid, _)| kid.trim().to_owned()),
            eab_hmac_key: None,
            ca_bundle_pem: new.ca_bundle_pem.filter(|b| !b.trim().is_empty()),
            terms_agreed: new.terms_agreed,
        };
        // Checked before anything is sealed, then with the sealed key in place.
        let placeholder = SecretRef { secret_id: Uuid::nil(), ciphertext: String::new() };
        let check = AcmeAccountSpec { eab_hmac_key: new.eab.as_ref().map(|_| placeholder), ..spec.clone() };
        AcmeAccount::decide(&AcmeAccountCommand::Request { account_id, spec: check }, &AcmeAccountState::Absent)?;
        if let Some((_, key)) = &new.eab {
            spec.eab_hmac_key = Some(self.vault.seal(key.trim().as_bytes()).await?);
        }
        let command = AcmeAccountCommand::Request { account_id, spec };
        let (_, appended) =
            execute::<AcmeAccount>(self.store(), &stream_of::<AcmeAccountEvent>(account_id), &command, metadata)
                .await?;
        Ok(Created { id: account_id, appended })
    }

    pub async fn account(&self, account_id: Uuid) -> Result<AcmeAccountState> {
        Ok(load::<AcmeAccount>(self.store(), &stream_of::<AcmeAccountEvent>(account_id)).await?.0)
    }

    /// Records a registration's outcome: the account URL and instant-acme's credentials JSON
    /// (sealed), or the directory's error.
    pub async fn record_registration(
        &self,
        account_id: Uuid,
        outcome: std::result::Result<(String, Zeroizing<String>), (String, Option<String>)>,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let command = match outcome {
            Ok((account_url, credentials)) => AcmeAccountCommand::RecordRegistered {
                account_url,
                credentials: self.vault.seal(credentials.as_bytes()).await?,
            },
            Err((error, problem_type)) => AcmeAccountCommand::RecordFailure { error, problem_type },
        };
        let stream = stream_of::<AcmeAccountEvent>(account_id);
        Ok(execute::<AcmeAccount>(self.store(), &stream, &command, metadata).await?.1)
    }

    /// A sealed secret for the reactor's use (an account key, an EAB, TSIG or webhook key).
    /// Not a reveal to a person: the events that use it say what it was used for.
    pub async fn open_secret(&self, secret: &SecretRef) -> Result<Zeroizing<String>> {
        let bytes = Zeroizing::new(self.vault.decrypt(secret).await?);
        let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::Corrupt(secret.secret_id))?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// Records an order for the reactor to carry out; refused unless the account is registered
    /// and the DNS provider (for DNS-01) exists.
    pub async fn request_order(
        &self,
        order_id: Uuid,
        spec: AcmeOrderSpec,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        AcmeOrder::decide(&AcmeOrderCommand::Request { order_id, spec: spec.clone() }, &AcmeOrderState::Absent)?;
        if spec.key_algorithm == X509KeyAlgorithm::Ed25519 {
            return Err(bad("ACME directories do not issue certificates for Ed25519 keys; use an ECDSA or RSA key"));
        }
        match self.account(spec.account_id).await? {
            AcmeAccountState::Absent => return Err(AcmeError::AccountNotFound.into()),
            AcmeAccountState::Registered { .. } => {}
            AcmeAccountState::Pending(_) => {
                return Err(AcmeError::AccountNotRegistered("its registration is still under way".into()).into())
            }
            AcmeAccountState::Failed { error, .. } => return Err(AcmeError::AccountNotRegistered(error).into()),
        }
        if let Some(provider_id) = spec.dns_provider_id {
            if !matches!(self.dns_provider(provider_id).await?, DnsProviderState::Active { .. }) {
                return Err(AcmeError::DnsProviderNotFound.into());
            }
        }
        let command = AcmeOrderCommand::Request { order_id, spec };
        let (_, appended) =
            execute::<AcmeOrder>(self.store(), &stream_of::<AcmeOrderEvent>(order_id), &command, metadata).await?;
        Ok(Created { id: order_id, appended })
    }

    pub async fn order(&self, order_id: Uuid) -> Result<AcmeOrderState> {
        Ok(load::<AcmeOrder>(self.store(), &stream_of::<AcmeOrderEvent>(order_id)).await?.0)
    }

    /// Records a step of a pending order.
    pub async fn progress(
        &self,
        order_id: Uuid,
        event: AcmeOrderEvent,
        metadata: &EventMetadata,
    ) -> Result<Option<Appended>> {
        let stream = stream_of::<AcmeOrderEvent>(order_id);
        Ok(execute::<AcmeOrder>(self.store(), &stream, &AcmeOrderCommand::Progress(event), metadata).await?.1)
    }

    /// The id an order's certificate gets: derived from the order, so an order carried out twice
    /// (a crash between recording the certificate and closing the order) records it once.
    pub fn certificate_id_of(order_id: Uuid) -> Uuid {
        Uuid::new_v5(&order_id, b"certificate")
    }

    /// Records the issued certificate and closes the order; a renewal also closes the renewal
    /// on the certificate it replaces.
    pub async fn complete_order(
        &self,
        order_id: Uuid,
        spec: &AcmeOrderSpec,
        chain_pem: &str,
        key: &KeyPair,
        metadata: &EventMetadata,
    ) -> Result<Uuid> {
        let certificate_id = Self::certificate_id_of(order_id);
        let recorded = self
            .x509
            .record_acme(
                certificate_id,
                spec.name.clone(),
                (spec.account_id, order_id),
                spec.key_algorithm,
                chain_pem,
                key,
                spec.renewal_of,
                metadata,
            )
            .await;
        match recorded {
            Ok(_) | Err(X509CommandError::Rejected(X509Error::Exists)) => {}
            Err(e) => return Err(e.into()),
        }
        self.progress(order_id, AcmeOrderEvent::AcmeOrderCompleted { certificate_id }, metadata).await?;
        if let Some(old) = spec.renewal_of {
            self.x509
                .certificate_command(old, CertificateCommand::RecordRenewal { replaced_by: certificate_id }, metadata)
                .await?;
        }
        Ok(certificate_id)
    }

    /// Closes the order as failed, keeping the directory's words; a renewal records the failed
    /// attempt (with its backoff and expiry warning) on the certificate it was for.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail_order(
        &self,
        order_id: Uuid,
        spec: &AcmeOrderSpec,
        error: String,
        problem_type: Option<String>,
        authorizations: Vec<AuthorizationFailure>,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<()> {
        let failed = AcmeOrderEvent::AcmeOrderFailed { error: error.clone(), problem_type, authorizations };
        self.progress(order_id, failed, metadata).await?;
        if let Some(old) = spec.renewal_of {
            self.renewal_failed(old, order_id, error, now, metadata).await?;
        }
        Ok(())
    }

    /// Records a failed renewal on `certificate_id` if `order_id` is the renewal it waits for.
    async fn renewal_failed(
        &self,
        certificate_id: Uuid,
        order_id: Uuid,
        error: String,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<()> {
        if let CertificateState::Present(data) = self.x509.certificate(certificate_id).await? {
            if data.renewal_order == Some(order_id) {
                let failure = CertificateCommand::RecordRenewalFailure { error, now };
                self.x509.certificate_command(certificate_id, failure, metadata).await?;
            }
        }
        Ok(())
    }

    /// Renews `certificate_id` if due at `now`: an internal one at once, an ACME one by ordering
    /// it again (same account, names, challenge and key type). Also settles a renewal order
    /// whose outcome never reached the certificate (a crash in between).
    pub async fn renew_if_due(
        &self,
        certificate_id: Uuid,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Renewal> {
        let CertificateState::Present(data) = self.x509.certificate(certificate_id).await? else {
            return Err(AcmeCommandError::X509(X509Error::NotFound.into()));
        };
        if let Some(order_id) = data.renewal_order {
            return match self.order(order_id).await? {
                AcmeOrderState::Pending(_) => Ok(Renewal::Ordered(order_id)),
                AcmeOrderState::Completed { certificate_id: new, .. } => {
                    let command = CertificateCommand::RecordRenewal { replaced_by: new };
                    self.x509.certificate_command(certificate_id, command, metadata).await?;
                    Ok(Renewal::Renewed(new))
                }
                AcmeOrderState::Failed { error, .. } => {
                    self.renewal_failed(certificate_id, order_id, error, now, metadata).await?;
                    Ok(Renewal::NotDue)
                }
                AcmeOrderState::Absent => self.order_renewal(certificate_id, order_id, now, metadata).await,
            };
        }
        if !data.renewal_due(now) {
            return Ok(Renewal::NotDue);
        }
        match data.source {
            CertificateSource::Internal { .. } => Ok(self
                .x509
                .renew_if_due(certificate_id, now, metadata)
                .await?
                .map_or(Renewal::NotDue, |c| Renewal::Renewed(c.id))),
            CertificateSource::Acme { .. } => {
                let order_id = Uuid::now_v7();
                let command = CertificateCommand::RequestRenewal { order_id };
                self.x509.certificate_command(certificate_id, command, metadata).await?;
                self.order_renewal(certificate_id, order_id, now, metadata).await
            }
            CertificateSource::Imported => Err(bad("Unity cannot renew an imported certificate")),
        }
    }

    /// Orders the renewal `order_id` of an ACME certificate, as the last order for it asked.
    async fn order_renewal(
        &self,
        certificate_id: Uuid,
        order_id: Uuid,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Renewal> {
        let issued = self.x509.issued(certificate_id).await?;
        let CertificateSource::Acme { account_id, order_id: made_by } = issued.source else {
            return Err(bad("only ACME certificates are renewed by an order"));
        };
        // The challenge and DNS provider come from the order that made the certificate.
        let made = match made_by {
            Some(made_by) => match self.order(made_by).await? {
                AcmeOrderState::Completed { spec, .. } => Some(*spec),
                _ => None,
            },
            None => None,
        };
        let spec = match made {
            Some(made) => AcmeOrderSpec { renewal_of: Some(certificate_id), ..made },
            None => AcmeOrderSpec {
                account_id,
                name: issued.name.clone(),
                domains: issued.facts.dns_names.clone(),
                challenge: unity_domain::acme::ChallengeKind::Http01,
                key_algorithm: issued.key_algorithm.unwrap_or(X509KeyAlgorithm::EcdsaP256),
                dns_provider_id: None,
                renewal_of: Some(certificate_id),
            },
        };
        match self.request_order(order_id, spec, metadata).await {
            Ok(_) => Ok(Renewal::Ordered(order_id)),
            Err(e) => {
                self.renewal_failed(certificate_id, order_id, e.to_string(), now, metadata).await?;
                Err(e)
            }
        }
    }

    pub async fn create_dns_provider(
        &self,
        name: String,
        new: NewDnsProvider,
        metadata: &EventMetadata,
    ) -> Result<Created> {
        let provider_id = Uuid::now_v7();
        let placeholder = || SecretRef { secret_id: Uuid::nil(), ciphertext: String::new() };
        // Checked with placeholders first: nothing is sealed for a provider that is refused.
        let config = |secret: Option<SecretRef>| match &new {
            NewDnsProvider::Rfc2136 { server, zone, tsig } => DnsProviderConfig::Rfc2136 {
                server: server.trim().to_owned(),
                zone: zone.trim().trim_end_matches('.').to_ascii_lowercase(),
                tsig_key_name: tsig.as_ref().map(|(name, _, _)| name.trim().to_owned()),
                tsig_algorithm: tsig.as_ref().map(|(_, algorithm, _)| *algorithm),
                tsig_secret: secret,
            },
            NewDnsProvider::Webhook { url, .. } => {
                DnsProviderConfig::Webhook { url: url.trim().to_owned(), bearer_token: secret }
            }
        };
        let secret_text = match &new {
            NewDnsProvider::Rfc2136 { tsig, .. } => tsig.as_ref().map(|(_, _, secret)| secret.trim().to_owned()),
            NewDnsProvider::Webhook { bearer_token, .. } => bearer_token.as_ref().map(|t| t.trim().to_owned()),
        };
        if let (NewDnsProvider::Rfc2136 { .. }, Some(secret)) = (&new, &secret_text) {
            use base64::engine::general_purpose::STANDARD;
            if STANDARD.decode(secret).map_or(true, |raw| raw.is_empty()) {
                return Err(bad("the TSIG secret must be base64 (as tsig-keygen and keymgr print it)"));
            }
        }
        let check = DnsProviderCommand::Create {
            provider_id,
            name: name.clone(),
            config: config(secret_text.as_ref().map(|_| placeholder())),
        };
        DnsProvider::decide(&check, &DnsProviderState::Absent)?;
        let sealed = match &secret_text {
            Some(text) => Some(self.vault.seal(text.as_bytes()).await?),
            None => None,
        };
        let command = DnsProviderCommand::Create { provider_id, name, config: config(sealed) };
        let stream = stream_of::<DnsProviderEvent>(provider_id);
        let (_, appended) = execute::<DnsProvider>(self.store(), &stream, &command, metadata).await?;
        Ok(Created { id: provider_id, appended })
    }

    pub async fn dns_provider(&self, provider_id: Uuid) -> Result<DnsProviderState> {
        Ok(load::<DnsProvider>(self.store(), &stream_of::<DnsProviderEvent>(provider_id)).await?.0)
    }

    /// Deletes a provider and shreds its secret.
    pub async fn delete_dns_provider(&self, provider_id: Uuid, metadata: &EventMetadata) -> Result<Option<Appended>> {
        let state = self.dns_provider(provider_id).await?;
        let stream = stream_of::<DnsProviderEvent>(provider_id);
        let (_, appended) =
            execute::<DnsProvider>(self.store(), &stream, &DnsProviderCommand::Delete, metadata).await?;
        if let DnsProviderState::Active { config, .. } = state {
            for secret in config.secrets() {
                self.vault.shred(secret.secret_id, metadata).await?;
            }
        }
        Ok(appended)
    }
}
