//! Planning a turn: load (or reuse) the execution, run the pure replay step, and turn its
//! outcome and commands into one atomic commit, before anything is written. The turn
//! task ([`super::turns`]) commits the plan and sends what it leaves behind.

use std::sync::Arc;

use durable_store::{ActivityTask, Commit, Event, Failure, HistoryAppend, InstanceRecord};
use durable_store::{ParentLink, Status, StoreError, WorkItem};

use super::engine::Engine;
use super::entities;
use super::entity_messages;
use super::inbox::{Delivery, Recipient, Run};
use super::outbox::{Outbox, consumed};
use super::timer_arming::{self, START_SEQ};
use super::unregistered::Unregistered;
use crate::entity::EntityId;
use crate::error::Error;
use crate::failure;
use crate::instance_id::{check_user_instance_id, generated_child_id};
use crate::orchestration_context::OrchestrationContext;
use crate::replay::execution::Execution;
use crate::replay::turn::{CarriedEvent, Command, Outcome};
use crate::telemetry::{TraceContext, metrics, spans};

/// What a turn comes to before anything is written. The payloads are boxed so that the
/// task awaiting a turn's commit stays small: one is spawned for every instance that gets
/// an event, and a task of more than a kilobyte costs the allocator far more.
pub(in crate::runtime) enum Plan {
    /// A turn to commit.
    Commit(Box<Turned>),
    /// Nothing to turn (the instance is unknown or finished): acknowledge the messages.
    AckOnly,
    /// A client's request, the turn's only message.
    Request(Box<RequestPlan>),
    /// The instance cannot go on with this code.
    Stall(Box<StallPlan>),
    /// The instance's orchestrator is missing and the runtime fails such instances.
    Fail(Box<FailPlan>),
    /// The instance is an entity ([`super::entities`]): its record.
    Entity(Box<InstanceRecord>),
}

/// A client's request to apply ([`super::control`]).
pub(in crate::runtime) struct RequestPlan {
    /// The cached execution, kept if the instance goes on.
    pub(in crate::runtime) execution: Option<Execution>,
    pub(in crate::runtime) record: InstanceRecord,
}

/// An instance to stall ([`super::verdicts::stall`]).
pub(in crate::runtime) struct StallPlan {
    pub(in crate::runtime) record: InstanceRecord,
    /// Why it cannot go on.
    pub(in crate::runtime) failure: Failure,
}

/// An instance to fail, its orchestrator missing ([`super::verdicts::fail`]).
pub(in crate::runtime) struct FailPlan {
    pub(in crate::runtime) record: InstanceRecord,
    /// The turn's new events, recorded before the failure.
    pub(in crate::runtime) new: Vec<Event>,
    pub(in crate::runtime) failure: Failure,
}

/// A turn's commit and what it leaves behind once the commit is durable. The instance's
/// new record is the last of `commit.instances`, and the activities it scheduled are in
/// `commit.enqueued`: the turn task takes them back from the written commit, not from
/// copies.
pub(in crate::runtime) struct Turned {
    pub(in crate::runtime) commit: Commit,
    pub(in crate::runtime) outbox: Outbox,
    /// The run that made the turn.
    pub(in crate::runtime) run: Run,
    pub(in crate::runtime) execution: Execution,
    pub(in crate::runtime) outcome: Outcome,
    /// The entities the turn sends messages to, whose records the turn task makes if
    /// absent ([`entity_messages::create_targets`]).
    pub(in crate::runtime) entities: Vec<EntityId>,
    /// The turn's span, under which its commit and its sends run.
    pub(in crate::runtime) span: tracing::Span,
    /// The trace the turn joined, which the activities it scheduled join too.
    pub(in crate::runtime) trace: Option<Arc<TraceContext>>,
}

/// The start of an instance's next generation (continue-as-new).
struct NextGeneration<'a> {
    /// Its input.
    input: Vec<u8>,
    /// The external events the last generation did not take, in the order they arrived,
    /// raised again to the next.
    carried_events: &'a [CarriedEvent],
    /// The trace the last generation's turn joined, which the next one joins.
    trace: Option<&'a TraceContext>,
    /// The execution deadline of the chain, in milliseconds since the Unix epoch, which
    /// the next generation's history records again (its timer serves every generation).
    deadline_ms: Option<u64>,
}

fn stall(record: InstanceRecord, failure: Failure) -> Plan {
    Plan::Stall(Box::new(StallPlan { record, failure }))
}

