//! [`ReplayState`]: what the orchestrator's context shares with the execution driving it.
//!
//! The steps the history recorded and the code issued, numbered in program order; the
//! results delivered and not yet taken; the events and commands the code emitted this
//! turn; the external events queued. The context and the futures call in here as the
//! code runs (`issue`, `take_result`, `patched`, ...); the execution applies the
//! history's events (`apply`) and reads what the turn produced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use durable_store::{Event, Failure, FailureKind, Incarnation, InstanceRecord, Site};

use crate::failure::nondeterminism;
use crate::payload;
use crate::replay::event_queues::EventQueues;
use crate::replay::locks::Locks;
use crate::replay::log;
use crate::replay::recorded::{Patch, Recorded};
use crate::replay::step::{Step, StepKind, StepRequest, StepResult};
use crate::replay::turn::{Command, Outcome};
use crate::telemetry::TraceContext;

/// Which run of an instance an execution is: generated child ids carry it, so each run's
/// children are new instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The incarnation of the instance id (a new one each time the id is started anew).
    pub(crate) incarnation: Incarnation,
    /// The generation within the incarnation (one more at each continue-as-new).
    pub(crate) generation: u32,
}

impl Run {
    /// The run `record` holds.
    pub(crate) fn of(record: &InstanceRecord) -> Self {
        Self {
            incarnation: record.incarnation,
            generation: record.generation,
        }
    }
}

/// A result delivered to a step and not yet taken.
#[derive(Debug)]
struct Arrived {
    /// Where in the history it arrived: orders results, so races replay alike.
    position: u64,
    result: StepResult,
}

/// What the code asked the next generation to be, by continuing as new.
#[derive(Debug)]
pub(crate) struct NextGeneration {
    /// Its encoded input.
    pub(crate) input: Vec<u8>,
    /// Whether it moves to the newest registered version.
    pub(crate) latest_version: bool,
}

