//! In-process wake-ups: appends (and LISTEN/NOTIFY or NATS, where configured) nudge readers, who
//! still poll as a fallback. A wake-up is only a hint; readers always read the store.

use std::time::Duration;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Wakeup {
    /// Bumped by this process's own appends.
    appended: watch::Sender<u64>,
    /// Bumped by any hint: own appends, other processes' (LISTEN), NATS.
    any: watch::Sender<u64>,
    /// Bumped when a projection in this process moved its checkpoint.
    progressed: watch::Sender<u64>,
}

impl Default for Wakeup {
    fn default() -> Wakeup {
        Wakeup { appended: watch::channel(0).0, any: watch::channel(0).0, progressed: watch::channel(0).0 }
    }
}

impl Wakeup {
    /// This process appended events.
    pub fn notify(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        self.any.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Someone else appended (a hint from LISTEN or NATS): wakes readers, is not announced again.
    pub fn notify_external(&self) {
        self.any.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A projection in this process committed a batch.
    pub fn notify_progress(&self) {
        self.progressed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// For read-your-writes waits: woken when a projection here moves.
    pub fn subscribe_progress(&self) -> WakeupReceiver {
        WakeupReceiver { receiver: self.progressed.subscribe() }
    }

    /// For readers: woken by every hint.
    pub fn subscribe(&self) -> WakeupReceiver {
        WakeupReceiver { receiver: self.any.subscribe() }
    }

    /// For the announcer: woken only by this process's own appends.
    pub fn subscribe_appends(&self) -> WakeupReceiver {
        WakeupReceiver { receiver: self.appended.subscribe() }
    }
}

pub struct WakeupReceiver {
    receiver: watch::Receiver<u64>,
}

impl WakeupReceiver {
    /// Returns at the next notification (one that came since the last call included).
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await; // the sender is gone: nothing will ever come
        }
    }

    /// Returns at the next notification, or after `fallback` (the polling interval).
    pub async fn wait(&mut self, fallback: Duration) {
        let _ = tokio::time::timeout(fallback, self.receiver.changed()).await;
    }
}

impl WakeupReceiver {
    /// A worker's idle step: sleeps `pause` if given (backing off), otherwise waits for a wake-up
    /// or `poll`; returns at once when `shutdown` changes.
    pub async fn idle(&mut self, shutdown: &mut watch::Receiver<bool>, pause: Option<Duration>, poll: Duration) {
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = async {
                match pause {
                    Some(p) => tokio::time::sleep(p).await,
                    None => self.wait(poll).await,
                }
            } => {}
        }
    }
}

/// Exponential backoff for a worker whose dependency is away: 200 ms, doubling, at most 30 s.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }

    /// The pause to take now; the following one is twice as long.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        pause
    }
}
