//! One orchestration turn in the runtime: load (or reuse) the execution, run the pure
//! replay step, turn its outcome and commands into one atomic commit, and once that is
//! durable, dispatch what it scheduled.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use durable_store::{
    ActivityTask, Commit, Event, Failure, FailureKind, HistoryAppend, InstanceRecord, ParentLink,
    Status, WorkId, WorkItem,
};

use crate::Error;
use crate::replay::{Command, Execution, Outcome};
use crate::runtime::{Cached, Delivery, Shared, lock, now_ms};

/// What to do once a turn's commit is durable.
#[derive(Default)]
struct AfterCommit {
    activities: Vec<(WorkId, ActivityTask)>,
    timers: Vec<(WorkId, u64, u64)>,
    /// Events for other instances (children started, parents told) or for this one.
    deliveries: Vec<(String, Delivery)>,
}

impl Shared {
    /// One orchestration turn over `messages` (a client request alone, or events).
    pub(crate) async fn turn(
        self: &Arc<Self>,
        instance: &str,
        messages: &[Delivery],
    ) -> Result<(), Error> {
        let acked: Vec<WorkId> = messages.iter().map(|d| d.id).collect();
        let cached = lock(&self.cache).pop(instance);
        let (execution, record) = match cached {
            Some(c) => (Some(c.execution), c.record),
            None => match self.store.instance(instance)? {
                None => {
                    tracing::warn!(instance, "events for an unknown instance dropped");
                    return self.ack_only(acked).await;
                }
                Some(record) => (None, record),
            },
        };
        if record.status.is_terminal() {
            return self.ack_only(acked).await;
        }
        if let [control] = messages
            && control.is_control()
        {
            return self.control(instance, control, execution, record).await;
        }
        let generation = record.generation;
        let (fresh, stale): (Vec<&Delivery>, Vec<&Delivery>) = messages
            .iter()
            .partition(|d| d.generation.is_none_or(|g| g == generation));
        if !stale.is_empty() {
            tracing::debug!(
                instance,
                stale = stale.len(),
                "events of an earlier generation dropped"
            );
        }
        let (mut execution, recorded) = match execution {
            Some(execution) => (execution, Vec::new()),
            None => {
                let Some(entry) = self
                    .registry
                    .orchestrator(&record.orchestrator, record.version)
                else {
                    let failure = Failure {
                        message: format!(
                            "version {} of orchestrator `{}` is not registered with this runtime; register it and restart to resume",
                            record.version, record.orchestrator
                        ),
                        kind: FailureKind::Unregistered {
                            name: record.orchestrator.clone(),
                        },
                    };
                    return self.stall(instance, record, failure).await;
                };
                let execution = Execution::new(instance, &record.orchestrator, entry);
                let history = if record.history_len == 0 {
                    Vec::new()
                } else {
                    self.replays.fetch_add(1, Ordering::Relaxed);
                    self.store.history(instance)?
                };
                (execution, history)
            }
        };
        let new = fresh.iter().map(|d| d.event.clone()).collect();
        let turn = execution.turn(&recorded, new);
        if let Outcome::Stalled(failure) = turn.outcome {
            tracing::error!(instance, error = %failure.message, "instance stalled");
            return self.stall(instance, record, failure).await;
        }

        let mut record = record;
        let mut commit = Commit {
            dequeued: acked,
            ..Commit::default()
        };
        let mut after = AfterCommit::default();
        if let Some(status) = turn.custom_status {
            record.custom_status = Some(status);
        }
        record.updated_ms = now_ms();
        if let Outcome::ContinuedAsNew {
            input,
            latest_version,
        } = &turn.outcome
        {
            if *latest_version
                && let Some(latest) = self.registry.latest_version(&record.orchestrator)
            {
                record.version = latest;
            }
            self.continue_as_new(
                instance,
                &mut record,
                input.clone(),
                &mut commit,
                &mut after,
            );
        } else {
            let appended = turn.appended.len() as u32;
            if appended > 0 {
                commit.history.push(HistoryAppend {
                    instance: instance.to_string(),
                    first: record.history_len,
                    events: turn.appended,
                });
            }
            record.history_len = record.history_len.saturating_add(appended);
            for command in turn.commands {
                self.command(instance, generation, command, &mut commit, &mut after)?;
            }
            record.status = match &turn.outcome {
                Outcome::Completed(output) => Status::Completed {
                    output: output.clone(),
                },
                Outcome::Failed(failure) => Status::Failed {
                    failure: failure.clone(),
                },
                _ => Status::Running,
            };
            if record.status.is_terminal() {
                self.tell_parent(&record, &mut commit, &mut after);
            }
        }
        commit
            .instances
            .push((instance.to_string(), record.clone()));
        self.commits.commit(commit).await?;

        self.dispatch(instance, generation, after);
        match turn.outcome {
            Outcome::Running => {
                lock(&self.cache).put(instance.to_string(), Cached { execution, record });
            }
            Outcome::Failed(failure) => {
                tracing::warn!(instance, error = %failure.message, "instance failed");
                self.notify_finished(instance);
            }
            Outcome::Completed(_) => self.notify_finished(instance),
            Outcome::ContinuedAsNew { .. } | Outcome::Stalled(_) => {}
        }
        Ok(())
    }

