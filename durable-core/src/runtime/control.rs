//! The turns that settle an instance without running its orchestrator: a client's request
//! (terminate, suspend, resume), and the runtime's own verdicts on an instance it cannot
//! run (acknowledge what is for a finished one, stall one the code cannot replay, fail one
//! whose orchestrator is missing when so configured).

use std::sync::Arc;

use durable_store::{Commit, Event, Failure, HistoryAppend, InstanceRecord, Status};

use crate::Error;
use crate::replay::Execution;
use crate::runtime::{Cached, Delivery, Shared, lock};
use crate::turn::{AfterCommit, Plan, consumed};

impl Shared {
    /// The turns that do not run the orchestrator.
    pub(crate) async fn settle(
        self: &Arc<Self>,
        instance: &str,
        messages: &[Delivery],
        plan: Plan,
    ) -> Result<(), Error> {
        match plan {
            Plan::AckOnly => self.ack_only(messages).await,
            Plan::Control(control) => {
                let (execution, record) = *control;
                self.control(instance, &messages[0], execution, record)
                    .await
            }
            Plan::Stall(stall) => {
                let (record, failure) = *stall;
                self.stall(instance, record, failure, messages).await
            }
            Plan::Fail(fail) => {
                let (record, new, failure) = *fail;
                self.fail(instance, record, new, failure, messages).await
            }
            Plan::Commit(_) => unreachable!("a turn to commit is not settled"),
        }
    }

    /// A client's request: terminate, suspend or resume.
    async fn control(
        self: &Arc<Self>,
        instance: &str,
        request: &Delivery,
        execution: Option<Execution>,
        mut record: InstanceRecord,
    ) -> Result<(), Error> {
        let mut commit = Commit {
            dequeued: vec![request.id],
            ..Commit::default()
        };
        let mut after = AfterCommit::default();
        let mut keep = execution;
        match &request.event {
            Event::TerminateRequested { reason } => {
                record.status = Status::Terminated {
                    reason: reason.clone(),
                };
                keep = None;
                self.tell_parent(&record, &mut commit, &mut after);
            }
            Event::SuspendRequested { reason } => {
                record.status = Status::Suspended {
                    reason: reason.clone(),
                };
                // From now on results wait in the store, not in memory, until it resumes.
                if let Some(inbox) = lock(&self.instances).get_mut(instance) {
                    inbox.suspended = true;
                    self.store_held_results(instance, &mut inbox.messages, &mut commit);
                }
            }
            // A suspended instance that waits for missing code stalls when resumed.
            _ => {
                record.status = match lock(&self.waiting_for_code).get(instance) {
                    Some(failure) => Status::Stalled {
                        failure: failure.clone(),
                    },
                    None => Status::Running,
                }
            }
        }
        commit.history.push(HistoryAppend {
            instance: instance.to_string(),
            first: record.history_len,
            events: vec![request.event.clone()],
        });
        record.history_len += 1;
        record.updated_ms = self.now_ms();
        commit
            .instances
            .push((instance.to_string(), record.clone()));
        self.commits.commit(commit).await?;
        // Resumed or terminated, it waits for nothing any more (a reused id must not
        // inherit the wait); forgotten once that is durable, so a retried turn still knows.
        if !matches!(record.status, Status::Suspended { .. }) {
            lock(&self.waiting_for_code).remove(instance);
        }
        let stalled_now = matches!(record.status, Status::Stalled { .. });
        if let Some(inbox) = lock(&self.instances).get_mut(instance) {
            inbox.suspended = matches!(record.status, Status::Suspended { .. });
            // A terminated instance is stalled no more: what it held is acknowledged.
            inbox.stalled = (inbox.stalled || stalled_now) && !terminated_now(&record);
        }
        self.dispatch(instance, record.incarnation, record.generation, after);
        let stopped = record.status.is_terminal() || stalled_now;
        if let Some(execution) = keep.filter(|_| !stopped) {
            lock(&self.cache).put(instance.to_string(), Cached { execution, record });
        }
        if stopped {
            self.notify_finished(instance);
        }
        Ok(())
    }

    /// Acknowledges `messages` without turning them (their instance is gone or done).
    pub(crate) async fn ack_only(&self, messages: &[Delivery]) -> Result<(), Error> {
        self.commits.commit(consumed(messages)).await
    }

    /// Fails an instance whose orchestrator this runtime does not have, acknowledging
    /// `messages` and recording `new` (their events) and the failure in its history.
    async fn fail(
        self: &Arc<Self>,
        instance: &str,
        mut record: InstanceRecord,
        mut new: Vec<Event>,
        failure: Failure,
        messages: &[Delivery],
    ) -> Result<(), Error> {
        tracing::warn!(instance, error = %failure.message, "instance failed");
        let mut commit = consumed(messages);
        let mut after = AfterCommit::default();
        new.push(Event::Failed {
            failure: failure.clone(),
        });
        let appended = new.len() as u32;
        commit.history.push(HistoryAppend {
            instance: instance.to_string(),
            first: record.history_len,
            events: new,
        });
        record.history_len = record.history_len.saturating_add(appended);
        record.status = Status::Failed { failure };
        record.updated_ms = self.now_ms();
        self.tell_parent(&record, &mut commit, &mut after);
        let (incarnation, generation) = (record.incarnation, record.generation);
        commit.instances.push((instance.to_string(), record));
        self.commits.commit(commit).await?;
        self.dispatch(instance, incarnation, generation, after);
        self.notify_finished(instance);
        Ok(())
    }

    /// Parks an instance: its status says why, its history and queued events are kept
    /// (`messages`, those of the turn that stalled, stay in the store for the next start;
    /// activity results among them or in its inbox are stored as messages, so that start
    /// does not run their activities again).
    async fn stall(
        &self,
        instance: &str,
        mut record: InstanceRecord,
        failure: Failure,
        messages: &[Delivery],
    ) -> Result<(), Error> {
        let mut commit = Commit::default();
        for delivery in messages {
            self.store_result(instance, delivery, &mut commit);
        }
        if let Some(inbox) = lock(&self.instances).get_mut(instance) {
            inbox.stalled = true;
            self.store_held_results(instance, &mut inbox.messages, &mut commit);
        }
        record.status = Status::Stalled { failure };
        record.updated_ms = self.now_ms();
        commit.instances.push((instance.to_string(), record));
        self.commits.commit(commit).await?;
        self.notify_finished(instance);
        Ok(())
    }
}

fn terminated_now(record: &InstanceRecord) -> bool {
    matches!(record.status, Status::Terminated { .. })
}
