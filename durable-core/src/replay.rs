//! The replay engine: one turn of an orchestration as a pure step.
//!
//! An [`Execution`] holds a live orchestrator future and what it has seen. A turn feeds it
//! events (on a fresh execution the recorded history first, replayed in the turns it was
//! written in) and polls the future once for the new events; what comes out is the events to append to the history, the commands for
//! the runtime (activities to run, timers to set, sub-orchestrations to start), and the
//! instance's new state. No I/O happens here: the runtime loads, commits and dispatches.
//!
//! Durable operations get sequence numbers in program order, assigned when they are
//! called. An operation whose number is already in the history must match what the
//! history recorded (its kind and name) or the turn stops with a nondeterminism failure
//! naming both await sites; its result is served from the history.
//!
//! The recorded turns are replayed one by one, each polled before the next, and only
//! then are the new events applied and the code polled once more. A `patched` call
//! reached while a recorded turn replays answers `true` only if the history has its
//! marker at that step (the instance predates the change otherwise, whatever it awaited
//! next); reached on the new events, it records the marker (see `ReplayState::patched`
//! and the table in [`crate::determinism`]).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use durable_store::{Event, Failure, FailureKind, Incarnation, Site};

use crate::OrchestrationContext;
use crate::clock::{Clock, SystemClock};
use crate::external_event::EventQueues;
use crate::handle::Orchestrator;
use crate::payload;
use crate::registry::{ErasedFuture, OrchestratorEntry, Registry, panic_message};
use crate::replay_log;

/// What the turn asks the runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run an activity.
    ScheduleActivity {
        /// Step number.
        seq: u64,
        /// Registered activity name.
        activity: String,
        /// Encoded input.
        input: Vec<u8>,
        /// The step whose idempotency key the call uses (itself, or the first attempt of a
        /// retried call).
        key_seq: u64,
        /// The attempt this call is (1 unless it is a retry).
        attempt: u32,
        /// The longest one execution may run, in milliseconds (start-to-close); `None`
        /// for no limit.
        attempt_timeout_ms: Option<u64>,
    },
    /// Set a durable timer.
    CreateTimer {
        /// Step number.
        seq: u64,
        /// When it fires, milliseconds since the Unix epoch.
        fire_at_ms: u64,
    },
    /// Start a sub-orchestration.
    StartSubOrchestration {
        /// Step number.
        seq: u64,
        /// Registered name of the child orchestrator.
        orchestrator: String,
        /// The child orchestrator's version.
        version: u32,
        /// Instance id of the child.
        instance: String,
        /// Encoded input.
        input: Vec<u8>,
    },
}

/// Where the instance stands after a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting for results of durable operations.
    Running,
    /// The orchestrator returned `Ok` with this encoded output.
    Completed(Vec<u8>),
    /// The orchestrator returned `Err` or panicked, or a payload it made is over the limit.
    Failed(Failure),
    /// The orchestrator continues as new: its history restarts with this encoded input.
    ContinuedAsNew {
        /// The next generation's input.
        input: Vec<u8>,
        /// Whether the next generation moves to the newest registered version.
        latest_version: bool,
        /// External events this generation received and did not take (name, payload), in
        /// the order they arrived: raised again to the next generation, so none is lost.
        events: Vec<(String, Vec<u8>)>,
    },
    /// The code does not replay the history, or a payload does not decode as its type.
    /// Nothing of the turn may be committed: the history and the new events stay as they
    /// are until fixed code is deployed.
    Stalled(Failure),
}

/// What one turn produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Events to append to the history: the new events fed in, then those the code emitted.
    pub appended: Vec<Event>,
    /// What the runtime is to do.
    pub commands: Vec<Command>,
    /// The custom status, if the orchestrator set it this turn (not on replay: the
    /// statuses of replayed turns are already stored).
    pub custom_status: Option<Vec<u8>>,
    /// The instance's state after the turn.
    pub outcome: Outcome,
}