    /// Turns a command of the replay step into work items of `commit`.
    fn command(
        &self,
        instance: &str,
        generation: u32,
        command: Command,
        commit: &mut Commit,
        after: &mut AfterCommit,
    ) -> Result<(), Error> {
        match command {
            Command::ScheduleActivity {
                seq,
                activity,
                input,
                key_seq,
                attempt,
            } => {
                let task = ActivityTask {
                    instance: instance.to_string(),
                    generation,
                    seq,
                    key_seq,
                    activity,
                    input,
                    attempt,
                };
                let id = self.work_id();
                commit.enqueued.push((id, WorkItem::Activity(task.clone())));
                after.activities.push((id, task));
            }
            Command::CreateTimer { seq, fire_at_ms } => {
                let id = self.work_id();
                commit.enqueued.push((
                    id,
                    WorkItem::Timer {
                        instance: instance.to_string(),
                        generation,
                        seq,
                        fire_at_ms,
                    },
                ));
                after.timers.push((id, seq, fire_at_ms));
            }
            Command::StartSubOrchestration {
                seq,
                orchestrator,
                version,
                instance: child,
                input,
            } => {
                let refused = if self.registry.orchestrator(&orchestrator, version).is_none() {
                    Some(format!(
                        "orchestrator `{orchestrator}` is not registered with this runtime"
                    ))
                } else if self.store.instance(&child)?.is_some()
                    || commit.instances.iter().any(|(id, _)| *id == child)
                {
                    Some(format!(
                        "instance `{child}` already exists; give the sub-orchestration another id"
                    ))
                } else {
                    None
                };
                if let Some(message) = refused {
                    let event = Event::SubOrchestrationFailed {
                        seq,
                        failure: Failure {
                            kind: FailureKind::Rejected,
                            message,
                        },
                    };
                    self.enqueue_message(instance, Some(generation), event, commit, after);
                    return Ok(());
                }
                let now = now_ms();
                let record = InstanceRecord {
                    orchestrator: orchestrator.clone(),
                    version,
                    input: input.clone(),
                    status: Status::Pending,
                    created_ms: now,
                    updated_ms: now,
                    history_len: 0,
                    generation: 0,
                    custom_status: None,
                    parent: Some(ParentLink {
                        instance: instance.to_string(),
                        generation,
                        seq,
                    }),
                };
                commit.instances.push((child.clone(), record));
                let started = Event::Started {
                    orchestrator,
                    input,
                };
                self.enqueue_message(&child, Some(0), started, commit, after);
            }
        }
        Ok(())
    }

    /// Adds a message for `instance` to `commit`, delivered once it is durable.
    pub(crate) fn enqueue_message(
        &self,
        instance: &str,
        generation: Option<u32>,
        event: Event,
        commit: &mut Commit,
        after: &mut impl Extend<(String, Delivery)>,
    ) {
        let id = self.work_id();
        commit.enqueued.push((
            id,
            WorkItem::Message {
                instance: instance.to_string(),
                generation,
                event: event.clone(),
            },
        ));
        after.extend([(
            instance.to_string(),
            Delivery {
                id,
                generation,
                event,
            },
        )]);
    }

