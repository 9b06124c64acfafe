//! In-process wake-ups: appends (and LISTEN/NOTIFY or NATS, where configured) nudge readers, who
//! still poll as a fallback. A wake-up is only a hint; readers always read the store.

use std::time::Duration;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Wakeup {
    sender: watch::Sender<u64>,
}

impl Default for Wakeup {
    fn default() -> Wakeup {
        Wakeup { sender: watch::channel(0).0 }
    }
}

impl Wakeup {
    pub fn notify(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> WakeupReceiver {
        WakeupReceiver { receiver: self.sender.subscribe() }
    }
}

pub struct WakeupReceiver {
    receiver: watch::Receiver<u64>,
}

impl WakeupReceiver {
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