/// The kind of a durable step, as compared on replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StepKind {
    Activity(String),
    Timer,
    SubOrchestration(String),
    Recorded(String),
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepKind::Activity(name) => write!(f, "activity `{name}`"),
            StepKind::Timer => write!(f, "a timer"),
            StepKind::SubOrchestration(name) => write!(f, "sub-orchestration `{name}`"),
            StepKind::Recorded(what) => write!(f, "a recorded `{what}` value"),
        }
    }
}

/// A durable step as the history records it.
#[derive(Debug)]
struct Step {
    kind: StepKind,
    site: Site,
    done: bool,
    /// The value of a `Recorded` step; the child's instance id (UTF-8) of a recorded
    /// sub-orchestration step.
    value: Option<Vec<u8>>,
}

/// The result of a durable step, as delivered to its future.
#[derive(Clone, Debug)]
pub(crate) enum StepResult {
    Ok(Vec<u8>),
    Err { attempt: u32, failure: Failure },
}

/// A new step the code issued this turn, before it is numbered.
pub(crate) struct NewStep {
    pub(crate) kind: StepKind,
    pub(crate) site: Site,
    /// The history event recording it, given its number.
    pub(crate) event: Box<dyn FnOnce(u64) -> Event>,
    /// The command for the runtime, given its number.
    pub(crate) command: Option<Box<dyn FnOnce(u64) -> Command>>,
}

/// What the orchestrator's context shares with the execution driving it.
pub(crate) struct ReplayState {
    pub(crate) instance: String,
    /// The run of the instance (incarnation, generation): generated child ids carry it.
    pub(crate) run: (Incarnation, u32),
    pub(crate) orchestrator: String,
    pub(crate) fn_line: u32,
    /// The largest payload the code may make, in bytes.
    max_payload: usize,
    /// Steps recorded in history (and committed), by sequence number.
    steps: Vec<Step>,
    /// Results delivered and not yet taken, with the history position they arrived at.
    results: HashMap<u64, (u64, StepResult)>,
    next_seq: u64,
    /// Position of the next event applied: orders results, so races replay alike.
    position: u64,
    /// Position of the first event the current turn brought (not from the history).
    first_new_position: u64,
    /// Whether the code is re-running what it ran in earlier turns: it has neither
    /// issued a new step nor taken a result that arrived this turn.
    replaying: bool,
    emitted: Vec<Event>,
    commands: Vec<Command>,
    pub(crate) events: EventQueues,
    custom_status: Option<Vec<u8>>,
    continue_as_new: Option<(Vec<u8>, bool)>,
    /// What each `patched` change id answered, so later calls answer alike.
    patches: HashMap<String, bool>,
    /// Set when the turn must stop: nondeterminism, a payload that does not decode, or one
    /// over the limit.
    fatal: Option<Outcome>,
}

