//! Certificates: periodic renewal (internal ones at once, ACME ones by ordering), redeployment of
//! what was renewed, and expiry warnings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use unity_commands::{
    acme::{AcmeCommands, Renewal},
    certificates::X509Commands,
    credentials::CredentialCommands,
    servers::ServerCommands,
};
use unity_domain::servers::ServerRequest;

use super::{every, metadata};
use tokio::{sync::watch, task::JoinSet};
use unity_commands::Commands;

use crate::config::Settings;

pub fn spawn(tasks: &mut JoinSet<()>, commands: &Commands, settings: &Settings, shutdown: &watch::Receiver<bool>) {
    tasks.spawn(certificates_periodically(
        commands.acme.clone(),
        commands.credentials.clone(),
        settings.certificate_check_interval,
        settings.expiry_warning_days.clone(),
        shutdown.clone(),
    ));
}

/// Renews every certificate whose renewal is due at `now` (an internal one at once, an ACME
/// one by ordering it, which the ACME reactor carries out) and deploys what was renewed where
/// the old certificate is. Deployments left behind by earlier runs (an ACME renewal finished
/// since, a server that was down, a request lost in a crash) are brought up to date first.
/// Returns (renewed or ordered, failed).
pub async fn renew_due_certificates(
    acme: &AcmeCommands,
    credentials: &CredentialCommands,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let pool = acme.store().pool().clone();
    let servers = ServerCommands::new(credentials.clone());
    // First, while the read models have had a whole interval to catch up with the last run.
    redeploy_renewed(acme.x509(), &servers).await?;
    let (mut renewed, mut failed) = (0, 0);
    for certificate_id in unity_projections::certificates::renewable(&pool).await? {
        match acme.renew_if_due(certificate_id, now, &metadata()).await {
            Ok(Renewal::NotDue) => {}
            Ok(Renewal::Ordered(_)) => renewed += 1,
            Ok(Renewal::Renewed(new_id)) => {
                renewed += 1;
                redeploy(acme.x509(), &servers, certificate_id, new_id).await?;
            }
            Err(e) => {
                tracing::warn!(%certificate_id, error = %e, "A certificate renewal failed; it is retried with backoff.");
                failed += 1;
            }
        }
    }
    Ok((renewed, failed))
}

/// Deploys `new_id` with the same paths, owner, mode and reload command wherever `old_id` is.
async fn redeploy(
    x509: &X509Commands,
    servers: &ServerCommands,
    old_id: uuid::Uuid,
    new_id: uuid::Uuid,
) -> anyhow::Result<()> {
    for row in unity_projections::servers::deployments_of(x509.store().pool(), old_id).await? {
        deploy_as_before(x509, servers, row.server_id, row.deployment, new_id).await?;
    }
    Ok(())
}

/// Deploys the newest renewal of a certificate wherever an older one is still deployed, with
/// the same paths, owner, mode and reload command. Asked again at every run until it succeeds,
/// never while one is pending. Returns how many deployments were requested.
async fn redeploy_renewed(x509: &X509Commands, servers: &ServerCommands) -> anyhow::Result<usize> {
    let stale = unity_projections::servers::stale_deployments(x509.store().pool()).await?;
    let n = stale.len();
    for row in stale {
        deploy_as_before(x509, servers, row.server_id, row.deployment, row.newest_id).await?;
    }
    Ok(n)
}

/// Asks for `certificate_id` to be deployed on `server_id` as `deployment` (a recorded one) says.
async fn deploy_as_before(
    x509: &X509Commands,
    servers: &ServerCommands,
    server_id: uuid::Uuid,
    deployment: serde_json::Value,
    certificate_id: uuid::Uuid,
) -> anyhow::Result<()> {
    let mut deployment: unity_domain::servers::CertificateDeployment = serde_json::from_value(deployment)?;
    deployment.certificate_id = certificate_id;
    deployment.fingerprint = x509.facts(certificate_id).await?.fingerprint;
    servers.request(server_id, ServerRequest::DeployCertificate { deployment }, &metadata()).await?;
    Ok(())
}

/// Warns about every current certificate within one of `thresholds` days of expiry (once per
/// threshold). Returns how many certificates were checked.
pub async fn check_certificate_expiry(
    x509: &X509Commands,
    now: DateTime<Utc>,
    thresholds: &[u32],
) -> anyhow::Result<usize> {
    let widest = thresholds.iter().copied().max().unwrap_or(0) as i32;
    let ids = unity_projections::certificates::expiring_within(x509.store().pool(), now, widest).await?;
    for certificate_id in &ids {
        x509.check_expiry(*certificate_id, now, thresholds, &metadata()).await?;
    }
    Ok(ids.len())
}

async fn certificates_periodically(
    acme: AcmeCommands,
    credentials: CredentialCommands,
    renewal_interval: Duration,
    thresholds: Vec<u32>,
    shutdown: watch::Receiver<bool>,
) {
    every(renewal_interval, shutdown, "certificate renewal and expiry check", || async {
        let now = Utc::now();
        let (renewed, failed) = renew_due_certificates(&acme, &credentials, now).await?;
        let checked = check_certificate_expiry(acme.x509(), now, &thresholds).await?;
        tracing::debug!(renewed, failed, checked, "Certificate renewal and expiry check done.");
        Ok(())
    })
    .await
}
