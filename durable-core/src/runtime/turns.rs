//! One orchestration turn in the runtime: load (or reuse) the execution, run the pure
//! replay step, turn its outcome and commands into one atomic commit, and once that is
//! durable, dispatch what it scheduled.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use durable_store::{
    ActivityTask, Commit, Event, Failure, FailureKind, HistoryAppend, Incarnation, InstanceRecord,
    ParentLink, Status, StoreError, WorkId, WorkItem,
};

use tokio::sync::OwnedSemaphorePermit;

use crate::registry::{unregistered_activity, unregistered_orchestrator};
use crate::replay::{Command, Execution, Outcome};
use crate::runtime::{Cached, Delivery, Shared, lock};
use crate::{Error, Unregistered};

/// What to do once a turn's commit is durable.
#[derive(Default)]
pub(crate) struct AfterCommit {
    /// Timers to arm: work id, step, fire time.
    timers: Vec<(WorkId, u64, u64)>,
    /// Events for other instances (children started, parents told) or for this one.
    deliveries: Vec<(String, Delivery)>,
}

/// What a turn comes to before anything is written. The payloads are boxed so that the
/// task awaiting a turn's commit stays small: one is spawned for every instance that gets
/// an event, and a task of more than a kilobyte costs the allocator far more.
pub(crate) enum Plan {
    /// A turn to commit.
    Commit(Box<Turned>),
    /// Nothing to turn (the instance is unknown or finished): acknowledge the messages.
    AckOnly,
    /// A client's request, the turn's only message.
    Control(Box<(Option<Execution>, InstanceRecord)>),
    /// The instance cannot go on with this code.
    Stall(Box<(InstanceRecord, Failure)>),
    /// The instance's orchestrator is missing and the runtime fails such instances: the
    /// record, the turn's new events and the failure.
    Fail(Box<(InstanceRecord, Vec<Event>, Failure)>),
}

/// A turn's commit and what it leaves behind once the commit is durable. The instance's
/// new record is the last of `commit.instances`, and the activities it scheduled are in
/// `commit.enqueued`: `finish` takes them back from the written commit, not from copies.
pub(crate) struct Turned {
    commit: Commit,
    after: AfterCommit,
    incarnation: Incarnation,
    generation: u32,
    execution: Execution,
    outcome: Outcome,
}

impl Shared {
    /// One orchestration turn over `messages` (a client request alone, or events).
    /// `permit` is the turn's slot among those that compute at once; it is given back
    /// once the turn's commit is queued, before the commit is durable.
    pub(crate) async fn turn(
        self: &Arc<Self>,
        instance: &str,
        messages: &[Delivery],
        permit: OwnedSemaphorePermit,
    ) -> Result<(), Error> {
        match self.plan(instance, messages)? {
            Plan::Commit(mut turned) => {
                let durable = self.commits.submit(std::mem::take(&mut turned.commit));
                drop(permit);
                let (written, commit) = durable.await;
                written?;
                turned.commit = commit;
                self.finish(instance, *turned);
                Ok(())
            }
            // Boxed, as they are rare: the common case above keeps the task small.
            other => Box::pin(self.settle(instance, messages, other)).await,
        }
    }

