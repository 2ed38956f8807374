//! Activities: each runs in a task of its own, with bounded concurrency, and its result
//! goes to its instance, whose next turn records it in the commit that acknowledges the
//! activity's task.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use durable_store::{ActivityTask, Commit, Event, Failure, FailureKind, WorkId, WorkItem};
use tracing::Instrument;

use crate::Error;
use crate::Unregistered;
use crate::activity_context::{ActivityContext, idempotency_key};
use crate::error::Timeout;
use crate::payload;
use crate::registry::{panic_message, unregistered_activity};
use crate::runtime::{Busy, Delivery, RETRY_DELAY, Shared, lock};

/// The slots of activities that run at once, and the activities waiting for one, in the
/// order they were called.
pub(crate) struct Slots {
    free: usize,
    waiting: VecDeque<Queued>,
}

impl Slots {
    /// `n` slots, all free.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            free: n,
            waiting: VecDeque::new(),
        }
    }
}

/// An activity waiting for a slot.
struct Queued {
    id: WorkId,
    task: ActivityTask,
    /// Work in hand until its result is handed over.
    busy: Busy,
}

/// A slot taken: given back to the next activity waiting when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.0.activities).free += 1;
        self.0.dispatch_activities();
    }
}

impl Shared {
    /// Runs activity `task` (work item `id`) in a task of its own once a slot is free.
    /// Slots go out in the order activities are called (the order of this call), and an
    /// activity's execution, with its timeout, starts when it has one.
    pub(crate) fn run_activity(self: &Arc<Self>, id: WorkId, task: ActivityTask) {
        let busy = self.busy();
        lock(&self.activities)
            .waiting
            .push_back(Queued { id, task, busy });
        self.dispatch_activities();
    }

    /// Starts waiting activities while slots are free. Not on shutdown: their tasks stay in
    /// the store for the next start.
    fn dispatch_activities(self: &Arc<Self>) {
        loop {
            let next = {
                let mut slots = lock(&self.activities);
                if slots.free == 0 || self.takes_no_work() {
                    return;
                }
                let Some(next) = slots.waiting.pop_front() else {
                    return;
                };
                slots.free -= 1;
                next
            };
            let slot = Slot(self.clone());
            self.spawn_boxed(
                self.clone()
                    .run_and_hand_over(next.id, next.task, slot, next.busy),
            );
        }
    }

    /// On shutdown, once no turn or activity runs: the activities waiting for a slot give
    /// up; their tasks stay in the store. They never executed, so they are stored with one
    /// attempt less, which the next start's redelivery raises again: a redelivery counts
    /// an attempt only for a task that may have executed.
    pub(crate) async fn activities_waiting_give_up(&self) {
        let waiting = std::mem::take(&mut lock(&self.activities).waiting);
        let mut commit = Commit::default();
        for Queued { id, task, busy } in waiting {
            store_unexecuted(id, task, &mut commit);
            drop(busy);
        }
        if !commit.is_empty()
            && let Err(e) = self.commits.commit(commit).await
        {
            tracing::warn!(error = %e, "activities that never started not marked so; the next start counts them as an attempt");
        }
    }

    /// Runs the user's activity under idempotency key `key`; its panic or a missing
    /// registration is a failure, never the worker's end. An input its code cannot decode
    /// is not an execution: it is the outer error.
    async fn execute(
        self: &Arc<Self>,
        task: &ActivityTask,
        key: String,
    ) -> Result<Result<Vec<u8>, Failure>, Undecodable> {
        let Some((name, entry)) = self
            .registry
            .activities
            .get_key_value(task.activity.as_str())
        else {
            return Ok(Err(unregistered_activity(
                &task.activity,
                Unregistered::Fail,
            )));
        };
        let ctx = ActivityContext::new(&task.instance, key, name, task.attempt, self.clone());
        let future = (entry.start)(ctx, &task.input).map_err(Undecodable)?;
        let span = tracing::info_span!("activity", name = %task.activity, instance = %task.instance, seq = task.seq, attempt = task.attempt);
        Ok(catch_panic(future.instrument(span)).await)
    }