impl std::fmt::Debug for ReplayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayState")
            .field("instance", &self.instance)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ReplayState {
    fn new(
        instance: &str,
        run: (Incarnation, u32),
        orchestrator: &str,
        fn_line: u32,
        max_payload: usize,
    ) -> Self {
        Self {
            instance: instance.to_string(),
            run,
            orchestrator: orchestrator.to_string(),
            fn_line,
            max_payload,
            steps: Vec::new(),
            results: HashMap::new(),
            next_seq: 0,
            position: 0,
            first_new_position: 0,
            replaying: false,
            emitted: Vec::new(),
            commands: Vec::new(),
            events: EventQueues::default(),
            custom_status: None,
            continue_as_new: None,
            patches: HashMap::new(),
            fatal: None,
        }
    }

    /// Whether the code is re-running what it ran in earlier turns.
    pub(crate) fn is_replaying(&self) -> bool {
        self.replaying
    }

    /// The code got past what it ran before: from here on it runs for the first time.
    fn replay_done(&mut self) {
        if self.replaying {
            self.replaying = false;
            replay_log::unmute();
        }
    }

    /// Notes that the code took a result that arrived at `position`.
    pub(crate) fn took(&mut self, position: u64) {
        if position >= self.first_new_position {
            self.replay_done();
        }
    }

    /// Whether the next step the code issues is already in the history.
    pub(crate) fn next_is_recorded(&self) -> bool {
        (self.next_seq as usize) < self.steps.len()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.fatal.is_some()
    }

    /// Numbers a durable step the code issued; checks it against the history, or records
    /// it (event and command) when it is new. Returns its number.
    pub(crate) fn issue(&mut self, step: NewStep) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.fatal.is_some() {
            return seq;
        }
        match self.steps.get(seq as usize) {
            // Kind and name are compared, not the await site: the site is kept to point at
            // the code, but comparing lines would make any edit above a call (including a
            // `patched` branch) a breaking change.
            Some(recorded) if recorded.kind == step.kind => {}
            Some(recorded) => {
                let message = format!(
                    "step {seq}: history has {} ({}) but the code now asks for {} ({})",
                    recorded.kind, recorded.site, step.kind, step.site
                );
                self.fatal = Some(nondeterminism(message));
            }
            None => {
                self.replay_done();
                let event = (step.event)(seq);
                let value = match &event {
                    Event::Recorded { value, .. } => Some(value.clone()),
                    _ => None,
                };
                self.emitted.push(event);
                if let Some(command) = step.command {
                    self.commands.push(command(seq));
                }
                self.steps.push(Step {
                    done: value.is_some(),
                    kind: step.kind,
                    site: step.site,
                    value,
                });
            }
        }
        seq
    }

    /// The value recorded at step `seq` (a `Recorded` step).
    pub(crate) fn recorded_value(&self, seq: u64) -> Option<Vec<u8>> {
        self.steps.get(seq as usize)?.value.clone()
    }

    /// The child's instance id the history recorded for sub-orchestration step `seq`.
    pub(crate) fn recorded_child(&self, seq: u64) -> Option<String> {
        let step = self.steps.get(seq as usize)?;
        match step.kind {
            StepKind::SubOrchestration(_) => String::from_utf8(step.value.clone()?).ok(),
            _ => None,
        }
    }

    /// The history position at which the result of step `seq` arrived, if it has.
    pub(crate) fn ready_at(&self, seq: u64) -> Option<u64> {
        if self.fatal.is_some() {
            return None;
        }
        self.results.get(&seq).map(|(position, _)| *position)
    }

    /// The result of step `seq`, if it has arrived; taken, so it is handed out once.
    pub(crate) fn take_result(&mut self, seq: u64) -> Option<StepResult> {
        if self.fatal.is_some() {
            return None;
        }
        let (position, result) = self.results.remove(&seq)?;
        self.took(position);
        Some(result)
    }

    /// The kind of step `seq`.
    pub(crate) fn step_kind(&self, seq: u64) -> Option<&StepKind> {
        self.steps.get(seq as usize).map(|s| &s.kind)
    }

    /// Stops the turn because a payload does not decode (or encode) as the code's type.
    /// The instance stalls, as on a nondeterminism: nothing of the turn is committed, its
    /// messages are kept, and code that reads the payload again (a fix, a rollback)
    /// resumes it where it was.
    pub(crate) fn stall_payload(&mut self, failure: Failure) {
        self.fatal.get_or_insert(Outcome::Stalled(failure));
    }

    /// Sets aside event `index` of `name`, whose payload does not decode as the type a
    /// wait expects (`failure` says so): it leaves the queue and is recorded in the
    /// history, and the wait goes on to the next event. Returns false, stalling the
    /// instance instead, when the code is replaying: an event it took in an earlier turn
    /// no longer decodes, so its type changed under a running instance.
    pub(crate) fn set_aside_event(
        &mut self,
        name: &str,
        index: u32,
        payload: Vec<u8>,
        failure: Failure,
    ) -> bool {
        if self.replaying {
            self.stall_payload(failure);
            return false;
        }
        tracing::warn!(
            instance = %self.instance,
            event = name,
            error = %failure.message,
            "event set aside: its payload does not decode as the type the orchestrator waits for"
        );
        self.events.set_aside(name, index);
        self.emitted.push(Event::EventSetAside {
            name: name.to_string(),
            index,
            payload,
            reason: failure.message,
        });
        true
    }

    /// Whether `bytes`, a payload the code made (`what` names it), fits the limit; if
    /// not, the instance fails and nothing of the payload is recorded.
    pub(crate) fn fits(&mut self, what: impl FnOnce() -> String, bytes: &[u8]) -> bool {
        match payload::check_size(what, bytes, self.max_payload) {
            Ok(()) => true,
            Err(too_large) => {
                self.fatal
                    .get_or_insert(Outcome::Failed(too_large.failure()));
                false
            }
        }
    }

    pub(crate) fn set_custom_status(&mut self, status: Vec<u8>) {
        if self.replaying || !self.fits(|| "the custom status".to_string(), &status) {
            return;
        }
        self.emitted.push(Event::CustomStatusSet {
            status: status.clone(),
        });
        self.custom_status = Some(status);
    }

    pub(crate) fn continue_as_new(&mut self, input: Vec<u8>, latest_version: bool) {
        let name = self.orchestrator.clone();
        if self.fits(
            move || format!("the input of the next generation of `{name}`"),
            &input,
        ) {
            self.continue_as_new.get_or_insert((input, latest_version));
        }
    }

    /// Whether the code takes the new path of change `change` (Temporal's rule):
    ///
    /// - the history has the marker at this step: yes (the instance took the new path);
    /// - replaying a recorded turn, no marker here (another step, or none left): no, and
    ///   nothing is recorded. The code that wrote that turn went past this point without
    ///   the change, whatever it awaited next (an event wait or a join of them records no
    ///   step, so "no step here" is no sign of a new instance);
    /// - running for the first time (a turn's new events, past everything the history
    ///   holds): yes, and a marker is recorded.
    ///
    /// Histories are replayed turn by turn, and the code is polled on each recorded turn
    /// before the new events are applied: a patch point reached before a new event lets
    /// the code go on was reached by the old code too, in its last recorded turn.
    pub(crate) fn patched(&mut self, change: &str, site: Site) -> bool {
        if let Some(answer) = self.patches.get(change) {
            return *answer;
        }
        let marker = StepKind::Recorded(format!("patch:{change}"));
        let answer = match self.steps.get(self.next_seq as usize) {
            Some(step) if step.kind == marker => {
                self.next_seq += 1;
                true
            }
            Some(_) => false,
            None if self.replaying => false,
            None => {
                let what = format!("patch:{change}");
                let value = vec![1];
                self.issue(NewStep {
                    kind: marker,
                    site: site.clone(),
                    event: Box::new(move |seq| Event::Recorded {
                        seq,
                        what,
                        value,
                        site,
                    }),
                    command: None,
                });
                true
            }
        };
        self.patches.insert(change.to_string(), answer);
        answer
    }

    /// Applies one event. Returns false for an event that has nothing to apply to (a
    /// result for a step never scheduled or already finished), which is then dropped.
    fn apply(&mut self, event: &Event) -> bool {
        let position = self.position;
        self.position += 1;
        let scheduled = |kind: StepKind, site: &Site| Step {
            kind,
            site: site.clone(),
            done: false,
            value: None,
        };
        match event {
            Event::ActivityScheduled { activity, site, .. } => self
                .steps
                .push(scheduled(StepKind::Activity(activity.clone()), site)),
            Event::TimerCreated { site, .. } => self.steps.push(scheduled(StepKind::Timer, site)),
            Event::SubOrchestrationScheduled {
                orchestrator,
                instance,
                site,
                ..
            } => self.steps.push(Step {
                value: Some(instance.clone().into_bytes()),
                ..scheduled(StepKind::SubOrchestration(orchestrator.clone()), site)
            }),
            Event::Recorded {
                what, value, site, ..
            } => self.steps.push(Step {
                kind: StepKind::Recorded(what.clone()),
                site: site.clone(),
                done: true,
                value: Some(value.clone()),
            }),
            Event::ActivityCompleted { seq, output }
            | Event::SubOrchestrationCompleted { seq, output } => {
                return self.deliver(*seq, position, StepResult::Ok(output.clone()));
            }
            Event::TimerFired { seq } => {
                return self.deliver(*seq, position, StepResult::Ok(Vec::new()));
            }
            Event::ActivityFailed {
                seq,
                attempt,
                failure,
            } => {
                let result = StepResult::Err {
                    attempt: *attempt,
                    failure: failure.clone(),
                };
                return self.deliver(*seq, position, result);
            }
            Event::SubOrchestrationFailed { seq, failure } => {
                let result = StepResult::Err {
                    attempt: 1,
                    failure: failure.clone(),
                };
                return self.deliver(*seq, position, result);
            }
            Event::EventRaised { name, payload } => {
                self.events.raise(name, position, payload.clone());
            }
            // The instance record holds the status last committed: a turn reports only
            // one the code sets as it runs for the first time, so a replay that stops
            // early (a panic, a payload that no longer decodes) cannot set an older one.
            Event::CustomStatusSet { .. } => {}
            Event::EventSetAside { name, index, .. } => self.events.set_aside(name, *index),
            Event::Started { .. }
            | Event::Completed { .. }
            | Event::Failed { .. }
            | Event::ContinuedAsNew { .. }
            | Event::TerminateRequested { .. }
            | Event::SuspendRequested { .. }
            | Event::ResumeRequested => {}
        }
        true
    }

    fn deliver(&mut self, seq: u64, position: u64, result: StepResult) -> bool {
        match self.steps.get_mut(seq as usize) {
            Some(step) if !step.done => {
                step.done = true;
                self.results.insert(seq, (position, result));
                true
            }
            _ => false,
        }
    }
}

