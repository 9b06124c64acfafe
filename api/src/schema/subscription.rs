//! The subscription root: each field is the access check plus one call into its domain, over
//! the one live feed of the log, which follows the caller's access event by event.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use juniper::{graphql_subscription, FieldError, ID};
use unity_domain::identity::Role;

use super::{
    audit::{self, Event, EventFilter},
    monitoring::{self, ServerSample},
    Context,
};
use crate::{errors::ApiError, tail::LiveEvent};

pub struct Subscription;

pub(super) type Live<T> = Pin<Box<dyn Stream<Item = Result<T, FieldError>> + Send>>;

#[graphql_subscription(context = Context)]
impl Subscription {
    /// Every event appended from now on that matches `filter` and that the caller may read, in
    /// log order, each once.
    ///
    /// On a WebSocket the stream follows the connection token's access event by event: it ends
    /// at the event that ends that access (logout, revocation, a disabled user, a password
    /// change), and a lowered role narrows what it delivers from the role change on.
    async fn events(
        ctx: &Context,
        #[graphql(description = "Only events of these stream types and event types (each list, when given).")]
        filter: Option<EventFilter>,
    ) -> Result<Live<Event>, ApiError> {
        audit::events(ctx, ctx.require(Role::Viewer)?, filter)
    }

    /// Each sample of these servers recorded from now on, as its poll is recorded; it ends as
    /// `events` does when the caller's access ends.
    async fn server_samples(
        ctx: &Context,
        #[graphql(description = "The servers (at most 100).")] server_ids: Vec<ID>,
    ) -> Result<Live<ServerSample>, ApiError> {
        monitoring::server_samples(ctx, ctx.require(Role::Viewer)?, server_ids).await
    }
}

/// The log from now on as `ctx`'s caller may follow it, starting with `role`: each event with
/// the role its reader has at that event (a lowered role narrows from the change on), ending
/// at the event that ends the caller's access; counted on /metrics while open.
pub(super) fn live(ctx: &Context, role: Role) -> impl Stream<Item = (LiveEvent, Role)> + Send + 'static {
    let gauge = ctx.state.metrics.subscriptions.clone();
    gauge.inc();
    let open = SubscriptionGuard(gauge);
    let access = ctx.access.clone();
    let watched = access.clone();
    ctx.state
        .tail
        .follow()
        .take_while(move |e| {
            let open = watched.as_ref().is_none_or(|a| a.observe(&e.stream_id, &e.event_type, &e.payload));
            futures::future::ready(open)
        })
        .map(move |e| {
            let _open = &open;
            let role = access.as_ref().and_then(|a| a.role()).map_or(role, |now| now.min(role));
            (e, role)
        })
}

/// Counts an open subscription for /metrics until its stream is dropped.
struct SubscriptionGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
