//! Carrying out an order: the ACME exchange, each challenge published (HTTP-01 by this
//! API's responder, DNS-01 through a provider) and the certificate recorded.

use std::time::Duration;

use chrono::Utc;
use instant_acme::{
    AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use unity_commands::{acme::AcmeCommandError, store::StoreError};
use unity_domain::{
    acme::{
        AcmeOrderEvent, AcmeOrderSpec, AcmeOrderState, AuthorizationFailure, ChallengeKind, DnsProviderConfig,
        DnsProviderState, TsigAlgorithm,
    },
    EventMetadata,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::*;
use crate::acme::dns::{self, Rfc2136, TsigKey};

impl AcmeReactor {
    pub(super) async fn provider(&self, provider_id: Uuid) -> Step<Provider> {
        let DnsProviderState::Active { config, .. } = self.acme.dns_provider(provider_id).await? else {
            return Ok(Err(Failure::new("the DNS provider was deleted")));
        };
        Ok(Ok(match config {
            DnsProviderConfig::Rfc2136 { server, zone, tsig_key_name, tsig_algorithm, tsig_secret } => {
                let address = match tokio::net::lookup_host(server.as_str()).await.ok().and_then(|mut a| a.next()) {
                    Some(address) => address,
                    None => return Ok(Err(Failure::new(format!("the DNS server {server} cannot be resolved")))),
                };
                let key = match (tsig_key_name, tsig_algorithm, tsig_secret) {
                    (Some(name), Some(algorithm), Some(sealed)) => {
                        use base64::{engine::general_purpose::STANDARD, Engine};
                        let text = self.acme.open_secret(&sealed).await?;
                        let secret = STANDARD
                            .decode(text.as_bytes())
                            .map_err(|_| AcmeCommandError::Corrupt("a TSIG secret is not base64".into()))?;
                        let algorithm = match algorithm {
                            TsigAlgorithm::HmacSha256 => dns::TsigAlgorithm::HmacSha256,
                            TsigAlgorithm::HmacSha512 => dns::TsigAlgorithm::HmacSha512,
                        };
                        Some(TsigKey { name, algorithm, secret })
                    }
                    _ => None,
                };
                Provider::Rfc2136(Rfc2136 { server: address, zone, key, timeout: Duration::from_secs(10) })
            }
            DnsProviderConfig::Webhook { url, bearer_token } => {
                let bearer_token = match bearer_token {
                    Some(sealed) => Some(self.acme.open_secret(&sealed).await?),
                    None => None,
                };
                match http_client(None) {
                    Ok(client) => Provider::Webhook { url, bearer_token, client: Box::new(client) },
                    Err(e) => return Ok(Err(Failure::new(e))),
                }
            }
        }))
    }

    #[tracing::instrument(name = "reactor_step", skip_all, fields(stream = %format_args!("acme_order-{order_id}")))]
    pub(super) async fn order(&self, order_id: Uuid, metadata: &EventMetadata) -> Result<(), AcmeCommandError> {
        let AcmeOrderState::Pending(spec) = self.acme.order(order_id).await? else {
            return Ok(()); // finished before a restart
        };
        let mut published: Vec<(String, String, String)> = Vec::new();
        let mut provider = None;
        let outcome = tokio::time::timeout(
            self.config.order_timeout,
            self.obtain(order_id, &spec, metadata, &mut provider, &mut published),
        )
        .await
        .unwrap_or_else(|_| {
            Ok(Err(Failure::new(format!("the order did not finish within {:?}", self.config.order_timeout))))
        });
        // DNS records come down whatever happened; a failure to remove one is only logged.
        if let Some(provider) = &provider {
            for (domain, fqdn, value) in &published {
                if let Err(e) = provider.cleanup(domain, fqdn, value).await {
                    tracing::warn!(%order_id, %fqdn, error = %e, "Could not remove a DNS-01 record.");
                }
            }
        }
        // Only the store failing leaves the order pending for another run; anything else about
        // it (a sealed secret that cannot be read, a key Unity could not make) fails this order
        // instead of stopping every order behind it.
        let outcome = match outcome {
            Err(e @ AcmeCommandError::Store(_)) => return Err(e),
            Err(e) => Err(Failure::new(e.to_string())),
            Ok(outcome) => outcome,
        };
        match outcome {
            Ok((chain, key)) => {
                let certificate_id = self.acme.complete_order(order_id, &spec, &chain, &key, metadata).await?;
                tracing::info!(%order_id, %certificate_id, domains = ?spec.domains, "ACME certificate issued.");
            }
            Err(failure) => {
                tracing::info!(%order_id, error = %failure.error, "ACME order failed.");
                let Failure { error, problem_type, authorizations } = failure;
                self.acme
                    .fail_order(order_id, &spec, error, problem_type, authorizations, Utc::now(), metadata)
                    .await?;
            }
        }
        Ok(())
    }

    /// Orders, answers every authorization's challenge, finalizes with a key of ours, and
    /// downloads the chain.
    pub(super) async fn obtain(
        &self,
        order_id: Uuid,
        spec: &AcmeOrderSpec,
        metadata: &EventMetadata,
        provider: &mut Option<Provider>,
        published: &mut Vec<(String, String, String)>,
    ) -> Step<(String, rcgen::KeyPair)> {
        let account = match self.account_for(spec.account_id).await? {
            Ok(account) => account,
            Err(failure) => return Ok(Err(failure)),
        };
        if let Some(provider_id) = spec.dns_provider_id {
            *provider = match self.provider(provider_id).await? {
                Ok(p) => Some(p),
                Err(failure) => return Ok(Err(failure)),
            };
        }
        let identifiers: Vec<Identifier> = spec.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = acme!(account.new_order(&NewOrder::new(&identifiers)).await);
        let created = AcmeOrderEvent::AcmeOrderCreated { order_url: order.url().to_owned() };
        self.acme.progress(order_id, created, metadata).await?;

        let kind = match spec.challenge {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::Dns01 => ChallengeType::Dns01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = acme!(authorization);
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => {
                    self.acme.progress(order_id, AcmeOrderEvent::AcmeAuthorizationValid { domain }, metadata).await?;
                    continue;
                }
                status => {
                    return Ok(Err(Failure::new(format!("the authorization for {domain} is {status:?}"))));
                }
            }
            let Some(mut challenge) = authorization.challenge(kind.clone()) else {
                return Ok(Err(Failure::new(format!("the directory offers no {kind:?} challenge for {domain}"))));
            };
            let token = challenge.token.clone();
            let key_authorization = challenge.key_authorization();
            let (value, record) = match spec.challenge {
                ChallengeKind::Http01 => (key_authorization.as_str().to_owned(), None),
                ChallengeKind::Dns01 => {
                    // A wildcard's record is at the bare name.
                    let bare = match challenge.identifier().identifier {
                        Identifier::Dns(name) => name.clone(),
                        _ => domain.clone(),
                    };
                    let fqdn = format!("_acme-challenge.{bare}.");
                    let value = key_authorization.dns_value();
                    let Some(provider) = provider.as_ref() else {
                        return Ok(Err(Failure::new("DNS01 needs a DNS provider")));
                    };
                    if let Err(e) = provider.present(&domain, &fqdn, &value).await {
                        return Ok(Err(Failure::new(format!("publishing the DNS-01 record for {domain}: {e}"))));
                    }
                    published.push((domain.clone(), fqdn.clone(), value.clone()));
                    (value, Some(fqdn))
                }
            };
            let event = AcmeOrderEvent::AcmeChallengePublished {
                domain: domain.clone(),
                challenge: spec.challenge,
                token: token.clone(),
                key_authorization: value,
                record,
            };
            self.acme.progress(order_id, event, metadata).await?;
            if spec.challenge == ChallengeKind::Http01 && !self.served(&token).await? {
                return Ok(Err(Failure::new(format!(
                    "the HTTP-01 responder did not have the key authorization for {domain} within {:?}; \
                     are the API and projections running?",
                    self.config.publish_timeout
                ))));
            }
            acme!(challenge.set_ready().await);
        }

        let retries = RetryPolicy::new().timeout(self.config.validation_timeout);
        let status = order.poll_ready(&retries).await;
        // Each identifier's fate, as the directory tells it, whatever the order's status.
        let mut failures = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(authorization)) = authorizations.next().await {
            let domain = authorization.identifier().to_string();
            if authorization.status == AuthorizationStatus::Valid {
                self.acme.progress(order_id, AcmeOrderEvent::AcmeAuthorizationValid { domain }, metadata).await?;
                continue;
            }
            for problem in authorization.challenges.iter().filter_map(|c| c.error.as_ref()) {
                failures.push(AuthorizationFailure {
                    domain: domain.clone(),
                    error: problem_text(problem),
                    problem_type: problem.r#type.clone(),
                });
            }
        }
        let failed = |mut failure: Failure, failures: Vec<AuthorizationFailure>| {
            failure.authorizations = failures;
            Ok(Err(failure))
        };
        match status {
            Ok(OrderStatus::Ready) => {}
            Ok(status) => {
                let error = match failures.first() {
                    Some(first) => format!("the order is {status:?}: {}: {}", first.domain, first.error),
                    None => format!("the order is {status:?}"),
                };
                return failed(Failure::new(error), failures);
            }
            Err(e) => return failed(Failure::from(&e), failures),
        }

        let (key, csr) = unity_commands::certificates::key_and_csr(&spec.domains, spec.key_algorithm).await?;
        acme!(order.finalize_csr(&csr).await);
        let chain = acme!(order.poll_certificate(&retries).await);
        Ok(Ok((chain, key)))
    }

    /// Waits until the API's responder can answer for `token`.
    pub(super) async fn served(&self, token: &str) -> Result<bool, AcmeCommandError> {
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        let mut progress = self.acme.store().wakeup().subscribe_progress();
        loop {
            // The responder answers from the acme projection; ask the module that owns its table.
            let found = unity_projections::acme::http_challenge(self.acme.store().pool(), token)
                .await
                .map_err(StoreError::from)?;
            if found.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            // Woken by this process's projections; polled for projections running elsewhere.
            let _ = tokio::time::timeout(Duration::from_millis(100), progress.changed()).await;
        }
    }
}