fn nondeterminism(message: String) -> Outcome {
    Outcome::Stalled(Failure {
        kind: FailureKind::Nondeterminism,
        message,
    })
}

/// A live orchestration: the orchestrator's future and the state it shares with its
/// context. Kept in the runtime's cache between turns so the steady state never replays.
/// The waker the orchestrator is polled with. Durable operations never wake it (the
/// runtime polls once per turn), so a wake after a poll means the code awaits something
/// else: a tokio timer, a channel, a socket, which a replay would not reproduce.
#[derive(Debug, Default)]
struct Alarm {
    polling: AtomicBool,
    rung: AtomicBool,
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A wake during the poll is the code asking to be polled again, not a foreign
        // event; it is polled again next turn anyway.
        if !self.polling.load(Ordering::SeqCst) {
            self.rung.store(true, Ordering::SeqCst);
        }
    }
}

pub struct Execution {
    instance: String,
    clock: Arc<dyn Clock>,
    entry_start: fn(OrchestrationContext, &[u8]) -> Result<ErasedFuture, Failure>,
    state: Arc<Mutex<ReplayState>>,
    future: Option<ErasedFuture>,
    finished: bool,
    alarm: Arc<Alarm>,
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
    /// against saved histories. It runs as incarnation 0, generation 0 of the id (which
    /// only the ids generated for sub-orchestrations show).
    pub fn of<O: Orchestrator>(_orchestrator: O, instance: &str) -> Self {
        let mut registry = Registry::default();
        registry.add_orchestrator::<O>();
        let entry = registry
            .orchestrator(O::NAME, O::VERSION)
            .expect("just registered");
        Self::new(
            instance,
            (0, 0),
            O::NAME,
            entry,
            usize::MAX,
            Arc::new(SystemClock),
        )
    }

