//! ACME accounts, orders (with each identifier's authorization), the HTTP-01 key authorizations
//! Unity serves while an order runs, and DNS providers.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use unity_commands::store::RecordedEvent;
use unity_domain::{
    acme::{AcmeAccountEvent, AcmeOrderEvent, ChallengeKind, DnsProviderConfig, DnsProviderEvent},
    DomainEvent, StreamId,
};
use uuid::Uuid;

use crate::engine::{ApplyError, Batch, Projection};

pub struct AcmeProjection;

impl Projection for AcmeProjection {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn model_version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["acme_accounts", "acme_orders", "acme_authorizations", "acme_http_challenges", "dns_providers"]
    }

    fn create_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE acme_accounts (
                account_id    uuid        PRIMARY KEY,
                name          text        NOT NULL,
                directory_url text        NOT NULL,
                email         text,
                eab_kid       text,
                has_ca_bundle boolean     NOT NULL,
                status        text        NOT NULL,
                account_url   text,
                error         text,
                problem_type  text,
                created_at    timestamptz NOT NULL,
                registered_at timestamptz)",
            "CREATE TABLE acme_orders (
                order_id      uuid        PRIMARY KEY,
                account_id    uuid        NOT NULL,
                name          text        NOT NULL,
                domains       text[]      NOT NULL,
                challenge     text        NOT NULL,
                key_algorithm text        NOT NULL,
                dns_provider_id uuid,
                renewal_of    uuid,
                status        text        NOT NULL,
                order_url     text,
                certificate_id uuid,
                error         text,
                problem_type  text,
                requested_at  timestamptz NOT NULL,
                finished_at   timestamptz)",
            "CREATE TABLE acme_authorizations (
                order_id      uuid        NOT NULL,
                domain        text        NOT NULL,
                status        text        NOT NULL,
                token         text,
                record        text,
                error         text,
                problem_type  text,
                PRIMARY KEY (order_id, domain))",
            // Only while the order runs: the responder must not answer for finished orders.
            "CREATE TABLE acme_http_challenges (
                token         text        PRIMARY KEY,
                key_authorization text    NOT NULL,
                order_id      uuid        NOT NULL)",
            "CREATE TABLE dns_providers (
                provider_id   uuid        PRIMARY KEY,
                name          text        NOT NULL,
                kind          text        NOT NULL,
                server        text,
                zone          text,
                tsig_key_name text,
                tsig_algorithm text,
                url           text,
                has_secret    boolean     NOT NULL,
                created_at    timestamptz NOT NULL,
                deleted_at    timestamptz)",
        ]
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        &["CREATE INDEX acme_orders_by_account ON acme_orders (account_id, order_id)"]
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(&[AcmeAccountEvent::STREAM_TYPE, AcmeOrderEvent::STREAM_TYPE, DnsProviderEvent::STREAM_TYPE])
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, batch: &'a Batch<'a>) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in batch.events {
                let id = e
                    .stream_id
                    .parse::<StreamId>()
                    .map_err(|reason| ApplyError::Poison { event_id: e.event_id, reason })?
                    .id();
                match e.stream_type.as_str() {
                    AcmeAccountEvent::STREAM_TYPE => apply_account(conn, e, id).await?,
                    AcmeOrderEvent::STREAM_TYPE => apply_order(conn, e, id).await?,
                    DnsProviderEvent::STREAM_TYPE => apply_provider(conn, e, id).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

async fn apply_account(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<AcmeAccountEvent>()? {
        AcmeAccountEvent::AcmeAccountRequested { spec, .. } => {
            sqlx::query(
                "INSERT INTO acme_accounts (account_id, name, directory_url, email, eab_kid, has_ca_bundle, status, \
                 created_at) VALUES ($1,$2,$3,$4,$5,$6,'PENDING',$7) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(spec.name)
            .bind(spec.directory_url)
            .bind(spec.email)
            .bind(spec.eab_kid)
            .bind(spec.ca_bundle_pem.is_some())
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        AcmeAccountEvent::AcmeAccountRegistered { account_url, .. } => {
            sqlx::query(
                "UPDATE acme_accounts SET status = 'REGISTERED', account_url = $2, registered_at = $3 \
                 WHERE account_id = $1",
            )
            .bind(id)
            .bind(account_url)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        AcmeAccountEvent::AcmeAccountRegistrationFailed { error, problem_type } => {
            sqlx::query(
                "UPDATE acme_accounts SET status = 'FAILED', error = $2, problem_type = $3 WHERE account_id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(problem_type)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_order(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<AcmeOrderEvent>()? {
        AcmeOrderEvent::AcmeOrderRequested { spec, .. } => {
            sqlx::query(
                "INSERT INTO acme_orders (order_id, account_id, name, domains, challenge, key_algorithm, dns_provider_id, \
                 renewal_of, status, requested_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'PENDING',$9) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(spec.account_id)
            .bind(spec.name)
            .bind(&spec.domains)
            .bind(spec.challenge.as_str())
            .bind(spec.key_algorithm.as_str())
            .bind(spec.dns_provider_id)
            .bind(spec.renewal_of)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
            for domain in &spec.domains {
                sqlx::query(
                    "INSERT INTO acme_authorizations (order_id, domain, status) VALUES ($1,$2,'PENDING') \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(domain)
                .execute(&mut *conn)
                .await?;
            }
        }
        AcmeOrderEvent::AcmeOrderCreated { order_url } => {
            sqlx::query("UPDATE acme_orders SET order_url = $2 WHERE order_id = $1")
                .bind(id)
                .bind(order_url)
                .execute(&mut *conn)
                .await?;
        }
        AcmeOrderEvent::AcmeChallengePublished { domain, challenge, token, key_authorization, record } => {
            sqlx::query("UPDATE acme_authorizations SET token = $3, record = $4 WHERE order_id = $1 AND domain = $2")
                .bind(id)
                .bind(&domain)
                .bind(&token)
                .bind(record)
                .execute(&mut *conn)
                .await?;
            if challenge == ChallengeKind::Http01 {
                sqlx::query(
                    "INSERT INTO acme_http_challenges (token, key_authorization, order_id) VALUES ($1,$2,$3) \
                     ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization, \
                     order_id = EXCLUDED.order_id",
                )
                .bind(token)
                .bind(key_authorization)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            }
        }
        AcmeOrderEvent::AcmeAuthorizationValid { domain } => {
            sqlx::query("UPDATE acme_authorizations SET status = 'VALID' WHERE order_id = $1 AND domain = $2")
                .bind(id)
                .bind(domain)
                .execute(&mut *conn)
                .await?;
        }
        AcmeOrderEvent::AcmeOrderCompleted { certificate_id } => {
            sqlx::query(
                "UPDATE acme_orders SET status = 'VALID', certificate_id = $2, finished_at = $3 WHERE order_id = $1",
            )
            .bind(id)
            .bind(certificate_id)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE acme_authorizations SET status = 'VALID' WHERE order_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            finish(conn, id).await?;
        }
        AcmeOrderEvent::AcmeOrderFailed { error, problem_type, authorizations } => {
            sqlx::query(
                "UPDATE acme_orders SET status = 'INVALID', error = $2, problem_type = $3, finished_at = $4 \
                 WHERE order_id = $1",
            )
            .bind(id)
            .bind(error)
            .bind(problem_type)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
            for failure in authorizations {
                sqlx::query(
                    "UPDATE acme_authorizations SET status = 'INVALID', error = $3, problem_type = $4 \
                     WHERE order_id = $1 AND domain = $2",
                )
                .bind(id)
                .bind(failure.domain)
                .bind(failure.error)
                .bind(failure.problem_type)
                .execute(&mut *conn)
                .await?;
            }
            finish(conn, id).await?;
        }
    }
    Ok(())
}

/// A finished order's challenges are answered no more.
async fn finish(conn: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM acme_http_challenges WHERE order_id = $1").bind(order_id).execute(&mut *conn).await?;
    Ok(())
}

async fn apply_provider(conn: &mut PgConnection, e: &RecordedEvent, id: Uuid) -> Result<(), ApplyError> {
    match e.decode::<DnsProviderEvent>()? {
        DnsProviderEvent::DnsProviderCreated { name, config, .. } => {
            let has_secret = !config.secrets().is_empty();
            let (server, zone, key_name, algorithm, url) = match &config {
                DnsProviderConfig::Rfc2136 { server, zone, tsig_key_name, tsig_algorithm, .. } => (
                    Some(server.clone()),
                    Some(zone.clone()),
                    tsig_key_name.clone(),
                    tsig_algorithm.map(|a| serde_json::to_value(a).ok()?.as_str().map(str::to_owned)).flatten(),
                    None,
                ),
                DnsProviderConfig::Webhook { url, .. } => (None, None, None, None, Some(url.clone())),
            };
            sqlx::query(
                "INSERT INTO dns_providers (provider_id, name, kind, server, zone, tsig_key_name, tsig_algorithm, url, \
                 has_secret, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(config.kind())
            .bind(server)
            .bind(zone)
            .bind(key_name)
            .bind(algorithm)
            .bind(url)
            .bind(has_secret)
            .bind(e.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        DnsProviderEvent::DnsProviderDeleted {} => {
            sqlx::query("UPDATE dns_providers SET deleted_at = $2 WHERE provider_id = $1")
                .bind(id)
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AcmeAccountRow {
    pub account_id: Uuid,
    pub name: String,
    pub directory_url: String,
    pub email: Option<String>,
    pub eab_kid: Option<String>,
    pub has_ca_bundle: bool,
    pub status: String,
    pub account_url: Option<String>,
    pub error: Option<String>,
    pub problem_type: Option<String>,
    pub created_at: DateTime<Utc>,
    pub registered_at: Option<DateTime<Utc>>,
}

pub async fn accounts(pool: &PgPool) -> Result<Vec<AcmeAccountRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM acme_accounts ORDER BY name, account_id").fetch_all(pool).await
}

pub async fn account(pool: &PgPool, id: Uuid) -> Result<Option<AcmeAccountRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM acme_accounts WHERE account_id = $1").bind(id).fetch_optional(pool).await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AcmeOrderRow {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub domains: Vec<String>,
    pub challenge: String,
    pub key_algorithm: String,
    pub dns_provider_id: Option<Uuid>,
    pub renewal_of: Option<Uuid>,
    pub status: String,
    pub order_url: Option<String>,
    pub certificate_id: Option<Uuid>,
    pub error: Option<String>,
    pub problem_type: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn order(pool: &PgPool, id: Uuid) -> Result<Option<AcmeOrderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM acme_orders WHERE order_id = $1").bind(id).fetch_optional(pool).await
}

/// Orders, newest first; of one account if given.
pub async fn orders(
    pool: &PgPool,
    account_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AcmeOrderRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM acme_orders WHERE ($1::uuid IS NULL OR account_id = $1) AND ($2::uuid IS NULL OR order_id < $2) \
         ORDER BY order_id DESC LIMIT $3",
    )
    .bind(account_id)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuthorizationRow {
    pub order_id: Uuid,
    pub domain: String,
    pub status: String,
    pub token: Option<String>,
    pub record: Option<String>,
    pub error: Option<String>,
    pub problem_type: Option<String>,
}

pub async fn authorizations(pool: &PgPool, order_id: Uuid) -> Result<Vec<AuthorizationRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM acme_authorizations WHERE order_id = $1 ORDER BY domain")
        .bind(order_id)
        .fetch_all(pool)
        .await
}

/// The key authorization to answer an HTTP-01 fetch of `token` with, while its order runs.
pub async fn http_challenge(pool: &PgPool, token: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT key_authorization FROM acme_http_challenges WHERE token = $1")
        .bind(token)
        .fetch_optional(pool)
        .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DnsProviderRow {
    pub provider_id: Uuid,
    pub name: String,
    pub kind: String,
    pub server: Option<String>,
    pub zone: Option<String>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub url: Option<String>,
    pub has_secret: bool,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub async fn dns_providers(pool: &PgPool) -> Result<Vec<DnsProviderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM dns_providers WHERE deleted_at IS NULL ORDER BY name, provider_id")
        .fetch_all(pool)
        .await
}

pub async fn dns_provider(pool: &PgPool, id: Uuid) -> Result<Option<DnsProviderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM dns_providers WHERE provider_id = $1").bind(id).fetch_optional(pool).await
}

/// ACME orders by status, for /metrics.
pub async fn order_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM acme_orders GROUP BY status ORDER BY status").fetch_all(pool).await
}
