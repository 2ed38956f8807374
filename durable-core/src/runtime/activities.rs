//! Activities: each runs in a task of its own, with bounded concurrency, and its result
//! goes to its instance, whose next turn records it in the commit that acknowledges the
//! activity's task. A result no turn will take soon is stored as a message instead
//! (`store_result` and the functions after it, which the control requests, the verdicts
//! and shutdown use too).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use durable_store::{ActivityTask, Commit, Event, Failure, WorkId, WorkItem};
use tracing::Instrument;

use super::engine::RETRY_DELAY;
use super::engine::{Busy, Engine, QueuedActivity};
use super::inbox::{Delivery, Outgoing};
use super::unregistered::Unregistered;
use crate::activity_context::{ActivityContext, idempotency_key};
use crate::error::Error;
use crate::failure;
use crate::failure::panic_message;
use crate::payload;
use crate::telemetry::{self, ActivityTrace, metrics, spans};

/// A slot taken: given back to the next activity waiting when dropped.
struct Slot(Arc<Engine>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.free_slot();
        start_waiting(&self.0);
    }
}

/// Runs activity `task` (work item `id`) in a task of its own once a slot is free.
/// Slots go out in the order activities are called (the order of this call), and an
/// activity's execution, with its timeout, starts when it has one.
///
/// A task of an activity this worker does not have, on a shared store, is not run here:
/// it was left in the store for a worker that has it; nor is a task of a limited activity
/// ([`ActivityLimits`](durable_store::ActivityLimits)): it was left in the store for a
/// claim, which counts it against the limits (and runs it with [`run_claimed`]). Its span
/// joins `trace`.
pub(in crate::runtime) fn run(
    engine: &Arc<Engine>,
    id: WorkId,
    task: ActivityTask,
    trace: ActivityTrace,
) {
    if engine.limits_activity(&task.activity) {
        engine.take_at_once(id, task, trace);
        return;
    }
    run_claimed(engine, id, task, trace);
}

/// Runs activity `task` (work item `id`), which a claim of this worker took, as [`run`]
/// does, a limited activity's included.
pub(in crate::runtime) fn run_claimed(
    engine: &Arc<Engine>,
    id: WorkId,
    task: ActivityTask,
    trace: ActivityTrace,
) {
    if engine.leaves_activity(&task.activity) {
        return;
    }
    let busy = engine.busy();
    engine.queue_activity(QueuedActivity {
        id,
        task,
        busy,
        trace,
    });
    start_waiting(engine);
}

/// Starts waiting activities while slots are free. Not on shutdown: their tasks stay in
/// the store for the next start.
fn start_waiting(engine: &Arc<Engine>) {
    while let Some(next) = engine.next_activity() {
        let slot = Slot(engine.clone());
        engine.spawn_boxed(run_and_hand_over(
            engine.clone(),
            next.id,
            next.task,
            slot,
            next.busy,
            next.trace,
        ));
    }
}

/// On shutdown, once no turn or activity runs: the activities waiting for a slot give
/// up; their tasks stay in the store. They never executed, so they are stored with one
/// attempt less, which the next start's redelivery raises again: a redelivery counts
/// an attempt only for a task that may have executed.
pub(in crate::runtime) async fn give_up_waiting(engine: &Engine) {
    let waiting = engine.take_waiting_activities();
    let mut commit = Commit::default();
    for QueuedActivity { id, task, busy, .. } in waiting {
        store_unexecuted(id, task, &mut commit);
        drop(busy);
    }
    if !commit.is_empty()
        && let Err(e) = engine.commit(commit).await
    {
        tracing::warn!(error = %e, "activities that never started not marked so; the next start counts them as an attempt");
    }
}

/// Runs the user's activity under idempotency key `key`; its panic or a missing
/// registration is a failure, never the worker's end. An input its code cannot decode
/// is not an execution: it is the outer error.
async fn execute(
    engine: &Arc<Engine>,
    task: &ActivityTask,
    key: String,
    span: tracing::Span,
) -> Result<Result<Vec<u8>, Failure>, Undecodable> {
    let Some((name, entry)) = engine.registry().activity(&task.activity) else {
        return Ok(Err(failure::unregistered_activity(
            &task.activity,
            Unregistered::Fail,
        )));
    };
    let ctx = ActivityContext::new(&task.instance, key, name, task.attempt, engine.clone());
    let future = (entry.start)(ctx, &task.input).map_err(Undecodable)?;
    Ok(catch_panic(future.instrument(span)).await)
}

