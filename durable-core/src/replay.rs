//! The replay engine: one turn of an orchestration as a pure step.
//!
//! An [`Execution`] holds a live orchestrator future and what it has seen. A turn feeds it
//! events (the recorded history, on a fresh execution, then the new events) and polls the
//! future once; what comes out is the events to append to the history, the activities to
//! schedule, and the instance's new state. No I/O happens here: the runtime loads, commits
//! and dispatches.
//!
//! Durable operations get sequence numbers in program order, assigned when they are
//! called. An operation whose number is already in the history must match what the
//! history recorded (kind, name, await site) or the turn stops with a nondeterminism
//! failure; its result is served from the history.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use durable_store::{Event, Failure, FailureKind, Site};

use crate::OrchestrationContext;
use crate::error::ActivityError;
use crate::handle::Orchestrator;
use crate::registry::{ErasedFuture, OrchestratorEntry, Registry, panic_message};

/// The result of a durable step, as delivered to the orchestrator.
pub(crate) type StepResult = Result<Vec<u8>, ActivityError>;

/// An activity the turn asks the runtime to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledActivity {
    /// Step number.
    pub seq: u64,
    /// Registered activity name.
    pub activity: String,
    /// Encoded input.
    pub input: Vec<u8>,
}

/// Where the instance stands after a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting for results of durable operations.
    Running,
    /// The orchestrator returned `Ok` with this encoded output.
    Completed(Vec<u8>),
    /// The orchestrator returned `Err`, panicked, or a payload did not decode.
    Failed(Failure),
    /// The code does not replay the history. Nothing of the turn may be committed: the
    /// history and the new events stay as they are until fixed code is deployed.
    Stalled(Failure),
}

/// What one turn produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Events to append to the history: the new events fed in, then those the code emitted.
    pub appended: Vec<Event>,
    /// Activities to schedule.
    pub activities: Vec<ScheduledActivity>,
    /// The instance's state after the turn.
    pub outcome: Outcome,
}

/// A durable step as the history records it.
#[derive(Debug)]
struct Step {
    activity: String,
    site: Site,
    done: bool,
}

/// What the orchestrator's context shares with the execution driving it.
#[derive(Debug)]
pub(crate) struct ReplayState {
    pub(crate) orchestrator: String,
    pub(crate) fn_line: u32,
    /// Steps recorded in history (and committed), by sequence number.
    steps: Vec<Step>,
    /// Number of steps that were in the history before the current poll began.
    recorded: usize,
    /// Results delivered and not yet taken by their future.
    results: HashMap<u64, StepResult>,
    next_seq: u64,
    emitted: Vec<Event>,
    scheduled: Vec<ScheduledActivity>,
    /// Set when the turn must stop: nondeterminism, or a payload that does not decode.
    fatal: Option<Outcome>,
}

impl ReplayState {
    fn new(orchestrator: &str, fn_line: u32) -> Self {
        Self {
            orchestrator: orchestrator.to_string(),
            fn_line,
            steps: Vec::new(),
            recorded: 0,
            results: HashMap::new(),
            next_seq: 0,
            emitted: Vec::new(),
            scheduled: Vec::new(),
            fatal: None,
        }
    }

    /// Whether the code is re-running steps the history already holds.
    pub(crate) fn is_replaying(&self) -> bool {
        (self.next_seq as usize) < self.recorded
    }

    /// Records a call of activity `activity` issued at `site`; returns its step number.
    pub(crate) fn schedule_activity(&mut self, activity: &str, input: Vec<u8>, site: Site) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.fatal.is_some() {
            return seq;
        }
        match self.steps.get(seq as usize) {
            Some(step) if step.activity == activity && same_site(&step.site, &site) => {}
            Some(step) => {
                let message = format!(
                    "step {seq}: history has activity `{}` ({}) but the code now calls activity `{activity}` ({site})",
                    step.activity, step.site
                );
                self.fatal = Some(nondeterminism(message));
            }
            None => {
                self.emitted.push(Event::ActivityScheduled {
                    seq,
                    activity: activity.to_string(),
                    input: input.clone(),
                    site: site.clone(),
                });
                self.steps.push(Step {
                    activity: activity.to_string(),
                    site,
                    done: false,
                });
                self.scheduled.push(ScheduledActivity {
                    seq,
                    activity: activity.to_string(),
                    input,
                });
            }
        }
        seq
    }

    /// The result of step `seq`, if it has arrived; taken, so it is handed out once.
    pub(crate) fn take_result(&mut self, seq: u64) -> Option<StepResult> {
        if self.fatal.is_some() {
            return None;
        }
        self.results.remove(&seq)
    }

    /// Stops the turn because a stored payload no longer decodes.
    pub(crate) fn fail_decode(&mut self, failure: Failure) {
        self.fatal.get_or_insert(Outcome::Failed(failure));
    }

    /// Applies one event. Returns false for an event that has nothing to apply to (a
    /// result for a step never scheduled or already finished), which is then dropped.
    fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::ActivityScheduled {
                seq,
                activity,
                site,
                ..
            } => {
                debug_assert_eq!(*seq as usize, self.steps.len());
                self.steps.push(Step {
                    activity: activity.clone(),
                    site: site.clone(),
                    done: false,
                });
                true
            }
            Event::ActivityCompleted { seq, output } => self.deliver(*seq, |_| Ok(output.clone())),
            Event::ActivityFailed {
                seq,
                attempt,
                failure,
            } => self.deliver(*seq, |step| {
                Err(ActivityError::new(
                    step.activity.clone(),
                    *attempt,
                    failure.clone(),
                ))
            }),
            Event::Started { .. } | Event::Completed { .. } | Event::Failed { .. } => true,
        }
    }

    fn deliver(&mut self, seq: u64, result: impl FnOnce(&Step) -> StepResult) -> bool {
        match self.steps.get_mut(seq as usize) {
            Some(step) if !step.done => {
                step.done = true;
                let result = result(step);
                self.results.insert(seq, result);
                true
            }
            _ => false,
        }
    }
}

