//! ACME accounts, orders and DNS providers.

use juniper::ID;

use crate::{
    errors::ApiError,
    schema::{acme, common::*, Context},
};

pub async fn acme_accounts(ctx: &Context) -> Result<Vec<acme::AcmeAccount>, ApiError> {
    let rows = unity_projections::acme::accounts(ctx.state.store.pool()).await?;
    Ok(rows.into_iter().map(acme::AcmeAccount::from).collect())
}

pub async fn acme_account(ctx: &Context, id: ID) -> Result<acme::AcmeAccount, ApiError> {
    acme::account(ctx, parse_id("id", &id)?).await
}

pub async fn acme_orders(
    ctx: &Context,
    account_id: Option<ID>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<acme::AcmeOrderConnection, ApiError> {
    // An order's outcome and its certificate live in two read models: answer once both
    // have passed everything committed before this query, so a renewed certificate is never
    // seen beside its order still PENDING.
    ctx.state.settle_head().await?;
    let limit = page_size(first)?;
    let account_id = account_id.as_ref().map(|i| parse_id("accountId", i)).transpose()?;
    let after = uuid_cursor("acme_order", after)?;
    let rows = unity_projections::acme::orders(ctx.state.store.pool(), account_id, after, limit + 1).await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("acme_order", &r.order_id.to_string()));
    let mut edges = Vec::with_capacity(page.len());
    for (cursor, row) in page {
        edges.push(acme::AcmeOrderEdge { cursor, node: acme::order_of(ctx, row).await? });
    }
    Ok(acme::AcmeOrderConnection { edges, page_info })
}

pub async fn acme_order(ctx: &Context, id: ID) -> Result<acme::AcmeOrder, ApiError> {
    ctx.state.settle_head().await?; // as acmeOrders
    acme::order(ctx, parse_id("id", &id)?).await
}

pub async fn dns_providers(ctx: &Context) -> Result<Vec<acme::DnsProvider>, ApiError> {
    let rows = unity_projections::acme::dns_providers(ctx.state.store.pool()).await?;
    Ok(rows.into_iter().map(acme::DnsProvider::from).collect())
}
