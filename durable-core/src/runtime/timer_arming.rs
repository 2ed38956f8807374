//! Arming durable timers, the runtime's side of the user's
//! [`Timer`](crate::durable_future::Timer) future: a timer is a work item that becomes a
//! `TimerFired` event for its instance at its time. Armed after the commit that created
//! it ([`super::outbox`]), and again on recovery ([`super::recovery`]).
//!
//! Two steps no orchestrator issues are reserved for the runtime's own timers, the start
//! options of `Client::start_with`: [`START_SEQ`], a delayed start, whose firing becomes
//! the instance's `Started` (rebuilt from its record by the turn, see
//! [`super::turn_plan`]); and [`DEADLINE_SEQ`], an execution deadline, whose firing is
//! delivered as `Event::ExecutionTimedOut` to whichever generation then runs (the
//! deadline spans continue-as-new, so one timer serves the whole chain).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use durable_store::{Commit, Event, WorkId, WorkItem};

use super::engine::Engine;
use super::inbox::{Delivery, Recipient, Run};
use super::outbox::Outbox;

/// The step of a delayed start's timer (generation 0): its firing starts the instance.
pub(crate) const START_SEQ: u64 = u64::MAX;

/// The step of an execution deadline's timer: its firing times the instance out.
pub(crate) const DEADLINE_SEQ: u64 = u64::MAX - 1;

/// A timer a commit stored, to arm once the commit is durable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerToArm {
    /// Its work item.
    pub(crate) id: WorkId,
    /// The step of its instance that waits for it.
    pub(crate) seq: u64,
    /// When it fires, in milliseconds since the Unix epoch.
    pub(crate) fire_at_ms: u64,
}

/// Delivers `TimerFired` for `timer`'s step of `run` of `instance` at its time, never
/// earlier.
pub(crate) fn arm(engine: &Arc<Engine>, instance: String, run: Run, timer: TimerToArm) {
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
        if timer.seq == START_SEQ && released(&engine, &instance, run).await {
            start_released(&engine, &instance, run, timer.id).await;
            drop(due);
            return;
        }
        let delivery = match timer.seq {
            // To any generation: the deadline spans the chain of continue-as-new.
            DEADLINE_SEQ => Delivery::message(
                timer.id,
                Recipient::any_generation(run.incarnation),
                Event::ExecutionTimedOut,
            ),
            seq => Delivery::message(timer.id, run.into(), Event::TimerFired { seq }),
        };
        engine.deliver_under(lease, instance, delivery);
        drop(due);
    });
}

/// Whether delayed start `run` of `instance` waits, pending, in the store for a claim,
/// not held here: its start was left for a claim (an orchestrator with `max_running`, or
/// one this worker lacks on a shared store), as an undelayed start leaves its `Started`.
/// (The store is read off the runtime's threads, and only for an instance not held here.)
async fn released(engine: &Engine, instance: &str, run: Run) -> bool {
    if engine.holds(instance) {
        return false;
    }
    let (store, id) = (engine.store_arc(), instance.to_string());
    let record = tokio::task::spawn_blocking(move || store.instance(&id)).await;
    matches!(
        record,
        Ok(Ok(Some(record))) if matches!(record.status, durable_store::Status::Pending)
            && record.incarnation == run.incarnation
    )
}

/// The time of delayed start `run` of `instance`, which waits for a claim, came: its
/// timer becomes a message left in the store, which the claim takes as it takes an
/// undelayed start's `Started` (so the instance counts against `max_running` from its
/// start time on, not while it waits). Delivered by this worker, the timer would find
/// no holder and stay in the store, never to fire.
async fn start_released(engine: &Arc<Engine>, instance: &str, run: Run, timer: WorkId) {
    let commit = Commit {
        dequeued: vec![timer],
        ..Commit::default()
    };
    let fired = Event::TimerFired { seq: START_SEQ };
    if let Err(e) = engine
        .send_message(instance, run.into(), fired, commit)
        .await
    {
        // The timer stays in the store: a claim (this worker's next start, or another
        // worker's) takes the instance with it and arms it again.
        tracing::warn!(instance, error = %e, "a delayed start's time came but was not recorded");
    }
}

/// Stores and arms the timer of execution deadline `at_ms` of `run` (its first
/// generation) of `instance`, if the turn brought one: one timer for the whole chain of
/// generations, fired as `Event::ExecutionTimedOut` to whichever runs then.
pub(in crate::runtime) fn store_deadline(
    engine: &Engine,
    instance: &str,
    run: Run,
    at_ms: Option<u64>,
    commit: &mut Commit,
    outbox: &mut Outbox,
) {
    let Some(fire_at_ms) = at_ms else {
        return;
    };
    let timer = store_timer(engine, instance, run, DEADLINE_SEQ, fire_at_ms, commit);
    outbox.timers.push(timer);
}

/// Stores in `commit` the timer of a delayed start of `run` (its first generation) of
/// `instance` at `at_ms` (milliseconds since the Unix epoch), to [`arm`] once `commit` is
/// durable: its firing brings the instance's `Started`.
pub(crate) fn store_start(
    engine: &Engine,
    instance: &str,
    run: Run,
    at_ms: u64,
    commit: &mut Commit,
) -> TimerToArm {
    store_timer(engine, instance, run, START_SEQ, at_ms, commit)
}

/// Stores in `commit` the durable timer of step `seq` of `run` of `instance`, firing at
/// `fire_at_ms` (milliseconds since the Unix epoch); returns it, to [`arm`] once
/// `commit` is durable.
pub(in crate::runtime) fn store_timer(
    engine: &Engine,
    instance: &str,
    run: Run,
    seq: u64,
    fire_at_ms: u64,
    commit: &mut Commit,
) -> TimerToArm {
    let id = engine.work_id();
    commit.enqueued.push((
        id,
        WorkItem::Timer {
            instance: instance.to_string(),
            incarnation: run.incarnation,
            generation: run.generation,
            seq,
            fire_at_ms,
        },
    ));
    TimerToArm {
        id,
        seq,
        fire_at_ms,
    }
}
