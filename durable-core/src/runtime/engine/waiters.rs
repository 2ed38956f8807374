//! The clients waiting for instances to finish ([`Instance::wait`](crate::Instance::wait)):
//! told, with the instance's record, when one finishes or stalls here, and told to read
//! the store when it stops being held here (another worker may finish it).

use durable_store::InstanceRecord;
use tokio::sync::oneshot;

use super::{Engine, lock};

impl Engine {
    /// Wakes every client waiting on `instance`, which finished or stalled here as
    /// `record` (durable): they need not read it back from the store.
    pub(in crate::runtime) fn notify_finished(&self, instance: &str, record: &InstanceRecord) {
        self.wake_waiters(instance, Some(record));
    }

    /// Wakes every client waiting on `instance` to read its state from the store: it is
    /// no longer held here, so nothing here will tell them when it finishes.
    pub(in crate::runtime) fn wake_waiters(&self, instance: &str, record: Option<&InstanceRecord>) {
        if let Some(waiters) = lock(&self.waiters).remove(instance) {
            for waiter in waiters {
                let _ = waiter.send(record.cloned());
            }
        }
    }

    /// A receiver told when `instance` next finishes or stalls here, with its record as
    /// then committed; or with `None` when it stops being held here (then read it).
    pub(crate) fn watch(&self, instance: &str) -> oneshot::Receiver<Option<InstanceRecord>> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        let waiting = waiters.entry(instance.to_string()).or_default();
        // Waits that timed out leave closed senders behind.
        waiting.retain(|waiter| !waiter.is_closed());
        waiting.push(tx);
        rx
    }
}
