//! The activity dispatcher: runs activities with bounded concurrency and commits each
//! result as an event for its instance, in the commit that acknowledges the task.

use std::sync::Arc;

use durable_store::{ActivityTask, Commit, Event, Failure, FailureKind, WorkId};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use crate::Error;
use crate::activity_context::{ActivityContext, idempotency_key};
use crate::registry::panic_message;
use crate::runtime::{ActivityMessage, RETRY_DELAY, Shared};

impl Shared {
    pub(crate) async fn dispatch_activities(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<ActivityMessage>,
        concurrency: usize,
    ) {
        let permits = Arc::new(Semaphore::new(concurrency));
        while let Some(Some((id, task))) = rx.recv().await {
            if self.is_shutting_down() {
                break;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let shared = self.clone();
            self.tracker.spawn(async move {
                shared.run_activity(id, task).await;
                drop(permit);
            });
        }
    }

    /// Runs the user's activity; its panic or a missing registration is a failure, never
    /// the worker's end.
    async fn execute(self: &Arc<Self>, task: &ActivityTask) -> Result<Vec<u8>, Failure> {
        let Some((name, entry)) = self
            .registry
            .activities
            .get_key_value(task.activity.as_str())
        else {
            return Err(Failure {
                message: format!(
                    "activity `{}` is not registered with this runtime; add it with `RuntimeBuilder::activity`",
                    task.activity
                ),
                kind: FailureKind::Unregistered {
                    name: task.activity.clone(),
                },
            });
        };
        let key = idempotency_key(&task.instance, task.generation, task.key_seq);
        let ctx = ActivityContext::new(&task.instance, key, name, task.attempt, self.clone());
        let future = (entry.start)(ctx, &task.input)?;
        let span = tracing::info_span!("activity", name = %task.activity, instance = %task.instance, seq = task.seq, attempt = task.attempt);
        // Its own task, so a panic is caught by tokio and the worker goes on.
        match tokio::spawn(future.instrument(span)).await {
            Ok(result) => result,
            Err(join) => Err(Failure {
                kind: FailureKind::Panicked,
                message: match join.try_into_panic() {
                    Ok(panic) => panic_message(&*panic),
                    Err(e) => e.to_string(),
                },
            }),
        }
    }

    /// Runs one activity and commits its result as an event for its instance.
    async fn run_activity(self: Arc<Self>, id: WorkId, task: ActivityTask) {
        let event = match self.execute(&task).await {
            Ok(output) => Event::ActivityCompleted {
                seq: task.seq,
                output,
            },
            Err(failure) => {
                // An error the activity returned is the workflow's business, told to the
                // orchestrator; a panic or a wiring mistake is the operator's.
                if matches!(failure.kind, FailureKind::Returned { .. }) {
                    tracing::info!(activity = %task.activity, instance = %task.instance, error = %failure.message, "activity returned an error");
                } else {
                    tracing::warn!(activity = %task.activity, instance = %task.instance, error = %failure.message, "activity failed");
                }
                Event::ActivityFailed {
                    seq: task.seq,
                    attempt: task.attempt,
                    failure,
                }
            }
        };
        let mut commit = Commit {
            dequeued: vec![id],
            ..Commit::default()
        };
        // The progress checkpoint goes with the result; a retry starts afresh.
        commit.progress.push((
            idempotency_key(&task.instance, task.generation, task.key_seq),
            None,
        ));
        let mut deliveries = Vec::new();
        self.enqueue_message(
            &task.instance,
            Some(task.generation),
            event,
            &mut commit,
            &mut deliveries,
        );
        loop {
            match self.commits.commit(commit.clone()).await {
                Ok(()) => break,
                Err(Error::ShutDown) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "activity result not committed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
        for (instance, delivery) in deliveries {
            self.deliver(instance, delivery);
        }
    }
}