fn same_site(recorded: &Site, now: &Site) -> bool {
    recorded.function == now.function && recorded.line_offset == now.line_offset
}

fn nondeterminism(message: String) -> Outcome {
    Outcome::Stalled(Failure {
        kind: FailureKind::Nondeterminism,
        message,
    })
}

/// A live orchestration: the orchestrator's future and the state it shares with its
/// context. Kept in the runtime's cache between turns so the steady state never replays.
pub struct Execution {
    instance: String,
    entry_start: fn(OrchestrationContext, &[u8]) -> Result<ErasedFuture, Failure>,
    state: Arc<Mutex<ReplayState>>,
    future: Option<ErasedFuture>,
    finished: bool,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("instance", &self.instance)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Execution {
    /// A fresh execution of orchestrator `O` as instance `instance`: feed it the
    /// instance's history with [`turn`](Self::turn). Replay tests use it to run code
    /// against saved histories.
    pub fn of<O: Orchestrator>(_orchestrator: O, instance: &str) -> Self {
        let mut registry = Registry::default();
        registry.add_orchestrator::<O>();
        Self::new(instance, O::NAME, &registry.orchestrators[O::NAME])
    }

    pub(crate) fn new(instance: &str, orchestrator: &str, entry: &OrchestratorEntry) -> Self {
        Self {
            instance: instance.to_string(),
            entry_start: entry.start,
            state: Arc::new(Mutex::new(ReplayState::new(orchestrator, entry.line))),
            future: None,
            finished: false,
        }
    }

    fn state(&self) -> MutexGuard<'_, ReplayState> {
        lock(&self.state)
    }

    /// Runs one turn: applies `recorded` (events already in the history; only on a fresh
    /// execution) and `new` (events to append), then polls the orchestrator once.
    pub fn turn(&mut self, recorded: &[Event], new: Vec<Event>) -> Turn {
        let mut appended = Vec::with_capacity(new.len() + 2);
        for event in recorded {
            self.apply(event);
        }
        {
            let mut state = self.state();
            state.recorded = state.steps.len();
        }
        for event in new {
            if self.apply(&event) {
                appended.push(event);
            }
        }
        if self.finished {
            return Turn {
                appended,
                activities: Vec::new(),
                outcome: Outcome::Running,
            };
        }
        let outcome = self.poll();
        let mut state = self.state();
        appended.append(&mut state.emitted);
        let activities = std::mem::take(&mut state.scheduled);
        state.recorded = state.steps.len();
        drop(state);
        match &outcome {
            Outcome::Completed(output) => appended.push(Event::Completed {
                output: output.clone(),
            }),
            Outcome::Failed(failure) => appended.push(Event::Failed {
                failure: failure.clone(),
            }),
            Outcome::Running | Outcome::Stalled(_) => {}
        }
        if !matches!(outcome, Outcome::Running) {
            self.finished = true;
            self.future = None;
        }
        Turn {
            appended,
            activities,
            outcome,
        }
    }

    fn apply(&mut self, event: &Event) -> bool {
        if let Event::Started { input, .. } = event {
            if self.future.is_some() || self.finished {
                return false;
            }
            let ctx = OrchestrationContext::new(self.instance.clone(), self.state.clone());
            match (self.entry_start)(ctx, input) {
                Ok(future) => self.future = Some(future),
                Err(failure) => self.state().fail_decode(failure),
            }
            return true;
        }
        self.state().apply(event)
    }

    fn poll(&mut self) -> Outcome {
        if let Some(fatal) = self.state().fatal.clone() {
            return fatal;
        }
        let Some(future) = self.future.as_mut() else {
            // No `Started` event yet: nothing to run.
            return Outcome::Running;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let state = self.state();
        if let Some(fatal) = state.fatal.clone() {
            return fatal;
        }
        match polled {
            Err(panic) => Outcome::Failed(Failure {
                kind: FailureKind::Panicked,
                message: format!(
                    "orchestrator `{}` panicked: {}",
                    state.orchestrator,
                    panic_message(&*panic)
                ),
            }),
            Ok(Poll::Ready(result)) => {
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return nondeterminism(format!(
                        "step {}: history has activity `{}` ({}) but the code now returns without calling it",
                        state.next_seq, step.activity, step.site
                    ));
                }
                match result {
                    Ok(output) => Outcome::Completed(output),
                    Err(failure) => Outcome::Failed(failure),
                }
            }
            Ok(Poll::Pending) => {
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return nondeterminism(format!(
                        "step {}: history has activity `{}` ({}) but the code now waits without calling it",
                        state.next_seq, step.activity, step.site
                    ));
                }
                if state.steps.iter().all(|s| s.done) {
                    return Outcome::Stalled(Failure {
                        kind: FailureKind::Nondeterminism,
                        message: format!(
                            "orchestrator `{}` is waiting on something that is not a durable operation \
                             (a tokio timer, a channel, a socket?): after step {} every durable operation \
                             has its result; await only `ctx` operations in an orchestrator",
                            state.orchestrator,
                            state.next_seq.saturating_sub(1)
                        ),
                    });
                }
                Outcome::Running
            }
        }
    }
}

/// Locks the replay state. A panic in user code never happens while it is held, so a
/// poisoned lock still holds consistent state.
pub(crate) fn lock(state: &Mutex<ReplayState>) -> MutexGuard<'_, ReplayState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