/// What the orchestrator's context shares with the execution driving it.
pub(crate) struct ReplayState {
    /// The instance's id.
    pub(crate) instance: String,
    /// Which run of the instance this is.
    pub(crate) run: Run,
    /// The orchestrator's registered name.
    pub(crate) orchestrator: String,
    /// The largest payload the code may make, in bytes.
    pub(in crate::replay) max_payload: usize,
    /// Steps recorded in history (and committed), by sequence number.
    pub(in crate::replay) steps: Vec<Step>,
    /// Results delivered and not yet taken, by step.
    results: HashMap<u64, Arrived>,
    /// The number the next step the code issues gets.
    pub(in crate::replay) next_seq: u64,
    /// Position of the next event applied: orders results, so races replay alike.
    pub(in crate::replay) position: u64,
    /// Position of the first event the current turn brought (not from the history).
    pub(in crate::replay) first_new_position: u64,
    /// Whether the code is re-running what it ran in earlier turns: it has neither
    /// issued a new step nor taken a result that arrived this turn.
    pub(in crate::replay) replaying: bool,
    /// The events the code emitted this turn.
    pub(in crate::replay) emitted: Vec<Event>,
    /// The commands for the runtime the code's new steps made this turn.
    pub(in crate::replay) commands: Vec<Command>,
    /// The external events received and not yet taken, by name.
    pub(crate) events: EventQueues,
    /// The custom status the code set this turn.
    pub(in crate::replay) custom_status: Option<Vec<u8>>,
    /// Set when the code continues as new.
    pub(in crate::replay) continue_as_new: Option<NextGeneration>,
    /// What each `patched` change answered, so later calls answer alike.
    patches: HashMap<Patch, bool>,
    /// The lock requests (critical sections) of this execution.
    locks: Locks,
    /// Set when the turn must stop: nondeterminism, a payload that does not decode, or one
    /// over the limit.
    pub(in crate::replay) fatal: Option<Outcome>,
    /// The last trace context the history holds (not a step: the runtime parents the
    /// spans of the instance's turns on it, see `crate::telemetry`).
    pub(crate) trace: Option<Arc<TraceContext>>,
    /// The waits the history records (`EventAwaited`), as (name, index): each is
    /// appended once.
    awaited: HashSet<(String, u32)>,
    /// The execution deadline the history holds (`ExecutionDeadline`), in milliseconds
    /// since the Unix epoch: carried to the next generation by the runtime.
    pub(crate) deadline_ms: Option<u64>,
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
    /// The state of a fresh execution of run `run` of `instance`, an instance of
    /// `orchestrator` whose code may make payloads of at most `max_payload` bytes.
    pub(in crate::replay) fn new(
        instance: &str,
        run: Run,
        orchestrator: &str,
        max_payload: usize,
    ) -> Self {
        Self {
            instance: instance.to_string(),
            run,
            orchestrator: orchestrator.to_string(),
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
            locks: Locks::default(),
            fatal: None,
            trace: None,
            awaited: HashSet::new(),
            deadline_ms: None,
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
            log::unmute();
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

    /// The number the next step the code issues gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the turn is stopping (nondeterminism, a payload that does not decode or
    /// does not fit): nothing more the code does counts.
    pub(crate) fn is_stopped(&self) -> bool {
        self.fatal.is_some()
    }

    /// Numbers a durable step the code asked for at `site`; checks it against the
    /// history, or records it (event and command) when it is new. Returns its number.
    pub(crate) fn issue(&mut self, site: Site, request: StepRequest) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.fatal.is_some() {
            return seq;
        }
        match self.steps.get(seq as usize) {
            // Kind and name are compared, not the await site: the site is kept to point at
            // the code, but comparing lines would make any edit above a call (including a
            // `patched` branch) a breaking change.
            Some(recorded) => {
                let kind = request.kind();
                if recorded.kind != kind {
                    let message = format!(
                        "step {seq}: history has {} ({}) but the code now asks for {kind} ({site})",
                        recorded.kind, recorded.site
                    );
                    self.fatal = Some(Outcome::Stalled(nondeterminism(message)));
                }
            }
            None => {
                self.replay_done();
                self.commands.extend(request.command(seq));
                let event = request.into_event(seq, site);
                self.steps
                    .push(Step::of(&event).expect("a step request records a step"));
                self.emitted.push(event);
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
        self.steps.get(seq as usize)?.child.clone()
    }

    /// The history position at which the result of step `seq` arrived, if it has.
    pub(crate) fn ready_at(&self, seq: u64) -> Option<u64> {
        if self.fatal.is_some() {
            return None;
        }
        self.results.get(&seq).map(|arrived| arrived.position)
    }

    /// The result of step `seq`, if it has arrived; taken, so it is handed out once.
    pub(crate) fn take_result(&mut self, seq: u64) -> Option<StepResult> {
        if self.fatal.is_some() {
            return None;
        }
        let arrived = self.results.remove(&seq)?;
        self.took(arrived.position);
        Some(arrived.result)
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

    /// Sets the custom status, unless the code is replaying (the status of a replayed
    /// turn is stored already) or it is over the payload limit.
    pub(crate) fn set_custom_status(&mut self, status: Vec<u8>) {
        if self.replaying || !self.fits(|| "the custom status".to_string(), &status) {
            return;
        }
        self.emitted.push(Event::CustomStatusSet {
            status: status.clone(),
        });
        self.custom_status = Some(status);
    }

    /// Ends the generation when the turn ends: the next starts with `input`, under the
    /// newest registered version if `latest_version`. The first call of a turn counts.
    pub(crate) fn continue_as_new(&mut self, input: Vec<u8>, latest_version: bool) {
        let name = self.orchestrator.clone();
        if self.fits(
            move || format!("the input of the next generation of `{name}`"),
            &input,
        ) {
            self.continue_as_new.get_or_insert(NextGeneration {
                input,
                latest_version,
            });
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
    pub(crate) fn patched(&mut self, change: Patch, site: Site) -> bool {
        if let Some(answer) = self.patches.get(&change) {
            return *answer;
        }
        let marker = Recorded::Patch(change.clone());
        let answer = match self.steps.get(self.next_seq as usize) {
            Some(step) if step.kind == StepKind::Recorded(marker.clone()) => {
                self.next_seq += 1;
                true
            }
            Some(_) => false,
            None if self.replaying => false,
            None => {
                let request = StepRequest::Recorded {
                    kind: marker,
                    value: vec![1],
                };
                self.issue(site, request);
                true
            }
        };
        self.patches.insert(change, answer);
        answer
    }

    /// Notes the lock request of step `seq` on `entities`, which the code issued.
    pub(crate) fn lock_requested(&mut self, seq: u64, entities: &[String]) {
        self.locks.requested(seq, entities);
    }

    /// The critical section the code is in, if any: its lock step and its entities.
    pub(crate) fn open_section(&self) -> Option<(u64, &[String])> {
        self.locks.open(self.next_seq)
    }

    /// The code releases the locks of its lock request of step `lock_seq`: recorded, with
    /// an unlock for each entity, unless the history holds the release already.
    pub(crate) fn release_locks(&mut self, lock_seq: u64) {
        if self.fatal.is_some() {
            return;
        }
        if let Some(entities) = self.locks.release(lock_seq) {
            self.record_release(lock_seq, entities);
        }
    }

    /// The orchestration ends: releases every lock request not recorded released.
    pub(in crate::replay) fn release_all_locks(&mut self) {
        for (lock_seq, entities) in self.locks.release_all() {
            self.record_release(lock_seq, entities);
        }
    }

    /// The turn ends running: emits an `EventAwaited` for each live wait whose event has
    /// not arrived and that the history does not hold yet.
    pub(in crate::replay) fn record_awaits(&mut self) {
        if !self.events.has_waiters() {
            return;
        }
        for wait in self.events.awaiting() {
            if self.awaited.contains(&(wait.name.to_string(), wait.index)) {
                continue;
            }
            self.awaited.insert((wait.name.to_string(), wait.index));
            let site = match wait.site {
                Some(at) => Site {
                    function: self.orchestrator.clone(),
                    file: at.caller.file().to_string(),
                    line: at.caller.line(),
                    line_offset: at.line_offset,
                },
                None => Site {
                    function: self.orchestrator.clone(),
                    file: String::new(),
                    line: 0,
                    line_offset: 0,
                },
            };
            self.emitted.push(Event::EventAwaited {
                name: wait.name.to_string(),
                index: wait.index,
                site,
            });
        }
    }

    fn record_release(&mut self, lock_seq: u64, entities: Vec<String>) {
        self.emitted.push(Event::EntityLocksReleased { lock_seq });
        self.commands
            .push(Command::UnlockEntities { lock_seq, entities });
    }

    /// Applies one event. Returns false for an event that has nothing to apply to (a
    /// result for a step never scheduled or already finished), which is then dropped.
    pub(in crate::replay) fn apply(&mut self, event: &Event) -> bool {
        let position = self.position;
        self.position += 1;
        match event {
            Event::ActivityScheduled { .. }
            | Event::TimerCreated { .. }
            | Event::SubOrchestrationScheduled { .. }
            | Event::Recorded { .. }
            | Event::EntityCalled { .. }
            | Event::EntitySignaled { .. } => {
                self.steps.extend(Step::of(event));
            }
            Event::EntityLockRequested { seq, entities, .. } => {
                self.steps.extend(Step::of(event));
                self.locks.requested(*seq, entities);
            }
            Event::EntityLocksReleased { lock_seq } => self.locks.release_recorded(*lock_seq),
            Event::EntityCompleted { seq, output } => {
                return self.deliver(*seq, position, StepResult::Ok(output.clone()));
            }
            Event::EntityLockGranted { seq } => {
                return self.deliver(*seq, position, StepResult::Ok(Vec::new()));
            }
            Event::EntityFailed { seq, failure } => {
                let result = StepResult::Err {
                    attempt: 1,
                    failure: failure.clone(),
                };
                return self.deliver(*seq, position, result);
            }
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
            // Not a step: tools read it; replay notes it so it is appended once.
            Event::EventAwaited { name, index, .. } => {
                self.awaited.insert((name.clone(), *index));
            }
            Event::Started { .. }
            | Event::Completed { .. }
            | Event::Failed { .. }
            | Event::ContinuedAsNew { .. }
            | Event::TerminateRequested { .. }
            | Event::SuspendRequested { .. }
            | Event::ResumeRequested
            // Entities' messages: never in an orchestration's history.
            | Event::EntityOperation { .. }
            | Event::EntityCall { .. }
            | Event::EntityLock { .. }
            | Event::EntityUnlock { .. }
            // A turn's time, for tools: not a step, nothing to compare.
            | Event::TurnStarted { .. } => {}
            // Not a step: the runtime parents its spans on it (`crate::telemetry`).
            Event::TraceContext { .. } => {
                self.trace = TraceContext::of_event(event)
                    .map(Arc::new)
                    .or(self.trace.take());
            }
            // Not a step: the runtime carries it to the next generation.
            Event::ExecutionDeadline { at_ms } => self.deadline_ms = Some(*at_ms),
            // The deadline passed: the run ends failed, whatever it waited on; its code is
            // not polled again.
            Event::ExecutionTimedOut => {
                let message = match self.deadline_ms {
                    Some(at_ms) => format!(
                        "the instance ran past its execution timeout (its deadline was {at_ms} ms since the Unix epoch)"
                    ),
                    None => "the instance ran past its execution timeout".to_string(),
                };
                let failure = Failure {
                    kind: FailureKind::TimedOut,
                    message,
                };
                self.fatal.get_or_insert(Outcome::Failed(failure));
            }
        }
        true
    }

    fn deliver(&mut self, seq: u64, position: u64, result: StepResult) -> bool {
        match self.steps.get_mut(seq as usize) {
            Some(step) if !step.done => {
                step.done = true;
                self.results.insert(seq, Arrived { position, result });
                true
            }
            _ => false,
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
