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
