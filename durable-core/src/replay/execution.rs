//! [`Execution`]: a live orchestration and the replay step that drives it, one turn at a
//! time (see the [module](crate::replay) for the whole).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use durable_store::{Event, Failure};

use crate::failure::{self, nondeterminism};
use crate::payload;
use crate::replay::log;
use crate::replay::state::{NextGeneration, ReplayState, Run, lock};
use crate::replay::turn::{Outcome, Turn};
use crate::telemetry::TraceContext;

/// The future of an orchestrator's run: its encoded output, or its failure.
pub(crate) type OrchestratorFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, Failure>> + Send>>;

/// How an execution starts the orchestrator's code on the instance's `Started` event:
/// given the state the code's context is to share with the execution and the encoded
/// input, the future of the run, or the failure of an input that does not decode. Made
/// by the layer that knows the context and the registry
/// ([`OrchestrationContext::starter`](crate::orchestration_context::OrchestrationContext::starter)),
/// so the replay step names neither.
pub(crate) type Start =
    Box<dyn Fn(Arc<Mutex<ReplayState>>, &[u8]) -> Result<OrchestratorFuture, Failure> + Send>;

/// The waker the orchestrator is polled with. Durable operations never wake it (the
/// runtime polls once per turn), so a wake after a poll means the code awaits something
/// else: an async runtime's timer, a channel, a socket, which a replay would not
/// reproduce.
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

/// A live orchestration: the orchestrator's future and the state it shares with its
/// context. Kept in the runtime's cache between turns so the steady state never replays.
///
/// Replay tests make one with [`Execution::of`] and feed it histories with
/// [`turn`](Self::turn).
pub struct Execution {
    instance: String,
    start: Start,
    state: Arc<Mutex<ReplayState>>,
    future: Option<OrchestratorFuture>,
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
    /// A fresh execution of run `run` of `instance`, an instance of `orchestrator` whose
    /// code `start` starts and may make payloads of at most `max_payload` bytes.
    /// ([`Execution::of`], for replay tests, is in `replay_test.rs`, which knows the
    /// orchestrator handles.)
    pub(crate) fn new(
        instance: &str,
        run: Run,
        orchestrator: &str,
        max_payload: usize,
        start: Start,
    ) -> Self {
        Self {
            instance: instance.to_string(),
            start,
            state: Arc::new(Mutex::new(ReplayState::new(
                instance,
                run,
                orchestrator,
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

    /// The last trace context the instance's history (as far as this execution applied
    /// it) holds: what its turns' spans are children of.
    pub(crate) fn trace_context(&self) -> Option<Arc<TraceContext>> {
        self.state().trace.clone()
    }

    /// The execution deadline the instance's history (as far as this execution applied
    /// it) holds, in milliseconds since the Unix epoch: what its next generation carries.
    pub(crate) fn execution_deadline(&self) -> Option<u64> {
        self.state().deadline_ms
    }

    /// Whether the code has started: a `Started` event was applied. Events may reach an
    /// instance before its start (a delayed start's deadline, an event raised to it);
    /// they are recorded, and the instance stays pending until its `Started` comes.
    pub(crate) fn started(&self) -> bool {
        self.future.is_some() || self.finished
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
            | Event::Recorded { seq, .. }
            | Event::EntityCalled { seq, .. }
            | Event::EntitySignaled { seq, .. }
            | Event::EntityLockRequested { seq, .. } => Some(*seq),
            _ => None,
        })?;
        let kind = state.step_kind(step)?;
        Some(Outcome::Stalled(nondeterminism(format!(
            "step {step}: the code now asks for {kind} at a point of its history where it \
             asked for nothing"
        ))))
    }

    /// Ends a turn: what it appends (the new events, then what the code emitted, then how
    /// the instance ended), its commands and its outcome.
    fn conclude(&mut self, mut appended: Vec<Event>, outcome: Outcome) -> Turn {
        let mut state = self.state();
        if matches!(
            outcome,
            Outcome::Completed(_) | Outcome::Failed(_) | Outcome::ContinuedAsNew { .. }
        ) {
            // No entity stays locked by a run that ended: what it holds or still waits
            // for is released in the commit that ends it.
            state.release_all_locks();
        }
        if matches!(outcome, Outcome::Running) {
            state.record_awaits();
        }
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
        // A turn's time alone (every event it brought dropped, nothing emitted): the turn
        // appends nothing.
        if appended
            .iter()
            .all(|event| matches!(event, Event::TurnStarted { .. }))
        {
            appended.clear();
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
            self.state().position += 1;
            match (self.start)(self.state.clone(), input) {
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
            let step = state.next_seq.saturating_sub(1);
            return Outcome::Stalled(failure::woken_from_outside(&state.orchestrator, step));
        }
        let waker = Waker::from(self.alarm.clone());
        let mut cx = Context::from_waker(&waker);
        self.alarm.polling.store(true, Ordering::SeqCst);
        let span = {
            let state = lock(&self.state);
            if state.replaying {
                log::mute();
            }
            tracing::info_span!("orchestration", instance_id = %self.instance, orchestration_name = %state.orchestrator)
        };
        let polled =
            span.in_scope(|| catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))));
        self.alarm.polling.store(false, Ordering::SeqCst);
        log::unmute();
        let mut state = self.state();
        state.replaying = false;
        if let Some(fatal) = state.fatal.clone() {
            return fatal;
        }
        match polled {
            Err(panic) => {
                let failure = failure::orchestrator_panicked(&state.orchestrator, &*panic);
                Outcome::Failed(payload::fit_failure(failure, state.max_payload))
            }
            Ok(Poll::Ready(result)) => {
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return Outcome::Stalled(nondeterminism(format!(
                        "step {}: history has {} ({}) but the code now returns without asking for it",
                        state.next_seq, step.kind, step.site
                    )));
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
                if let Some(NextGeneration {
                    input,
                    latest_version,
                }) = state.continue_as_new.take()
                {
                    return Outcome::ContinuedAsNew {
                        input,
                        latest_version,
                        events: state.events.drain_unconsumed(),
                    };
                }
                if let Some(step) = state.steps.get(state.next_seq as usize) {
                    return Outcome::Stalled(nondeterminism(format!(
                        "step {}: history has {} ({}) but the code now waits without asking for it",
                        state.next_seq, step.kind, step.site
                    )));
                }
                // From the end: the newest steps are the ones still outstanding, so a long
                // history is not scanned on every turn.
                if !state.events.has_waiters() && state.steps.iter().rev().all(|s| s.done) {
                    let step = state.next_seq.saturating_sub(1);
                    return Outcome::Stalled(failure::waits_outside(&state.orchestrator, step));
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
            | Event::EntityCalled { .. }
            | Event::EntitySignaled { .. }
            | Event::EntityLockRequested { .. }
            | Event::EntityLocksReleased { .. }
            | Event::CustomStatusSet { .. }
            | Event::EventSetAside { .. }
            | Event::EventAwaited { .. }
            | Event::Completed { .. }
            | Event::Failed { .. }
            | Event::ContinuedAsNew { .. }
    )
}