/// Where DNS-01 records go.
pub(super) enum Provider {
    Rfc2136(Rfc2136),
    Webhook { url: String, bearer_token: Option<Zeroizing<String>>, client: Box<Client> },
}

impl Provider {
    async fn present(&self, domain: &str, fqdn: &str, value: &str) -> Result<(), String> {
        match self {
            Provider::Rfc2136(server) => server.add_txt(fqdn, value, 60).await.map_err(|e| e.to_string()),
            Provider::Webhook { .. } => self.call("present", domain, fqdn, value).await,
        }
    }

    async fn cleanup(&self, domain: &str, fqdn: &str, value: &str) -> Result<(), String> {
        match self {
            Provider::Rfc2136(server) => server.remove_txt(fqdn, value).await.map_err(|e| e.to_string()),
            Provider::Webhook { .. } => self.call("cleanup", domain, fqdn, value).await,
        }
    }

    /// POSTs `{"action", "domain", "fqdn", "value"}`; any 2xx is success.
    async fn call(&self, action: &str, domain: &str, fqdn: &str, value: &str) -> Result<(), String> {
        let Provider::Webhook { url, bearer_token, client } = self else { unreachable!("webhook only") };
        let body = serde_json::json!({ "action": action, "domain": domain, "fqdn": fqdn, "value": value });
        let mut request = http::Request::builder().method("POST").uri(url).header("content-type", "application/json");
        if let Some(token) = bearer_token {
            request = request.header("authorization", format!("Bearer {}", token.as_str()));
        }
        let request = request.body(BodyWrapper::from(body.to_string().into_bytes())).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), HttpClient::request(client.as_ref(), request))
            .await
            .map_err(|_| format!("the DNS webhook {url} did not answer within 30 s"))?;
        let mut response = response.map_err(|e| format!("the DNS webhook {url} failed: {}", describe(&e).0))?;
        if !response.parts.status.is_success() {
            let body = response.body.into_bytes().await.unwrap_or_default();
            let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(format!(
                "the DNS webhook {url} answered {} to {action}: {}",
                response.parts.status,
                text.trim()
            ));
        }
        Ok(())
    }
}