/// Loads (or reuses) the execution, runs the replay step and builds the turn's commit.
pub(in crate::runtime) fn plan(
    engine: &Engine,
    instance: &str,
    messages: &[Delivery],
) -> Result<Plan, Error> {
    let cached = engine.take_cached(instance);
    let (execution, record) = match cached {
        Some(c) => (c.execution, c.record),
        None => match engine.store().instance(instance)? {
            None => {
                tracing::warn!(instance, "events for an unknown instance dropped");
                return Ok(Plan::AckOnly);
            }
            Some(record) => (None, record),
        },
    };
    if entities::is_entity(instance, &record) {
        return Ok(Plan::Entity(Box::new(record)));
    }
    if record.status.is_terminal() {
        return Ok(Plan::AckOnly);
    }
    let run = Run::of(&record);
    if let [control] = messages
        && control.is_control()
    {
        if control.incarnation != run.incarnation {
            tracing::warn!(
                instance,
                "a request for an earlier run of the instance id dropped"
            );
            return Ok(Plan::AckOnly);
        }
        return Ok(Plan::Request(Box::new(RequestPlan { execution, record })));
    }
    // An activity whose input this code cannot decode: the instance waits for code that
    // can, its task kept.
    if let Some(failure) = messages
        .iter()
        .filter(|d| d.is_for(run))
        .find_map(Delivery::undecodable_input)
    {
        tracing::error!(instance, error = %failure.message, "instance stalled");
        return Ok(stall(record, failure.clone()));
    }
    let new: Vec<Event> = messages
        .iter()
        .filter(|d| d.is_for(run))
        .map(|d| match d.event {
            // A delayed start's time came: the instance starts with what it was started
            // with (its record's input; a second `Started` is dropped by replay).
            Event::TimerFired { seq: START_SEQ } => Event::Started {
                orchestrator: record.orchestrator.clone(),
                input: record.input.clone(),
            },
            _ => d.event.clone(),
        })
        .collect();
    if new.len() < messages.len() {
        let stale = messages.len() - new.len();
        if messages.iter().any(|d| d.incarnation != run.incarnation) {
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
            let registry = engine.registry();
            let Some(entry) = registry.orchestrator(&record.orchestrator, record.version) else {
                let unregistered = engine.unregistered();
                let failure = failure::unregistered_orchestrator(
                    &record.orchestrator,
                    record.version,
                    unregistered,
                );
                return Ok(match unregistered {
                    Unregistered::Wait => stall(record, failure),
                    Unregistered::Fail => Plan::Fail(Box::new(FailPlan {
                        record,
                        new,
                        failure,
                    })),
                });
            };
            let execution = Execution::new(
                instance,
                run,
                &record.orchestrator,
                engine.max_payload(),
                OrchestrationContext::starter(entry.start, entry.line, engine.clock().clone()),
            );
            let history = if record.history_len == 0 {
                Vec::new()
            } else {
                engine.count_replay();
                metrics::replay();
                match engine.store().history(instance) {
                    Ok(history) => history,
                    // A damaged history will not read better on a retry: park the
                    // instance, saying which record, and keep everything as it is.
                    Err(StoreError::Decode { what, detail, .. }) => {
                        let failure = failure::undecodable_history(what, &detail);
                        return Ok(stall(record, failure));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            (execution, history)
        }
    };
    // The last trace context: of the new events, else of the history (replayed now, or
    // applied by the cached execution's earlier turns).
    let trace = TraceContext::last_in(new.iter())
        .or_else(|| TraceContext::last_in(recorded.iter()))
        .map(Arc::new)
        .or_else(|| execution.trace_context());
    let span = spans::turn(
        instance,
        &record.orchestrator,
        run.generation,
        engine.worker(),
        new.len(),
        trace.as_deref(),
    );
    // The first generation arms its execution deadline when it arrives; the next ones
    // get it again for their history, under the same timer.
    let new_deadline = (run.generation == 0)
        .then(|| {
            new.iter().find_map(|event| match event {
                Event::ExecutionDeadline { at_ms } => Some(*at_ms),
                _ => None,
            })
        })
        .flatten();
    let turn = span.in_scope(|| execution.turn(&recorded, with_turn_time(engine, new)));
    let stalled = match &turn.outcome {
        Outcome::Stalled(failure) => Some(failure.clone()),
        _ => missing_code(engine, &turn.commands),
    };
    if let Some(failure) = stalled {
        tracing::error!(instance, error = %failure.message, "instance stalled");
        return Ok(stall(record, failure));
    }

    let mut record = record;
    let mut commit = consumed(messages);
    let mut outbox = Outbox::default();
    let mut entities = Vec::new();
    timer_arming::store_deadline(
        engine,
        instance,
        run,
        new_deadline,
        &mut commit,
        &mut outbox,
    );
    if let Some(status) = turn.custom_status {
        record.custom_status = Some(status);
    }
    record.updated_ms = engine.now_ms();
    if let Outcome::ContinuedAsNew {
        input,
        latest_version,
        events,
    } = &turn.outcome
    {
        if *latest_version
            && let Some(latest) = engine.registry().latest_version(&record.orchestrator)
        {
            record.version = latest;
        }
        // What this generation sent entities goes out with its end (its signals, and the
        // unlocks of what it held); the results of its other steps would reach no one.
        for command in turn.commands {
            entity_messages::send(
                engine,
                instance,
                run,
                command,
                &mut commit,
                &mut outbox,
                &mut entities,
            );
        }
        let next = NextGeneration {
            input: input.clone(),
            carried_events: events,
            trace: trace.as_deref(),
            deadline_ms: execution.execution_deadline(),
        };
        continue_as_new(
            engine,
            instance,
            &mut record,
            next,
            &mut commit,
            &mut outbox,
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
            let Some(command) = entity_messages::send(
                engine,
                instance,
                run,
                command,
                &mut commit,
                &mut outbox,
                &mut entities,
            ) else {
                continue;
            };
            let trace = trace.as_deref();
            schedule(
                engine,
                instance,
                run,
                trace,
                command,
                &mut commit,
                &mut outbox,
            )?;
        }
        record.status = match &turn.outcome {
            Outcome::Completed(output) => Status::Completed {
                output: output.clone(),
            },
            Outcome::Failed(failure) => Status::Failed {
                failure: failure.clone(),
            },
            // Events that came before its (delayed) start: still pending.
            _ if !execution.started() => record.status.clone(),
            _ => Status::Running,
        };
        if record.status.is_terminal() {
            outbox.tell_parent(engine, &record, &mut commit);
        }
    }
    // Under watch after a recovery: this commit clears its count; ending, removes it
    // (`dead_letter`).
    engine
        .recovery_watch()
        .clear_in(instance, &record, &mut commit);
    // The last record of the commit, taken back by the turn task.
    commit.instances.push((instance.to_string(), record));
    Ok(Plan::Commit(Box::new(Turned {
        commit,
        outbox,
        run,
        execution,
        outcome: turn.outcome,
        entities,
        span,
        trace,
    })))
}

/// When instances wait for missing code: the failure that stalls an instance whose turn
/// calls an activity or a sub-orchestration this runtime does not have.
fn missing_code(engine: &Engine, commands: &[Command]) -> Option<Failure> {
    commands.iter().find_map(|command| match command {
        Command::ScheduleActivity { activity, .. } if engine.waits_for_activity(activity) => {
            Some(failure::unregistered_activity(activity, Unregistered::Wait))
        }
        Command::StartSubOrchestration {
            orchestrator,
            version,
            ..
        } if engine.waits_for_orchestrator(orchestrator, *version) => Some(
            failure::unregistered_orchestrator(orchestrator, *version, Unregistered::Wait),
        ),
        _ => None,
    })
}

/// Turns a command of the replay step, issued by `run` of `instance` in a turn that
/// joined `trace`, into work items of `commit`.
fn schedule(
    engine: &Engine,
    instance: &str,
    run: Run,
    trace: Option<&TraceContext>,
    command: Command,
    commit: &mut Commit,
    outbox: &mut Outbox,
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
                incarnation: run.incarnation,
                generation: run.generation,
                seq,
                key_seq,
                activity,
                input,
                attempt,
                attempt_timeout_ms,
            };
            commit
                .enqueued
                .push((engine.work_id(), WorkItem::Activity(task)));
        }
        Command::CreateTimer { seq, fire_at_ms } => {
            let timer = timer_arming::store_timer(engine, instance, run, seq, fire_at_ms, commit);
            outbox.timers.push(timer);
        }
        Command::StartSubOrchestration {
            seq,
            orchestrator,
            version,
            instance: child,
            input,
        } => {
            // The id the runtime generates for this step, of the reserved form; any other
            // id is checked as a client's start would check it.
            let generated = generated_child_id(instance, run.incarnation, run.generation, seq);
            let checked = if child == generated {
                Ok(())
            } else {
                check_user_instance_id(&child)
            };
            let mut replaced = None;
            let refused = if let Err(e) = checked {
                Some(failure::rejected(e.to_string()))
            } else if engine
                .registry()
                .orchestrator(&orchestrator, version)
                .is_none()
                // On a shared store the child is left for a worker that has it (the
                // commit releases it).
                && !engine.is_shared()
            {
                Some(failure::unregistered_orchestrator(
                    &orchestrator,
                    version,
                    Unregistered::Fail,
                ))
            } else if commit.instances.iter().any(|(id, _)| *id == child) {
                Some(failure::rejected(format!(
                    "instance `{child}` is started twice in one turn; give each sub-orchestration its own id"
                )))
            } else {
                // A finished instance under the id is replaced (the retry-a-child
                // pattern); one that has not finished is not.
                match engine.store().instance(&child)? {
                    Some(existing) if !existing.status.is_terminal() => {
                        Some(failure::rejected(format!(
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
                outbox.enqueue(engine, instance, run.into(), event, commit);
                return Ok(());
            }
            // A client (or another parent) may create the id between the read above and
            // this commit: the store refuses it then, and the turn runs again on what
            // it holds, rather than writing the child over that instance.
            commit
                .expected
                .push((child.clone(), replaced.as_ref().map(|old| old.incarnation)));
            if let Some(old) = &replaced {
                commit
                    .histories_removed
                    .push((child.clone(), old.history_len));
                engine.forget(&child);
            }
            let parent = ParentLink {
                instance: instance.to_string(),
                incarnation: run.incarnation,
                generation: run.generation,
                seq,
            };
            let record = InstanceRecord::pending(
                orchestrator.clone(),
                version,
                input.clone(),
                engine.now_ms(),
                Engine::new_incarnation(replaced.map(|old| old.incarnation)),
                Some(parent),
            );
            let to = Recipient {
                incarnation: record.incarnation,
                generation: Some(0),
            };
            commit.instances.push((child.clone(), record));
            let started = Event::Started {
                orchestrator,
                input,
            };
            outbox.enqueue(engine, &child, to, started, commit);
            if let Some(trace) = trace {
                outbox.enqueue(engine, &child, to, trace.to_event(), commit);
            }
        }
        _ => unreachable!("entity commands are sent by `entity_messages::send`"),
    }
    Ok(())
}

/// Starts the next generation: the history is removed and restarts with a `Started`
/// event carrying `next.input`, then the external events the last generation did not
/// take.
fn continue_as_new(
    engine: &Engine,
    instance: &str,
    record: &mut InstanceRecord,
    next: NextGeneration<'_>,
    commit: &mut Commit,
    outbox: &mut Outbox,
) {
    commit
        .histories_removed
        .push((instance.to_string(), record.history_len));
    record.history_len = 0;
    record.generation += 1;
    record.input = next.input.clone();
    record.status = Status::Running;
    let started = Event::Started {
        orchestrator: record.orchestrator.clone(),
        input: next.input,
    };
    let to = Run::of(record).into();
    outbox.enqueue(engine, instance, to, started, commit);
    if let Some(at_ms) = next.deadline_ms {
        let deadline = Event::ExecutionDeadline { at_ms };
        outbox.enqueue(engine, instance, to, deadline, commit);
    }
    if let Some(trace) = next.trace {
        outbox.enqueue(engine, instance, to, trace.to_event(), commit);
    }
    for CarriedEvent { name, payload } in next.carried_events {
        let raised = Event::EventRaised {
            name: name.clone(),
            payload: payload.clone(),
        };
        outbox.enqueue(engine, instance, to, raised, commit);
    }
}

/// `new`, the events a turn brings, behind the turn's time ([`Event::TurnStarted`], what
/// tools read the history's times from): one marker per turn that appends events. A turn
/// that brings none appends none (the replay step drops a marker left alone).
pub(in crate::runtime) fn with_turn_time(engine: &Engine, mut new: Vec<Event>) -> Vec<Event> {
    if !new.is_empty() {
        new.insert(
            0,
            Event::TurnStarted {
                at_ms: engine.now_ms(),
            },
        );
    }
    new
}
