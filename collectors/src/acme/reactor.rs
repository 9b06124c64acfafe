//! The ACME reactor: registers the accounts and carries out the orders recorded on
//! `acme_account` and `acme_order` streams, with instant-acme, and records each step.
//!
//! Like the SSH reactor it reads the log from its own checkpoint under an advisory-lock lease, and
//! acts on a request only while its aggregate says it is pending, so a restart neither repeats a
//! finished order nor loses a running one (a running one is ordered again from the start; the
//! certificate's id comes from the order's, so it is recorded once).
//!
//! HTTP-01 is answered by the API, from the read model: the reactor records the key
//! authorization (`AcmeChallengePublished`), waits until the responder's table has it, and only
//! then tells the directory to validate. DNS-01 goes through the order's DNS provider: an
//! RFC 2136 update or a webhook.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HyperClient},
    rt::TokioExecutor,
};
use instant_acme::{Account, AccountCredentials, BodyWrapper, ExternalAccountKey, NewAccount};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use tokio::sync::watch;
use unity_commands::{
    acme::{decode_hmac_key, AcmeCommandError, AcmeCommands},
    lease::{checkpoint, Lease},
    store::{Cursor, StoreError},
};
use unity_domain::{
    acme::{AcmeAccountEvent, AcmeAccountSpec, AcmeAccountState, AcmeOrderEvent, AuthorizationFailure},
    Actor, DomainEvent, EventMetadata, StreamId,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::reactor::{run_batches, Reactor};

pub const CHECKPOINT: &str = unity_commands::lease::ACME_REACTOR;
const BATCH: i64 = 200;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;
type Client = HyperClient<Https, BodyWrapper<Bytes>>;

#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The longest an order may take from first request to certificate.
    pub order_timeout: Duration,
    /// How long to wait for the directory to validate, and then to issue.
    pub validation_timeout: Duration,
    /// How long to wait for the API's responder to see an HTTP-01 key authorization.
    pub publish_timeout: Duration,
    /// Orders carried out at once.
    pub concurrency: usize,
}

impl Default for AcmeConfig {
    fn default() -> AcmeConfig {
        AcmeConfig {
            order_timeout: Duration::from_secs(300),
            validation_timeout: Duration::from_secs(120),
            publish_timeout: Duration::from_secs(30),
            concurrency: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeReactorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this process does not hold the ACME reactor's lease")]
    NotLeader,
    #[error("{0} outcome(s) of this batch could not be recorded; it will run again")]
    Unrecorded(usize),
}

impl From<sqlx::Error> for AcmeReactorError {
    fn from(e: sqlx::Error) -> AcmeReactorError {
        AcmeReactorError::Store(e.into())
    }
}

/// An HTTPS client trusting the system's roots and, if given, the PEM certificates of a CA
/// bundle (step-ca's root, Pebble's certificate). Plain http only reaches a directory the
/// domain allowed (one on this machine).
pub fn http_client(ca_bundle_pem: Option<&str>) -> Result<Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = ca_bundle_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("the CA bundle cannot be read: {e}"))?;
            roots.add(cert).map_err(|e| format!("the CA bundle holds a certificate rustls refuses: {e}"))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(HyperClient::builder(TokioExecutor::new()).build(https))
}

/// Why something failed, in one line: the directory's problem document, or the transport error
/// with its causes (a TLS refusal names the certificate problem).
fn describe(e: &instant_acme::Error) -> (String, Option<String>) {
    match e {
        instant_acme::Error::Api(problem) => (problem_text(problem), problem.r#type.clone()),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            (text.split_whitespace().collect::<Vec<_>>().join(" "), None)
        }
    }
}

fn problem_text(problem: &instant_acme::Problem) -> String {
    let mut text = problem.detail.clone().unwrap_or_else(|| "the directory refused".into());
    if let Some(kind) = &problem.r#type {
        text.push_str(&format!(" ({kind})"));
    }
    for sub in &problem.subproblems {
        text.push_str(&format!("; {}", sub.detail.as_deref().unwrap_or("")));
    }
    text
}

/// Why an order failed, as recorded.
struct Failure {
    error: String,
    problem_type: Option<String>,
    authorizations: Vec<AuthorizationFailure>,
}

impl Failure {
    fn new(error: impl Into<String>) -> Failure {
        Failure { error: error.into(), problem_type: None, authorizations: Vec::new() }
    }
}

impl From<&instant_acme::Error> for Failure {
    fn from(e: &instant_acme::Error) -> Failure {
        let (error, problem_type) = describe(e);
        Failure { error, problem_type, authorizations: Vec::new() }
    }
}

/// A step of an order: the directory's failure ends the order (`Ok(Err)`), Unity's own (the
/// store) leaves it pending for the next run (`Err`).
type Step<T> = Result<Result<T, Failure>, AcmeCommandError>;

macro_rules! acme {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(Failure::from(&e))),
        }
    };
}

pub struct AcmeReactor {
    acme: AcmeCommands,
    config: AcmeConfig,
    lease: Lease,
}

impl AcmeReactor {
    pub fn new(acme: AcmeCommands, config: AcmeConfig) -> AcmeReactor {
        AcmeReactor { acme, config, lease: Lease::new(CHECKPOINT) }
    }

    fn metadata(cause: &unity_commands::store::RecordedEvent) -> EventMetadata {
        let mut metadata = unity_commands::metadata(Actor::system("acme-reactor"), "reactor:acme");
        metadata.causation_id = Some(cause.event_id);
        if let Some(correlation) = cause.metadata.get("correlation_id").and_then(|v| v.as_str()) {
            metadata.correlation_id = correlation.parse().unwrap_or(metadata.correlation_id);
        }
        metadata
    }

