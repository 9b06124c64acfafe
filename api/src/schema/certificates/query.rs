//! Internal CAs and certificates.

use juniper::ID;

use crate::{
    errors::ApiError,
    schema::{certificates, common::*, Context},
};

pub async fn certificate_authorities(ctx: &Context) -> Result<Vec<certificates::CertificateAuthority>, ApiError> {
    let rows = unity_projections::certificates::x509_cas(ctx.state.store.pool()).await?;
    Ok(rows.into_iter().map(certificates::CertificateAuthority::from).collect())
}

pub async fn certificate_authority(ctx: &Context, id: ID) -> Result<certificates::CertificateAuthority, ApiError> {
    let row = unity_projections::certificates::x509_ca(ctx.state.store.pool(), parse_id("id", &id)?).await?;
    row.map(certificates::CertificateAuthority::from).ok_or_else(|| ApiError::not_found("certificate authority"))
}

pub async fn certificates(
    ctx: &Context,
    filter: Option<certificates::CertificateFilterInput>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<certificates::CertificateConnection, ApiError> {
    let limit = page_size(first)?;
    let after = uuid_cursor("certificate", after)?;
    let f = filter.unwrap_or_default();
    if f.expiring_within_days.is_some_and(|d| !(0..=36_500).contains(&d)) {
        return Err(ApiError::bad_input("expiringWithinDays must be between 0 and 36500"));
    }
    let filter = unity_projections::certificates::CertificateFilter {
        expiring_within_days: f.expiring_within_days,
        ca_id: f.ca_id.as_ref().map(|i| parse_id("caId", i)).transpose()?,
        source: f.source.map(|s| certificates::source_text(s).to_owned()),
        status: f.status.map(|s| certificates::status_text(s).to_owned()),
    };
    let now = chrono::Utc::now();
    let expiring = ctx.state.config.expiring_days;
    let rows = unity_projections::certificates::certificates(
        ctx.state.store.pool(),
        &filter,
        now,
        expiring as i32,
        after,
        limit + 1,
    )
    .await?;
    let (page, page_info) = paginate(rows, limit, |r| encode_cursor("certificate", &r.certificate_id.to_string()));
    let mut edges: Vec<certificates::CertificateEdge> = Vec::with_capacity(page.len());
    for (cursor, r) in page {
        let node = certificates::Certificate::from_row(r, now, expiring);
        let node = certificates::with_deployments(ctx.state.store.pool(), node).await?;
        edges.push(certificates::CertificateEdge { cursor, node });
    }
    Ok(certificates::CertificateConnection { edges, page_info })
}

pub async fn certificate(ctx: &Context, id: ID) -> Result<certificates::Certificate, ApiError> {
    certificates::certificate_by_id(ctx, parse_id("id", &id)?).await
}
