//! Arming durable timers, the runtime's side of the user's
//! [`Timer`](crate::durable_future::Timer) future: a timer is a work item that becomes a
//! `TimerFired` event for its instance at its time. Armed after the commit that created
//! it ([`super::outbox`]), and again on recovery ([`super::recovery`]).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use durable_store::{Event, WorkId};

use super::engine::Engine;
use super::inbox::{Delivery, Run};

/// A timer a commit stored, to arm once the commit is durable.
#[derive(Clone, Copy, Debug)]
pub(in crate::runtime) struct TimerToArm {
    /// Its work item.
    pub(in crate::runtime) id: WorkId,
    /// The step of its instance that waits for it.
    pub(in crate::runtime) seq: u64,
    /// When it fires, in milliseconds since the Unix epoch.
    pub(in crate::runtime) fire_at_ms: u64,
}

/// Delivers `TimerFired` for `timer`'s step of `run` of `instance` at its time, never
/// earlier.
pub(in crate::runtime) fn arm(engine: &Arc<Engine>, instance: String, run: Run, timer: TimerToArm) {
    // Not tracked, and holding the runtime weakly: a pending timer must not hold up
    // shutdown or keep the store open; it is re-armed from the store on the next start.
    let weak = Arc::downgrade(engine);
    let lease = engine.lease_in_hand();
    let mut due = engine
        .clock()
        .sleep_until(UNIX_EPOCH + Duration::from_millis(timer.fire_at_ms));
    tokio::spawn(async move {
        // Awaited by reference and dropped only once the event is queued: a clock that
        // skips time counts a fired timer as work until it is let go.
        (&mut due).await;
        let Some(engine) = weak.upgrade() else {
            return;
        };
        if engine.takes_no_work() {
            return;
        }
        let fired = Event::TimerFired { seq: timer.seq };
        let delivery = Delivery::message(timer.id, run.into(), fired);
        engine.deliver_under(lease, instance, delivery);
        drop(due);
    });
}