    pub async fn checkpoint(&self) -> Result<Cursor, AcmeReactorError> {
        Ok(checkpoint(self.acme.store().pool(), CHECKPOINT).await?)
    }

    /// Handles the requests in the next batch of the log. Returns how many events it passed
    /// (0: nothing new, or another process holds the lease).
    pub async fn run_once(&mut self) -> Result<usize, AcmeReactorError> {
        let pool = self.acme.store().pool().clone();
        let types = [AcmeAccountEvent::STREAM_TYPE, AcmeOrderEvent::STREAM_TYPE];
        let Some((through, count, events)) = self.lease.next_batch(&pool, &types, BATCH).await? else {
            return Ok(0);
        };
        let mut jobs = Vec::new();
        for event in &events {
            let Ok(stream) = event.stream_id.parse::<StreamId>() else { continue };
            match event.event_type.as_str() {
                "AcmeAccountRequested" | "AcmeOrderRequested" => {
                    jobs.push((event.event_type.clone(), stream.id(), Self::metadata(event)))
                }
                _ => {}
            }
        }
        let this = &*self;
        let unrecorded = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(jobs)
            .for_each_concurrent(this.config.concurrency.max(1), |(kind, id, metadata)| {
                let unrecorded = &unrecorded;
                async move {
                    let result = if kind == "AcmeAccountRequested" {
                        this.register(id, &metadata).await
                    } else {
                        this.order(id, &metadata).await
                    };
                    if let Err(e) = result {
                        tracing::warn!(%id, error = %e, "Could not record an ACME request's outcome.");
                        unrecorded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        let unrecorded = unrecorded.into_inner();
        if unrecorded > 0 {
            return Err(AcmeReactorError::Unrecorded(unrecorded));
        }
        if !self.lease.commit(through).await? {
            return Err(AcmeReactorError::NotLeader);
        }
        Ok(count as usize)
    }

    #[tracing::instrument(name = "reactor_step", skip_all, fields(stream = %format_args!("acme_account-{account_id}")))]
    async fn register(&self, account_id: Uuid, metadata: &EventMetadata) -> Result<(), AcmeCommandError> {
        let AcmeAccountState::Pending(spec) = self.acme.account(account_id).await? else {
            return Ok(()); // done before a restart
        };
        let outcome = match tokio::time::timeout(self.config.order_timeout, self.create_account(&spec)).await {
            Ok(Ok(Ok((url, credentials)))) => Ok((url, credentials)),
            Ok(Ok(Err(failure))) => Err((failure.error, failure.problem_type)),
            Ok(Err(e @ AcmeCommandError::Store(_))) => return Err(e),
            Ok(Err(e)) => Err((e.to_string(), None)),
            Err(_) => Err((format!("the directory did not answer within {:?}", self.config.order_timeout), None)),
        };
        if let Err((error, _)) = &outcome {
            tracing::info!(%account_id, %error, "ACME account registration failed.");
        }
        self.acme.record_registration(account_id, outcome, metadata).await?;
        Ok(())
    }

    async fn create_account(&self, spec: &AcmeAccountSpec) -> Step<(String, Zeroizing<String>)> {
        let client = match http_client(spec.ca_bundle_pem.as_deref()) {
            Ok(client) => client,
            Err(e) => return Ok(Err(Failure::new(e))),
        };
        let eab = match (&spec.eab_kid, &spec.eab_hmac_key) {
            (Some(kid), Some(sealed)) => {
                let key = self.acme.open_secret(sealed).await?;
                let raw = Zeroizing::new(decode_hmac_key(&key)?);
                Some(ExternalAccountKey::new(kid.clone(), &raw))
            }
            _ => None,
        };
        let contact = spec.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new =
            NewAccount { contact: &contacts, terms_of_service_agreed: spec.terms_agreed, only_return_existing: false };
        let (account, credentials) = acme!(
            Account::builder_with_http(Box::new(client)).create(&new, spec.directory_url.clone(), eab.as_ref()).await
        );
        let json = serde_json::to_string(&credentials).map_err(|e| AcmeCommandError::Corrupt(e.to_string()))?;
        Ok(Ok((account.id().to_owned(), Zeroizing::new(json))))
    }

    /// The registered account an order is for, ready to talk to its directory.
    async fn account_for(&self, account_id: Uuid) -> Step<Account> {
        let (spec, credentials) = match self.acme.account(account_id).await? {
            AcmeAccountState::Registered { spec, credentials, .. } => (spec, credentials),
            _ => return Ok(Err(Failure::new("the ACME account is not registered"))),
        };
        let json = self.acme.open_secret(&credentials).await?;
        let credentials: AccountCredentials =
            serde_json::from_str(&json).map_err(|e| AcmeCommandError::Corrupt(e.to_string()))?;
        let client = match http_client(spec.ca_bundle_pem.as_deref()) {
            Ok(client) => client,
            Err(e) => return Ok(Err(Failure::new(e))),
        };
        Ok(Ok(acme!(Account::builder_with_http(Box::new(client)).from_credentials(credentials).await)))
    }

    /// Runs until `shutdown` turns true, woken by appends and polling every `poll` besides.
    pub async fn run(self, shutdown: watch::Receiver<bool>, poll: Duration) {
        run_batches(self, shutdown, poll).await
    }
}

impl Reactor for AcmeReactor {
    const NAME: &'static str = "ACME reactor";
    type Error = AcmeReactorError;

    fn store(&self) -> &unity_commands::store::EventStore {
        self.acme.store()
    }

    async fn run_once(&mut self) -> Result<usize, AcmeReactorError> {
        AcmeReactor::run_once(self).await
    }

    fn lease(&mut self) -> &mut Lease {
        &mut self.lease
    }
}

// After `acme!`, which it uses (macros are in scope from their definition on).
mod order;
