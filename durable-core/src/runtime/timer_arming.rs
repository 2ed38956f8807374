//! Durable timers: a timer is a work item that becomes a `TimerFired` event for its
//! instance at its time. Armed after the commit that created it, and again on recovery.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use durable_store::{Event, Incarnation, WorkId};

use crate::runtime::{Delivery, Shared};

impl Shared {
    /// Delivers `TimerFired` for step `seq` of run `(incarnation, generation)` of
    /// `instance` at `fire_at_ms`, never earlier.
    pub(crate) fn arm_timer(
        self: &Arc<Self>,
        id: WorkId,
        instance: String,
        (incarnation, generation): (Incarnation, u32),
        seq: u64,
        fire_at_ms: u64,
    ) {
        // Not tracked, and holding the runtime weakly: a pending timer must not hold up
        // shutdown or keep the store open; it is re-armed from the store on the next start.
        let shared = Arc::downgrade(self);
        let mut due = self
            .clock
            .sleep_until(UNIX_EPOCH + Duration::from_millis(fire_at_ms));
        tokio::spawn(async move {
            // Awaited by reference and dropped only once the event is queued: a clock that
            // skips time counts a fired timer as work until it is let go.
            (&mut due).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if shared.takes_no_work() {
                return;
            }
            let delivery = Delivery {
                id,
                incarnation,
                generation: Some(generation),
                event: Event::TimerFired { seq },
                progress_key: None,
                undecodable: None,
            };
            shared.deliver(instance, delivery);
            drop(due);
        });
    }
}
