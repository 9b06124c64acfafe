//! The subscription root: the event stream, filtered by what the caller may read.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use juniper::{graphql_subscription, FieldError};
use unity_domain::identity::Role;

use super::{
    audit::{reader_role, Event, EventFilter},
    Context,
};
use crate::errors::ApiError;

pub struct Subscription;

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, FieldError>> + Send>>;

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
    ) -> Result<EventStream, ApiError> {
        let role = ctx.require(Role::Viewer)?.role;
        let filter = filter.unwrap_or_default();
        let gauge = ctx.state.metrics.subscriptions.clone();
        gauge.inc();
        let open = SubscriptionGuard(gauge);
        let access = ctx.access.clone();
        let watched = access.clone();
        let stream = ctx
            .state
            .tail
            .follow()
            .take_while(move |e| {
                let open = watched.as_ref().is_none_or(|a| a.observe(&e.stream_id, &e.event_type, &e.payload));
                futures::future::ready(open)
            })
            .filter_map(move |e| {
                let _open = &open;
                let role = access.as_ref().and_then(|a| a.role()).map_or(role, |now| now.min(role));
                let visible = reader_role(&e.stream_type) <= role && filter.matches(&e);
                futures::future::ready(visible.then(|| Ok(Event::from(&e))))
            });
        Ok(Box::pin(stream))
    }
}

/// Counts an open subscription for /metrics until its stream is dropped.
struct SubscriptionGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