    /// A fresh execution of run `run` (incarnation, generation) of `instance`, whose code
    /// may make payloads of at most `max_payload` bytes.
    pub(crate) fn new(
        instance: &str,
        run: (Incarnation, u32),
        orchestrator: &str,
        entry: &OrchestratorEntry,
        max_payload: usize,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            instance: instance.to_string(),
            clock,
            entry_start: entry.start,
            state: Arc::new(Mutex::new(ReplayState::new(
                instance,
                run,
                orchestrator,
                entry.line,
                max_payload,
            ))),
            future: None,
            finished: false,
            alarm: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, ReplayState> {
        lock(&self.state)
    }

    /// Runs one turn: replays `recorded` (events already in the history; only on a fresh
    /// execution), applies `new` (events to append), then polls the orchestrator.
    ///
    /// The history is replayed turn by turn, as it ran: the results each turn brought, a
    /// poll, the next turn's results. Polling once over the whole history would let code
    /// see results earlier than it did, and a branch of a join that takes one and issues
    /// its next step would then take the number another branch's step had.
    pub fn turn(&mut self, recorded: &[Event], new: Vec<Event>) -> Turn {
        {
            let mut state = self.state();
            state.first_new_position = state.position + recorded.len() as u64;
        }
        for segment in turns(recorded) {
            for event in segment {
                self.apply(event);
            }
            if self.finished {
                break;
            }
            self.state().replaying = true;
            let outcome = match self.poll() {
                Outcome::Running => match self.diverged() {
                    Some(diverged) => diverged,
                    None => continue,
                },
                other => other,
            };
            return self.conclude(Vec::new(), outcome);
        }
        let mut appended = Vec::with_capacity(new.len() + 2);
        let replayed_only = new.is_empty() && !recorded.is_empty();
        for event in new {
            if self.apply(&event) {
                appended.push(event);
            }
        }
        if self.finished || replayed_only {
            // Finished, or just caught up with its history: nothing more to run.
            return self.conclude(appended, Outcome::Running);
        }
        let outcome = self.poll();
        self.conclude(appended, outcome)
    }

    /// After a replayed turn: the code issued a step the history does not have there, so
    /// it no longer takes the path it took.
    fn diverged(&self) -> Option<Outcome> {
        let state = self.state();
        let step = state.emitted.iter().find_map(|event| match event {
            Event::ActivityScheduled { seq, .. }
            | Event::TimerCreated { seq, .. }
            | Event::SubOrchestrationScheduled { seq, .. }
            | Event::Recorded { seq, .. } => Some(*seq),
            _ => None,
        })?;
        let kind = state.step_kind(step)?;
        Some(nondeterminism(format!(
            "step {step}: the code now asks for {kind} at a point of its history where it \
             asked for nothing"
        )))
    }

    /// Ends a turn: what it appends (the new events, then what the code emitted, then how
    /// the instance ended), its commands and its outcome.
    fn conclude(&mut self, mut appended: Vec<Event>, outcome: Outcome) -> Turn {
        let mut state = self.state();
        appended.append(&mut state.emitted);
        let commands = std::mem::take(&mut state.commands);
        let custom_status = state.custom_status.take();
        drop(state);
        match &outcome {
            Outcome::Completed(output) => appended.push(Event::Completed {
                output: output.clone(),
            }),
            Outcome::Failed(failure) => appended.push(Event::Failed {
                failure: failure.clone(),
            }),
            Outcome::ContinuedAsNew { input, .. } => appended.push(Event::ContinuedAsNew {
                input: input.clone(),
            }),
            Outcome::Running | Outcome::Stalled(_) => {}
        }
        if !matches!(outcome, Outcome::Running) {
            self.finished = true;
            self.future = None;
        }
        Turn {
            appended,
            commands,
            custom_status,
            outcome,
        }
    }

    fn apply(&mut self, event: &Event) -> bool {
        if let Event::Started { input, .. } = event {
            if self.future.is_some() || self.finished {
                return false;
            }
            let ctx = OrchestrationContext::new(
                self.instance.clone(),
                self.state.clone(),
                self.clock.clone(),
            );
            self.state().position += 1;
            match (self.entry_start)(ctx, input) {
                Ok(future) => self.future = Some(future),
                Err(failure) => self.state().stall_payload(failure),
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
        if self.alarm.rung.load(Ordering::SeqCst) {
            let state = self.state();
            return Outcome::Stalled(Failure {
                kind: FailureKind::Nondeterminism,
                message: format!(
                    "orchestrator `{}` was woken by something other than the runtime after step {}: \
                     it awaits a future that is not a durable operation (a tokio timer, a channel, \
                     a socket?), which a replay would not reproduce; await only `ctx` operations",
                    state.orchestrator,
                    state.next_seq.saturating_sub(1)
                ),
            });
        }
        let waker = Waker::from(self.alarm.clone());
        let mut cx = Context::from_waker(&waker);
        self.alarm.polling.store(true, Ordering::SeqCst);
        let span = {
            let state = lock(&self.state);
            if state.replaying {
                replay_log::mute();
            }
            tracing::info_span!("orchestration", instance = %self.instance, orchestrator = %state.orchestrator)
        };
        let polled =
            span.in_scope(|| catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))));
        self.alarm.polling.store(false, Ordering::SeqCst);
        replay_log::unmute();
        let mut state = self.state();
        state.replaying = false;
        if let Some(fatal) = state.fatal.clone() {
            return fatal;
        }
        match polled {
            Err(panic) => {
                let failure = Failure {
                    kind: FailureKind::Panicked,
                    message: format!(
                        "orchestrator `{}` panicked: {}",
                        state.orchestrator,
                        panic_message(&*panic)
                    ),
                };
                Outcome::Failed(payload::fit_failure(failure, state.max_payload))
            }
            Ok(Poll::Ready(result)) => {
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return nondeterminism(format!(
                        "step {}: history has {} ({}) but the code now returns without asking for it",
                        state.next_seq, step.kind, step.site
                    ));
                }
                match result {
                    Ok(output) => {
                        let what =
                            || format!("the output of orchestrator `{}`", state.orchestrator);
                        match payload::check_size(what, &output, state.max_payload) {
                            Ok(()) => Outcome::Completed(output),
                            Err(too_large) => Outcome::Failed(too_large.failure()),
                        }
                    }
                    Err(failure) => {
                        Outcome::Failed(payload::fit_failure(failure, state.max_payload))
                    }
                }
            }
            Ok(Poll::Pending) => {
                if let Some((input, latest_version)) = state.continue_as_new.take() {
                    return Outcome::ContinuedAsNew {
                        input,
                        latest_version,
                        events: state.events.drain_unconsumed(),
                    };
                }
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return nondeterminism(format!(
                        "step {}: history has {} ({}) but the code now waits without asking for it",
                        state.next_seq, step.kind, step.site
                    ));
                }
                // From the end: the newest steps are the ones still outstanding, so a long
                // history is not scanned on every turn.
                if !state.events.has_waiters() && state.steps.iter().rev().all(|s| s.done) {
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

/// The turns a history was written in: each the events a turn brought (results, events,
/// its start), then the steps its code issued. A turn that issued nothing is joined to the
/// next, which is the same to the code: it saw those results and asked for nothing.
fn turns(history: &[Event]) -> impl Iterator<Item = &[Event]> {
    let mut rest = history;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = (1..rest.len())
            .find(|&i| is_issued(&rest[i - 1]) && !is_issued(&rest[i]))
            .unwrap_or(rest.len());
        let (turn, tail) = rest.split_at(end);
        rest = tail;
        Some(turn)
    })
}

/// Whether `event` is one the code emits (a step it issued, its status, its end) rather
/// than one a turn brings.
fn is_issued(event: &Event) -> bool {
    matches!(
        event,
        Event::ActivityScheduled { .. }
            | Event::TimerCreated { .. }
            | Event::SubOrchestrationScheduled { .. }
            | Event::Recorded { .. }
            | Event::CustomStatusSet { .. }
            | Event::EventSetAside { .. }
            | Event::Completed { .. }
            | Event::Failed { .. }
            | Event::ContinuedAsNew { .. }
    )
}

/// Locks the replay state. A panic in user code never happens while it is held, so a
/// poisoned lock still holds consistent state.
pub(crate) fn lock(state: &Mutex<ReplayState>) -> MutexGuard<'_, ReplayState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
