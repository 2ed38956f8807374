//! Activities: each runs in a task of its own, with bounded concurrency, and its result
//! goes to its instance, whose next turn records it in the commit that acknowledges the
//! activity's task.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use durable_store::{ActivityTask, Commit, Event, Failure, FailureKind, WorkId, WorkItem};
use tokio::sync::SemaphorePermit;
use tracing::Instrument;

use crate::Error;
use crate::Unregistered;
use crate::activity_context::{ActivityContext, idempotency_key};
use crate::payload;
use crate::registry::{panic_message, unregistered_activity};
use crate::runtime::{Delivery, RETRY_DELAY, Shared, lock};

impl Shared {
    /// Runs activity `task` (work item `id`) in a task of its own once a slot is free.
    /// Slots are handed out in order. Spawned right away rather than queued for a
    /// dispatcher, so a result is one task hop from the turn that scheduled it.
    pub(crate) fn run_activity(self: &Arc<Self>, id: WorkId, task: ActivityTask) {
        self.tracker.spawn(self.clone().activity(id, task));
    }

    async fn activity(self: Arc<Self>, id: WorkId, task: ActivityTask) {
        // Closed on shutdown: the task stays in the store for the next start.
        let Ok(slot) = self.activities.acquire().await else {
            return;
        };
        if self.takes_no_work() {
            return;
        }
        self.run_and_hand_over(id, task, slot).await;
    }

    /// Runs the user's activity under idempotency key `key`; its panic or a missing
    /// registration is a failure, never the worker's end.
    async fn execute(
        self: &Arc<Self>,
        task: &ActivityTask,
        key: String,
    ) -> Result<Vec<u8>, Failure> {
        let Some((name, entry)) = self
            .registry
            .activities
            .get_key_value(task.activity.as_str())
        else {
            return Err(unregistered_activity(&task.activity, Unregistered::Fail));
        };
        let ctx = ActivityContext::new(&task.instance, key, name, task.attempt, self.clone());
        let future = (entry.start)(ctx, &task.input)?;
        let span = tracing::info_span!("activity", name = %task.activity, instance = %task.instance, seq = task.seq, attempt = task.attempt);
        catch_panic(future.instrument(span)).await
    }

    /// Runs one activity and hands its result to its instance. `slot` is the activity's
    /// place among those that run at once; it is given back when the user's code returns.
    ///
    /// The result is not committed on its own: the instance's next turn records it in the
    /// commit that removes the task, which saves a commit (and an fsync) per activity. A
    /// crash before that turn leaves the task in the store, to run again: at least once,
    /// as for any activity. An instance that will not turn soon (suspended, stalled, or
    /// the runtime shutting down) gets the result as a stored message instead.
    async fn run_and_hand_over(
        self: &Arc<Self>,
        id: WorkId,
        task: ActivityTask,
        slot: SemaphorePermit<'_>,
    ) {
        let key = idempotency_key(
            &task.instance,
            task.incarnation,
            task.generation,
            task.key_seq,
        );
        let limit = self.max_payload;
        let executed = match self.execute(&task, key.clone()).await {
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
