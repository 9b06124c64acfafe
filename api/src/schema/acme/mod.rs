//! The ACME part of the schema: accounts at ACME directories, orders (HTTP-01 and DNS-01), DNS providers.

use juniper::ID;
use unity_commands::acme::AcmeCommandError;
use unity_projections::acme::{self as read, AcmeOrderRow};
use uuid::Uuid;

use crate::{
    errors::ApiError,
    schema::{certificates, Context},
};

mod mutation;
mod query;
mod types;

pub use mutation::*;
pub use query::*;
pub use types::*;

impl From<AcmeCommandError> for ApiError {
    fn from(e: AcmeCommandError) -> ApiError {
        match e {
            AcmeCommandError::Rejected(e) => ApiError::refused(&e),
            AcmeCommandError::X509(e) => e.into(),
            AcmeCommandError::BadInput(message) => ApiError::bad_input(message),
            AcmeCommandError::Contended(_) => ApiError::contended(),
            AcmeCommandError::Corrupt(e) => ApiError::internal("acme", &e),
            AcmeCommandError::Store(e) => e.into(),
            AcmeCommandError::Vault(e) => e.into(),
        }
    }
}

pub async fn account(ctx: &Context, id: Uuid) -> Result<AcmeAccount, ApiError> {
    let row = read::account(ctx.state.store.pool(), id).await?;
    row.map(AcmeAccount::from).ok_or_else(|| ApiError::not_found("ACME account"))
}

pub async fn order(ctx: &Context, id: Uuid) -> Result<AcmeOrder, ApiError> {
    let row = read::order(ctx.state.store.pool(), id).await?.ok_or_else(|| ApiError::not_found("ACME order"))?;
    order_of(ctx, row).await
}

pub async fn order_of(ctx: &Context, r: AcmeOrderRow) -> Result<AcmeOrder, ApiError> {
    let authorizations = read::authorizations(ctx.state.store.pool(), r.order_id).await?;
    let certificate = match r.certificate_id {
        Some(id) => Some(certificates::certificate_by_id(ctx, id).await?),
        None => None,
    };
    Ok(AcmeOrder {
        id: ID::new(r.order_id.to_string()),
        account_id: ID::new(r.account_id.to_string()),
        name: r.name,
        domains: r.domains,
        challenge: r.challenge,
        key_algorithm: r.key_algorithm,
        status: order_status(&r.status),
        order_url: r.order_url,
        error: r.error,
        problem_type: r.problem_type,
        authorizations: authorizations.into_iter().map(AcmeAuthorization::from).collect(),
        renewal_of: r.renewal_of.map(|id| ID::new(id.to_string())),
        certificate,
        requested_at: r.requested_at,
        finished_at: r.finished_at,
    })
}