    /// Runs the activity within its attempt timeout, counted from now on the runtime's
    /// clock. An execution still running then is cancelled: its future is dropped, so it
    /// stops at the `.await` it is at and nothing after it runs.
    async fn execute_bounded(
        self: &Arc<Self>,
        task: &ActivityTask,
        key: String,
    ) -> Result<Result<Vec<u8>, Failure>, Undecodable> {
        let limit = task.attempt_timeout_ms.map(Duration::from_millis);
        let Some((limit, deadline)) =
            limit.and_then(|limit| Some((limit, self.clock.now().checked_add(limit)?)))
        else {
            return self.execute(task, key).await;
        };
        let mut deadline = self.clock.sleep_until(deadline);
        let mut running = Box::pin(self.execute(task, key));
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
        Ok(Err(Failure {
            kind: FailureKind::TimedOut,
            message: Timeout { after: limit }.to_string(),
        }))
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
        self: Arc<Self>,
        id: WorkId,
        task: ActivityTask,
        slot: Slot,
        _busy: Busy,
    ) {
        let key = idempotency_key(
            &task.instance,
            task.incarnation,
            task.generation,
            task.key_seq,
        );
        let limit = self.max_payload;
        let executed = match self.execute_bounded(&task, key.clone()).await {
            Ok(executed) => executed,
            Err(Undecodable(failure)) => {
                drop(slot);
                self.stall_undecodable(id, task, key, failure);
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
        let instance = task.instance;
        {
            let mut instances = lock(&self.instances);
            let inbox = instances.entry(instance.clone()).or_default();
            if !self.takes_no_work() && !inbox.stalled && !inbox.suspended {
                inbox.messages.push(delivery);
                if inbox.claim_turns() {
                    drop(instances);
                    self.spawn_turns(instance);
                }
                return;
            }
        }
        // Boxed, as it is rare: the task of every activity stays small.
        Box::pin(self.store_and_deliver(instance, delivery)).await;
    }

    /// Hands an activity whose input does not decode (`failure`) to its instance, whose
    /// turn stalls it: the task stays in the store, as never executed, for code that
    /// reads it (a fix or a rollback) to run on its next start. Through the inbox, as any
    /// result, so the instance's record is written by its own turn; while the instance
    /// is suspended, stalled or the runtime is shutting down, it waits there, and is
    /// stored (`store_result`) as a result would be.
    fn stall_undecodable(
        self: &Arc<Self>,
        id: WorkId,
        task: ActivityTask,
        key: String,
        failure: Failure,
    ) {
        let failure = Failure {
            message: format!(
                "the input of activity `{}` does not decode: {}; deploy code that reads it \
                 (or roll back), then restart to resume",
                task.activity, failure.message
            ),
            kind: failure.kind,
        };
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
        self.deliver(instance, delivery);
    }

    /// Commits an activity result as a stored message for `instance`, then delivers it.
    async fn store_and_deliver(self: &Arc<Self>, instance: String, mut delivery: Delivery) {
        let mut commit = Commit::default();
        if let Some(message) = self.store_result(&instance, &delivery, &mut commit) {
            delivery.id = message;
            delivery.progress_key = None;
        }
        loop {
            match self.commits.commit(commit.clone()).await {
                Ok(()) => break,
                Err(Error::ShutDown) => return,
                // The task is still in the store: the next start runs it again.
                Err(_) if self.takes_no_work() => return,
                Err(Error::Store(e)) if e.is_permanent() => {
                    tracing::error!(error = %e, "activity result not committed; it runs again on the next start");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "activity result not committed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
        self.deliver(instance, delivery);
    }

    /// If `delivery` is an activity result held in memory, adds to `commit` what stores it
    /// as a message for `instance` (its task and progress removed) and returns the
    /// message's work id.
    pub(crate) fn store_result(
        &self,
        instance: &str,
        delivery: &Delivery,
        commit: &mut Commit,
    ) -> Option<WorkId> {
        if let Some(task) = &delivery.undecodable {
            store_unexecuted(delivery.id, (**task).clone(), commit);
            return None;
        }
        let key = delivery.progress_key.as_ref()?;
        let message = self.work_id();
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
    pub(crate) fn store_held_results(
        &self,
        instance: &str,
        messages: &mut [Delivery],
        commit: &mut Commit,
    ) {
        for delivery in messages {
            if let Some(message) = self.store_result(instance, delivery, commit) {
                delivery.id = message;
                delivery.progress_key = None;
            }
        }
    }

    /// On shutdown, once no turn runs: stores every activity result still held in
    /// memory, so the next start does not run those activities again.
    pub(crate) async fn store_all_held_results(&self) {
        let mut commit = Commit::default();
        for (instance, inbox) in lock(&self.instances).iter_mut() {
            self.store_held_results(instance, &mut inbox.messages, &mut commit);
        }
        if !commit.is_empty()
            && let Err(e) = self.commits.commit(commit).await
        {
            tracing::warn!(error = %e, "activity results not stored at shutdown; they run again on the next start");
        }
    }
}

/// Stores activity `task` (work item `id`), which never executed, with one attempt less:
/// the next start's redelivery raises it again, so a redelivery counts an attempt only
/// for a task that may have executed.
fn store_unexecuted(id: WorkId, mut task: ActivityTask, commit: &mut Commit) {
    task.attempt = task.attempt.saturating_sub(1);
    commit.enqueued.push((id, WorkItem::Activity(task)));
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
            Err(panic) => Err(Failure {
                kind: FailureKind::Panicked,
                message: panic_message(&*panic),
            }),
        };
        let finished = future.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(finished)));
        Poll::Ready(result)
    })
    .await
}