    /// Starts the next generation: the history is removed and restarts with a `Started`
    /// event carrying `input`.
    fn continue_as_new(
        &self,
        instance: &str,
        record: &mut InstanceRecord,
        input: Vec<u8>,
        commit: &mut Commit,
        after: &mut AfterCommit,
    ) {
        commit
            .histories_removed
            .push((instance.to_string(), record.history_len));
        record.history_len = 0;
        record.generation += 1;
        record.input = input.clone();
        record.status = Status::Running;
        let started = Event::Started {
            orchestrator: record.orchestrator.clone(),
            input,
        };
        self.enqueue_message(instance, Some(record.generation), started, commit, after);
    }

    /// If `record` is a sub-orchestration, adds its result as a message to its parent.
    fn tell_parent(&self, record: &InstanceRecord, commit: &mut Commit, after: &mut AfterCommit) {
        let Some(parent) = &record.parent else {
            return;
        };
        let seq = parent.seq;
        let event = match &record.status {
            Status::Completed { output } => Event::SubOrchestrationCompleted {
                seq,
                output: output.clone(),
            },
            Status::Failed { failure } => Event::SubOrchestrationFailed {
                seq,
                failure: failure.clone(),
            },
            Status::Terminated { reason } => Event::SubOrchestrationFailed {
                seq,
                failure: Failure {
                    kind: FailureKind::Terminated,
                    message: format!("terminated: {reason}"),
                },
            },
            _ => return,
        };
        self.enqueue_message(
            &parent.instance,
            Some(parent.generation),
            event,
            commit,
            after,
        );
    }

    /// Hands what a durable commit scheduled to the dispatchers.
    fn dispatch(self: &Arc<Self>, instance: &str, generation: u32, after: AfterCommit) {
        for task in after.activities {
            let _ = self.activity_tx.send(Some(task));
        }
        for (id, seq, fire_at_ms) in after.timers {
            self.arm_timer(id, instance.to_string(), generation, seq, fire_at_ms);
        }
        for (target, delivery) in after.deliveries {
            self.deliver(target, delivery);
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
            }
            _ => record.status = Status::Running,
        }
        commit.history.push(HistoryAppend {
            instance: instance.to_string(),
            first: record.history_len,
            events: vec![request.event.clone()],
        });
        record.history_len += 1;
        record.updated_ms = now_ms();
        commit
            .instances
            .push((instance.to_string(), record.clone()));
        self.commits.commit(commit).await?;
        if let Some(inbox) = lock(&self.instances).get_mut(instance) {
            inbox.suspended = matches!(record.status, Status::Suspended { .. });
            // A terminated instance is stalled no more: what it held is acknowledged.
            inbox.stalled &= !terminated_now(&record);
        }
        self.dispatch(instance, record.generation, after);
        let terminated = record.status.is_terminal();
        if let Some(execution) = keep {
            lock(&self.cache).put(instance.to_string(), Cached { execution, record });
        }
        if terminated {
            self.notify_finished(instance);
        }
        Ok(())
    }

    pub(crate) async fn ack_only(&self, dequeued: Vec<WorkId>) -> Result<(), Error> {
        self.commits
            .commit(Commit {
                dequeued,
                ..Commit::default()
            })
            .await
    }

    /// Parks an instance: its status says why, its history and queued events are kept.
    async fn stall(
        &self,
        instance: &str,
        mut record: InstanceRecord,
        failure: Failure,
    ) -> Result<(), Error> {
        if let Some(inbox) = lock(&self.instances).get_mut(instance) {
            inbox.stalled = true;
        }
        record.status = Status::Stalled { failure };
        record.updated_ms = now_ms();
        self.commits
            .commit(Commit {
                instances: vec![(instance.to_string(), record)],
                ..Commit::default()
            })
            .await?;
        self.notify_finished(instance);
        Ok(())
    }
}

impl Extend<(String, Delivery)> for AfterCommit {
    fn extend<I: IntoIterator<Item = (String, Delivery)>>(&mut self, iter: I) {
        self.deliveries.extend(iter);
    }
}

fn terminated_now(record: &InstanceRecord) -> bool {
    matches!(record.status, Status::Terminated { .. })
}