    /// Loads (or reuses) the execution, runs the replay step and builds the turn's commit.
    fn plan(self: &Arc<Self>, instance: &str, messages: &[Delivery]) -> Result<Plan, Error> {
        let cached = lock(&self.cache).pop(instance);
        let (execution, record) = match cached {
            Some(c) => (Some(c.execution), c.record),
            None => match self.store.instance(instance)? {
                None => {
                    tracing::warn!(instance, "events for an unknown instance dropped");
                    return Ok(Plan::AckOnly);
                }
                Some(record) => (None, record),
            },
        };
        if record.status.is_terminal() {
            return Ok(Plan::AckOnly);
        }
        let (incarnation, generation) = (record.incarnation, record.generation);
        if let [control] = messages
            && control.is_control()
        {
            if control.incarnation != incarnation {
                tracing::warn!(
                    instance,
                    "a request for an earlier run of the instance id dropped"
                );
                return Ok(Plan::AckOnly);
            }
            return Ok(Plan::Control(Box::new((execution, record))));
        }
        // An activity whose input this code cannot decode: the instance waits for code
        // that can, its task kept.
        if let Some(failure) = messages
            .iter()
            .filter(|d| d.is_for(incarnation, generation))
            .find_map(Delivery::undecodable_input)
        {
            tracing::error!(instance, error = %failure.message, "instance stalled");
            return Ok(Plan::Stall(Box::new((record, failure.clone()))));
        }
        let new: Vec<Event> = messages
            .iter()
            .filter(|d| d.is_for(incarnation, generation))
            .map(|d| d.event.clone())
            .collect();
        if new.len() < messages.len() {
            let stale = messages.len() - new.len();
            if messages.iter().any(|d| d.incarnation != incarnation) {
                tracing::warn!(
                    instance,
                    stale,
                    "events for an earlier run of the instance id (terminated, purged or restarted) dropped"
                );
            } else {
                tracing::debug!(instance, stale, "events of an earlier generation dropped");
            }
        }
        let (mut execution, recorded) = match execution {
            Some(execution) => (execution, Vec::new()),
            None => {
                let Some(entry) = self
                    .registry
                    .orchestrator(&record.orchestrator, record.version)
                else {
                    let failure = unregistered_orchestrator(
                        &record.orchestrator,
                        record.version,
                        self.unregistered,
                    );
                    return Ok(match self.unregistered {
                        Unregistered::Wait => Plan::Stall(Box::new((record, failure))),
                        Unregistered::Fail => Plan::Fail(Box::new((record, new, failure))),
                    });
                };
                let execution = Execution::new(
                    instance,
                    (incarnation, generation),
                    &record.orchestrator,
                    entry,
                    self.max_payload,
                    self.clock.clone(),
                );
                let history = if record.history_len == 0 {
                    Vec::new()
                } else {
                    self.replays.fetch_add(1, Ordering::Relaxed);
                    match self.store.history(instance) {
                        Ok(history) => history,
                        // A damaged history will not read better on a retry: park the
                        // instance, saying which record, and keep everything as it is.
                        Err(StoreError::Decode { what, detail }) => {
                            let failure = Failure {
                                message: format!(
                                    "its history cannot be read: stored {what} does not decode ({detail}); \
                                     repair or restore the store, then restart to resume"
                                ),
                                kind: FailureKind::Decode { type_name: what },
                            };
                            return Ok(Plan::Stall(Box::new((record, failure))));
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                (execution, history)
            }
        };
        let turn = execution.turn(&recorded, new);
        let stalled = match &turn.outcome {
            Outcome::Stalled(failure) => Some(failure.clone()),
            _ => self.missing_code(&turn.commands),
        };
        if let Some(failure) = stalled {
            tracing::error!(instance, error = %failure.message, "instance stalled");
            return Ok(Plan::Stall(Box::new((record, failure))));
        }

        let mut record = record;
        let mut commit = consumed(messages);
        let mut after = AfterCommit::default();
        if let Some(status) = turn.custom_status {
            record.custom_status = Some(status);
        }
        record.updated_ms = self.now_ms();
        if let Outcome::ContinuedAsNew {
            input,
            latest_version,
            events,
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
                events,
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
                let run = (incarnation, generation);
                self.command(instance, run, command, &mut commit, &mut after)?;
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
        // The last record of the commit, taken back by `finish`.
        commit.instances.push((instance.to_string(), record));
        Ok(Plan::Commit(Box::new(Turned {
            commit,
            after,
            incarnation,
            generation,
            execution,
            outcome: turn.outcome,
        })))
    }

    /// Once a turn's commit is durable: dispatches what it scheduled, and keeps the
    /// execution for the next turn or tells the waiters that the instance finished.
    fn finish(self: &Arc<Self>, instance: &str, turned: Turned) {
        let Turned {
            mut commit,
            after,
            incarnation,
            generation,
            execution,
            outcome,
        } = turned;
        for (id, item) in commit.enqueued.drain(..) {
            if let WorkItem::Activity(task) = item {
                self.run_activity(id, task);
            }
        }
        self.dispatch(instance, incarnation, generation, after);
        let (_, record) = commit
            .instances
            .pop()
            .expect("a turn's commit ends with the instance's record");
        match outcome {
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
    }

    /// When instances wait for missing code: the failure that stalls an instance whose
    /// turn calls an activity or a sub-orchestration this runtime does not have.
    fn missing_code(&self, commands: &[Command]) -> Option<Failure> {
        commands.iter().find_map(|command| match command {
            Command::ScheduleActivity { activity, .. } if self.waits_for_activity(activity) => {
                Some(unregistered_activity(activity, Unregistered::Wait))
            }
            Command::StartSubOrchestration {
                orchestrator,
                version,
                ..
            } if self.waits_for_orchestrator(orchestrator, *version) => Some(
                unregistered_orchestrator(orchestrator, *version, Unregistered::Wait),
            ),
            _ => None,
        })
    }

    /// Turns a command of the replay step, issued by run `(incarnation, generation)` of
    /// `instance`, into work items of `commit`.
    fn command(
        &self,
        instance: &str,
        (incarnation, generation): (Incarnation, u32),
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
                attempt_timeout_ms,
            } => {
                let task = ActivityTask {
                    instance: instance.to_string(),
                    incarnation,
                    generation,
                    seq,
                    key_seq,
                    activity,
                    input,
                    attempt,
                    attempt_timeout_ms,
                };
                commit
                    .enqueued
                    .push((self.work_id(), WorkItem::Activity(task)));
            }
            Command::CreateTimer { seq, fire_at_ms } => {
                let id = self.work_id();
                commit.enqueued.push((
                    id,
                    WorkItem::Timer {
                        instance: instance.to_string(),
                        incarnation,
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
                let rejected = |message: String| Failure {
                    kind: FailureKind::Rejected,
                    message,
                };
                // The id the runtime generates for this step, of the reserved form; any
                // other id is checked as a client's start would check it.
                let generated =
                    crate::client::generated_child_id(instance, incarnation, generation, seq);
                let checked = if child == generated {
                    Ok(())
                } else {
                    crate::client::check_user_instance_id(&child)
                };
                let mut replaced = None;
                let refused = if let Err(e) = checked {
                    Some(rejected(e.to_string()))
                } else if self.registry.orchestrator(&orchestrator, version).is_none() {
                    Some(unregistered_orchestrator(
                        &orchestrator,
                        version,
                        Unregistered::Fail,
                    ))
                } else if commit.instances.iter().any(|(id, _)| *id == child) {
                    Some(rejected(format!(
                        "instance `{child}` is started twice in one turn; give each sub-orchestration its own id"
                    )))
                } else {
                    // A finished instance under the id is replaced (the retry-a-child
                    // pattern); one that has not finished is not.
                    match self.store.instance(&child)? {
                        Some(existing) if !existing.status.is_terminal() => {
                            Some(rejected(format!(
                                "instance `{child}` already exists and is {}; give the sub-orchestration another id, or start it again once that instance has finished",
                                existing.status.name()
                            )))
                        }
                        existing => {
                            replaced = existing;
                            None
                        }
                    }
                };
                if let Some(failure) = refused {
                    let event = Event::SubOrchestrationFailed { seq, failure };
                    let run = (incarnation, Some(generation));
                    self.enqueue_message(instance, run, event, commit, after);
                    return Ok(());
                }
                if let Some(old) = &replaced {
                    commit
                        .histories_removed
                        .push((child.clone(), old.history_len));
                    self.forget(&child);
                }
                let parent = ParentLink {
                    instance: instance.to_string(),
                    incarnation,
                    generation,
                    seq,
                };
                let record = InstanceRecord::pending(
                    orchestrator.clone(),
                    version,
                    input.clone(),
                    self.now_ms(),
                    Shared::new_incarnation(replaced.map(|old| old.incarnation)),
                    Some(parent),
                );
                let run = (record.incarnation, Some(0));
                commit.instances.push((child.clone(), record));
                let started = Event::Started {
                    orchestrator,
                    input,
                };
                self.enqueue_message(&child, run, started, commit, after);
            }
        }
        Ok(())
    }

    /// Adds a message for `instance` to `commit`, delivered once it is durable.
    /// `(incarnation, generation)` is the run it is for (any generation if `None`).
    pub(crate) fn enqueue_message(
        &self,
        instance: &str,
        (incarnation, generation): (Incarnation, Option<u32>),
        event: Event,
        commit: &mut Commit,
        after: &mut impl Extend<(String, Delivery)>,
    ) {
        let id = self.work_id();
        commit.enqueued.push((
            id,
            WorkItem::Message {
                instance: instance.to_string(),
                incarnation,
                generation,
                event: event.clone(),
            },
        ));
        after.extend([(
            instance.to_string(),
            Delivery {
                id,
                incarnation,
                generation,
                event,
                progress_key: None,
                undecodable: None,
            },
        )]);
    }

    /// Starts the next generation: the history is removed and restarts with a `Started`
    /// event carrying `input`, then the external `events` the last generation did not take.
    fn continue_as_new(
        &self,
        instance: &str,
        record: &mut InstanceRecord,
        input: Vec<u8>,
        events: &[(String, Vec<u8>)],
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
        let run = (record.incarnation, Some(record.generation));
        self.enqueue_message(instance, run, started, commit, after);
        for (name, payload) in events {
            let raised = Event::EventRaised {
                name: name.clone(),
                payload: payload.clone(),
            };
            self.enqueue_message(instance, run, raised, commit, after);
        }
    }

    /// If `record` is a sub-orchestration, adds its result as a message to its parent.
    pub(crate) fn tell_parent(
        &self,
        record: &InstanceRecord,
        commit: &mut Commit,
        after: &mut AfterCommit,
    ) {
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
            (parent.incarnation, Some(parent.generation)),
            event,
            commit,
            after,
        );
    }

    /// Arms the timers and delivers the messages of a durable commit. Those `instance`
    /// sent itself (the start of its next generation and the events it carries over, a
    /// refused child's failure) go ahead of whatever reached it while the turn ran: they
    /// happened at the turn.
    /// `(incarnation, generation)` is the run of `instance` that made the commit.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        instance: &str,
        incarnation: Incarnation,
        generation: u32,
        after: AfterCommit,
    ) {
        for (id, seq, fire_at_ms) in after.timers {
            let run = (incarnation, generation);
            self.arm_timer(id, instance.to_string(), run, seq, fire_at_ms);
        }
        let (own, others): (Vec<_>, Vec<_>) = after
            .deliveries
            .into_iter()
            .partition(|(target, _)| target == instance);
        if !own.is_empty() {
            self.deliver_first(instance, own.into_iter().map(|(_, d)| d));
        }
        for (target, delivery) in others {
            self.deliver(target, delivery);
        }
    }
}

impl Extend<(String, Delivery)> for AfterCommit {
    fn extend<I: IntoIterator<Item = (String, Delivery)>>(&mut self, iter: I) {
        self.deliveries.extend(iter);
    }
}

/// A commit that acknowledges `messages`: their work items, and the progress of the
/// activities whose results they are.
pub(crate) fn consumed(messages: &[Delivery]) -> Commit {
    Commit {
        dequeued: messages.iter().map(|d| d.id).collect(),
        progress: messages
            .iter()
            .filter_map(|d| Some((d.progress_key.clone()?, None)))
            .collect(),
        ..Commit::default()
    }
}
