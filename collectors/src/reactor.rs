//! What every reactor shares: the `Reactor` trait and the run loop (batches while there is work,
//! then woken by appends; the lease released and a back-off after a failure).

use std::time::Duration;

use tokio::sync::watch;
use unity_commands::{lease::Lease, wakeup::Backoff};

/// A reactor: a reader of the log that carries out requests, a batch at a time, under a lease.
pub trait Reactor: Send {
    /// What the logs call it.
    const NAME: &'static str;
    type Error: std::fmt::Display + Send;
    fn store(&self) -> &unity_commands::store::EventStore;
    /// Handles the next batch; how many events it passed (0: nothing new, or not the leader).
    fn run_once(&mut self) -> impl std::future::Future<Output = Result<usize, Self::Error>> + Send;
    fn lease(&mut self) -> &mut Lease;
}

/// Runs a reactor until `shutdown` turns true: batch after batch while there is work, then
/// woken by appends (polling every `poll` besides); after a failure it gives up its lease and
/// backs off.
pub async fn run_batches<R: Reactor>(mut reactor: R, mut shutdown: watch::Receiver<bool>, poll: Duration) {
    let mut wakeups = reactor.store().wakeup().subscribe();
    let mut backoff = Backoff::default();
    while !*shutdown.borrow() {
        let pause = match reactor.run_once().await {
            Ok(n) if n > 0 => {
                backoff.reset();
                continue;
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, reactor = R::NAME, "A reactor failed a batch; retrying.");
                reactor.lease().release();
                Some(backoff.next_pause())
            }
        };
        wakeups.idle(&mut shutdown, pause, poll).await;
    }
}