/// Runs the activity within its attempt timeout, counted from now on the runtime's
/// clock. An execution still running then is cancelled: its future is dropped, so it
/// stops at the `.await` it is at and nothing after it runs.
async fn execute_bounded(
    engine: &Arc<Engine>,
    task: &ActivityTask,
    key: String,
    span: tracing::Span,
) -> Result<Result<Vec<u8>, Failure>, Undecodable> {
    let limit = task.attempt_timeout_ms.map(Duration::from_millis);
    let Some((limit, deadline)) =
        limit.and_then(|limit| Some((limit, engine.clock().now().checked_add(limit)?)))
    else {
        return execute(engine, task, key, span).await;
    };
    let mut deadline = engine.clock().sleep_until(deadline);
    let mut running = Box::pin(execute(engine, task, key, span));
    let finished = std::future::poll_fn(|cx| {
        // An execution that finished wins over a deadline reached at the same time.
        if let Poll::Ready(result) = running.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await;
    if let Some(result) = finished {
        return result;
    }
    // A panic while the activity's future is dropped does not take the worker down.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(running)));
    tracing::warn!(activity = %task.activity, instance = %task.instance, attempt = task.attempt, "activity attempt timed out; cancelled");
    Ok(Err(failure::timed_out(limit)))
}

/// Runs one activity and hands its result to its instance. `slot` is the activity's
/// place among those that run at once; it is given back when the user's code returns
/// or is cancelled. `busy` is held until the result is handed over.
///
/// The result is not committed on its own: the instance's next turn records it in the
/// commit that removes the task, which saves a commit (and an fsync) per activity. A
/// crash before that turn leaves the task in the store, to run again: at least once,
/// as for any activity. An instance that will not turn soon (suspended, stalled, or
/// the runtime shutting down) gets the result as a stored message instead.
async fn run_and_hand_over(
    engine: Arc<Engine>,
    id: WorkId,
    task: ActivityTask,
    slot: Slot,
    _busy: Busy,
    trace: ActivityTrace,
) {
    let key = idempotency_key(
        &task.instance,
        task.incarnation,
        task.generation,
        task.key_seq,
    );
    let limit = engine.max_payload();
    let span = activity_span(&engine, &task, trace);
    let started = metrics::started();
    let executed = match execute_bounded(&engine, &task, key.clone(), span).await {
        Ok(executed) => {
            if let Some(started) = started {
                metrics::activity(started.elapsed(), executed.is_err());
            }
            executed
        }
        Err(Undecodable(failure)) => {
            drop(slot);
            stall_undecodable(&engine, id, task, key, failure);
            return;
        }
    };
    let executed = match executed {
        Ok(output) => {
            let what = || format!("the output of activity `{}`", task.activity);
            payload::check_size(what, &output, limit)
                .map(|()| output)
                .map_err(|too_large| too_large.failure())
        }
        Err(failure) => Err(payload::fit_failure(failure, limit)),
    };
    drop(slot);
    let event = match executed {
        Ok(output) => Event::ActivityCompleted {
            seq: task.seq,
            output,
        },
        Err(failure) => {
            tracing::warn!(activity = %task.activity, instance = %task.instance, error = %failure.message, "activity failed");
            Event::ActivityFailed {
                seq: task.seq,
                attempt: task.attempt,
                failure,
            }
        }
    };
    let delivery = Delivery {
        id,
        incarnation: task.incarnation,
        generation: Some(task.generation),
        event,
        progress_key: Some(key),
        undecodable: None,
    };
    // Boxed, as it is rare: the task of every activity stays small.
    if let Some(Outgoing { instance, delivery }) = engine.hand_over(task.instance, delivery) {
        Box::pin(store_and_deliver(&engine, instance, delivery)).await;
    }
}

/// Hands an activity whose input does not decode (`failure`) to its instance, whose
/// turn stalls it: the task stays in the store, as never executed, for code that
/// reads it (a fix or a rollback) to run on its next start. Through the inbox, as any
/// result, so the instance's record is written by its own turn; while the instance
/// is suspended, stalled or the runtime is shutting down, it waits there, and is
/// stored (`store_result`) as a result would be.
fn stall_undecodable(
    engine: &Arc<Engine>,
    id: WorkId,
    task: ActivityTask,
    key: String,
    failure: Failure,
) {
    let failure = failure::undecodable_activity_input(&task.activity, failure);
    tracing::error!(activity = %task.activity, instance = %task.instance, error = %failure.message, "activity input does not decode");
    let delivery = Delivery {
        id,
        incarnation: task.incarnation,
        generation: Some(task.generation),
        event: Event::ActivityFailed {
            seq: task.seq,
            attempt: task.attempt,
            failure,
        },
        progress_key: Some(key),
        undecodable: None,
    };
    let instance = task.instance.clone();
    let delivery = Delivery {
        undecodable: Some(Box::new(task)),
        ..delivery
    };
    engine.deliver(instance, delivery);
}

/// Commits an activity result as a stored message for `instance`, then delivers it.
async fn store_and_deliver(engine: &Arc<Engine>, instance: String, mut delivery: Delivery) {
    let mut commit = Commit::default();
    if let Some(message) = store_result(engine, &instance, &delivery, &mut commit) {
        delivery.id = message;
        delivery.progress_key = None;
    }
    loop {
        match engine.commit(commit.clone()).await {
            Ok(()) => break,
            Err(Error::ShutDown) => return,
            // The task is still in the store: whoever claims it next runs it again.
            Err(_) if engine.takes_no_work() => return,
            Err(Error::Store(e)) if e.is_permanent() => {
                tracing::error!(error = %e, "activity result not committed; its task runs again where it is claimed next");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "activity result not committed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
    engine.deliver(instance, delivery);
}

/// If `delivery` is an activity result held in memory, adds to `commit` what stores it
/// as a message for `instance` (its task and progress removed) and returns the
/// message's work id.
pub(in crate::runtime) fn store_result(
    engine: &Engine,
    instance: &str,
    delivery: &Delivery,
    commit: &mut Commit,
) -> Option<WorkId> {
    if let Some(task) = &delivery.undecodable {
        store_unexecuted(delivery.id, (**task).clone(), commit);
        return None;
    }
    let key = delivery.progress_key.as_ref()?;
    let message = engine.work_id();
    commit.dequeued.push(delivery.id);
    commit.progress.push((key.clone(), None));
    commit.enqueued.push((
        message,
        WorkItem::Message {
            instance: instance.to_string(),
            incarnation: delivery.incarnation,
            generation: delivery.generation,
            event: delivery.event.clone(),
        },
    ));
    Some(message)
}

/// Stores the activity results held in memory among `messages` (an inbox of
/// `instance`) as messages, in `commit`; they stay in the inbox, now carried by them.
/// The caller is the instance's turn or its only reader, so nothing takes them
/// before the commit is written.
pub(in crate::runtime) fn store_held_results(
    engine: &Engine,
    instance: &str,
    messages: &mut [Delivery],
    commit: &mut Commit,
) {
    for delivery in messages {
        if let Some(message) = store_result(engine, instance, delivery, commit) {
            delivery.id = message;
            delivery.progress_key = None;
        }
    }
}

/// On shutdown, once no turn runs: stores every activity result still held in
/// memory, so the next start does not run those activities again.
pub(in crate::runtime) async fn store_all_held_results(engine: &Engine) {
    let mut commit = Commit::default();
    engine.inboxes().hold_all(|instance, held| {
        store_held_results(engine, instance, held, &mut commit);
    });
    if !commit.is_empty()
        && let Err(e) = engine.commit(commit).await
    {
        tracing::warn!(error = %e, "activity results not stored at shutdown; they run again on the next start");
    }
}

/// Stores activity `task` (work item `id`), which never executed, with one attempt less:
/// the next start's redelivery raises it again, so a redelivery counts an attempt only
/// for a task that may have executed.
fn store_unexecuted(id: WorkId, mut task: ActivityTask, commit: &mut Commit) {
    task.attempt = task.attempt.saturating_sub(1);
    commit.enqueued.push((id, WorkItem::Activity(task)));
}

/// The span of an attempt of `task`, a child of the context of the turn that scheduled
/// it: known in memory, or, for a task taken over from the store, read from its
/// instance's history when a subscriber records the span.
fn activity_span(engine: &Engine, task: &ActivityTask, trace: ActivityTrace) -> tracing::Span {
    let worker = engine.worker();
    match trace {
        ActivityTrace::Known(trace) => spans::activity(task, worker, trace.as_deref()),
        ActivityTrace::Stored => {
            let span = spans::activity(task, worker, None);
            if !span.is_disabled() {
                // A history that does not read is the turn's to report, not the span's.
                let history = engine.store().history(&task.instance).unwrap_or_default();
                spans::parent(&span, telemetry::of_step(&history, task.seq).as_ref());
            }
            span
        }
    }
}

/// An activity input its code cannot decode: the failure that says so.
struct Undecodable(Failure);

/// Runs an activity's future to its end in the calling task; a panic while polling or
/// dropping it becomes a `Panicked` failure. (A task of its own per activity would isolate
/// the panic too, at the cost of a spawn and a wake-up for every activity.)
async fn catch_panic(
    future: impl Future<Output = Result<Vec<u8>, Failure>> + Unpin,
) -> Result<Vec<u8>, Failure> {
    let mut future = Some(future);
    std::future::poll_fn(move |cx| {
        let Some(running) = future.as_mut() else {
            return Poll::Pending;
        };
        let result = match catch_unwind(AssertUnwindSafe(|| Pin::new(running).poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(panic) => Err(failure::panicked(panic_message(&*panic))),
        };
        let finished = future.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(finished)));
        Poll::Ready(result)
    })
    .await
}
