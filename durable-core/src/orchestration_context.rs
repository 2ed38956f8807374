//! [`OrchestrationContext`]: what an orchestrator uses to issue durable operations.

use std::panic::Location;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_store::{Failure, Site};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, millis};
use crate::durable_future::{ActivityCall, ContinueAsNew, EventWait, SubOrchestrationCall, Timer};
use crate::error::{LockRuleViolation, SubOrchestrationError};
use crate::external_event::AsEventName;
use crate::failure;
use crate::handle::{Activity, Orchestrator};
use crate::instance_id::generated_child_id;
use crate::payload;
use crate::replay::event_queues::WaitSite;
use crate::replay::execution::{OrchestratorFuture, Start};
use crate::replay::recorded::{Patch, Recorded};
use crate::replay::state::{ReplayState, lock};
use crate::replay::step::{Attempt, StepRequest};

mod entities;

/// The handle an orchestrator gets to issue durable operations.
///
/// Every operation is recorded in the instance's history with a step number and the
/// source line of the call; after a restart the orchestrator is replayed and each
/// operation's result is served from the history instead of running it again. Anything
/// that differs between runs (the time, random numbers, ids) must come from here too.
///
/// # Entities
///
/// An orchestration calls entity operations two-way
/// ([`call_entity`](Self::call_entity)), signals them one-way
/// ([`signal_entity`](Self::signal_entity), [`signal_entity_at`](Self::signal_entity_at))
/// and locks entities for a critical section ([`lock`](Self::lock)), as Durable
/// Functions' orchestrations do
/// (<https://learn.microsoft.com/azure/azure-functions/durable/durable-functions-entities>).
/// What it may rely on:
///
/// - Each call, signal and lock request is a step of the history, sent in the commit
///   that records it, once: a replay serves a call's result from the history and sends
///   nothing again. A replay that calls or signals another entity or operation at a
///   step stops the instance with a nondeterminism failure, as for activities.
/// - Operations on one entity run one at a time, those one orchestration sends in the
///   order it sent them (a signal at a time runs at its time). An operation that fails
///   (`Err`, a panic, an unknown operation, an input that does not decode) leaves the
///   entity's state as it was, and a call gets it as an [`EntityCallError`] with the
///   operation's own error typed.
/// - A critical section locks its entities in one global order (sorted [`EntityId`]s:
///   type name, then key), so two orchestrations locking overlapping sets never
///   deadlock. While it holds them, they run only this orchestration's calls; whatever
///   else is sent to them waits, durably, and runs in arrival order after the section.
///   The section is durable (a restart inside it resumes inside it) and ends when its
///   [`CriticalSection`](crate::CriticalSection) is released or dropped, or when the
///   orchestration completes, fails, is terminated or continues as new: what it holds,
///   or still waits for, is unlocked in the commit that ends it.
/// - The rules of a section (Durable Functions' `LockingRulesViolationException`): from
///   the `lock` call until the release, calling an entity not locked, signalling one that
///   is, a nested `lock` and a sub-orchestration are refused with a
///   [`LockRuleViolation`]: not recorded, not sent; the code goes on. `#[orchestrator]`
///   rejects the nested `lock` and the sub-orchestration at compile time where it sees
///   the section's guard in scope.
///
/// [`EntityCallError`]: crate::EntityCallError
/// [`EntityId`]: crate::EntityId
/// [`LockRuleViolation`]: crate::LockRuleViolation
#[derive(Clone)]
pub struct OrchestrationContext {
    instance: Arc<str>,
    state: Arc<Mutex<ReplayState>>,
    /// The source line of the orchestrator's `fn`: await sites are recorded relative to it.
    fn_line: u32,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OrchestrationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestrationContext")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl OrchestrationContext {
    /// How an execution starts an orchestrator's code: `start` (a registry entry's, for
    /// an orchestrator whose `fn` is on line `fn_line`) with a context over the
    /// execution's state, reading the time from `clock`.
    pub(crate) fn starter(
        start: fn(OrchestrationContext, &[u8]) -> Result<OrchestratorFuture, Failure>,
        fn_line: u32,
        clock: Arc<dyn Clock>,
    ) -> Start {
        Box::new(move |state, input| {
            let instance = lock(&state).instance.as_str().into();
            let ctx = Self {
                instance,
                state,
                fn_line,
                clock: clock.clone(),
            };
            start(ctx, input)
        })
    }

    /// The id of the running instance.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether the orchestrator is re-running steps its history already holds (after a
    /// restart or a cache eviction). Use it to keep logs from repeating.
    pub fn is_replaying(&self) -> bool {
        lock(&self.state).is_replaying()
    }

    fn site(&self, state: &ReplayState, caller: &Location<'_>) -> Site {
        Site {
            function: state.orchestrator.clone(),
            file: caller.file().to_string(),
            line: caller.line(),
            line_offset: i64::from(caller.line()) - i64::from(self.fn_line),
        }
    }

    /// Encodes a payload the code hands to a durable operation; one that does not encode
    /// stops the instance with an error naming its type.
    fn encode<T: Serialize>(state: &mut ReplayState, value: &T) -> Vec<u8> {
        payload::encode(value).unwrap_or_else(|e| {
            state.stall_payload(failure::undecodable(e));
            Vec::new()
        })
    }

    /// Encodes the payload of the next step (`what` names it); a new step's payload must
    /// fit the runtime's limit, or the instance fails before recording it. (A step
    /// already in the history was let in when it was made.)
    fn encode_step<T: Serialize>(
        state: &mut ReplayState,
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Vec<u8> {
        let bytes = Self::encode(state, value);
        if !state.next_is_recorded() {
            state.fits(what, &bytes);
        }
        bytes
    }

    /// Calls an activity by its handle. The call is recorded when it is made; await the
    /// returned future for the activity's output, or an [`ActivityError`] if it returned
    /// `Err` or panicked.
    ///
    /// ```
    /// use durable_core::{activity, orchestrator, ActivityContext, OrchestrationContext};
    ///
    /// #[activity]
    /// async fn reserve(_ctx: ActivityContext, sku: String) -> Result<u32, String> {
    ///     Ok(3)
    /// }
    ///
    /// #[orchestrator]
    /// async fn restock(ctx: OrchestrationContext, sku: String) -> Result<u32, String> {
    ///     match ctx.call(reserve, sku).await {
    ///         Ok(count) => Ok(count),
    ///         Err(e) if e.is_panic() => Err(format!("bug in `{}`: {}", e.activity(), e.message())),
    ///         Err(e) => Err(e.into()),
    ///     }
    /// }
    /// ```
    ///
    /// [`ActivityError`]: crate::ActivityError
    #[track_caller]
    pub fn call<A: Activity>(&self, activity: A, input: A::Input) -> ActivityCall<A::Output> {
        self.call_attempt(activity, input, Attempt::FIRST, Location::caller())
    }

    /// A call of `activity` that is attempt `attempt.number` of the call first issued as
    /// step `attempt.key_seq` (whose idempotency key it shares).
    pub(crate) fn call_attempt<A: Activity>(
        &self,
        _activity: A,
        input: A::Input,
        attempt: Attempt,
        caller: &Location<'_>,
    ) -> ActivityCall<A::Output> {
        let mut state = lock(&self.state);
        let site = self.site(&state, caller);
        let what = || format!("the input of activity `{}`", A::NAME);
        let input = Self::encode_step(&mut state, &input, what);
        let request = StepRequest::Activity {
            activity: A::NAME.to_string(),
            input,
            attempt,
        };
        let seq = state.issue(site, request);
        ActivityCall::new(self.state.clone(), seq)
    }

    /// A durable timer that fires `duration` from now. It survives restarts and never
    /// fires early.
    #[track_caller]
    pub fn sleep(&self, duration: Duration) -> Timer {
        self.timer_at(Location::caller(), duration)
    }

    /// A timer `duration` from now, recorded as issued at `caller`.
    pub(crate) fn timer_at(&self, caller: &Location<'_>, duration: Duration) -> Timer {
        let clock = self.clock.clone();
        self.timer(caller, move || clock.now() + duration)
    }

    /// A durable timer that fires at `time`.
    #[track_caller]
    pub fn sleep_until(&self, time: SystemTime) -> Timer {
        self.timer(Location::caller(), move || time)
    }

    /// A timer that fires at the time `fire_at` tells, read only for a new step (a
    /// recorded one fires when the history says).
    fn timer(&self, caller: &Location<'_>, fire_at: impl FnOnce() -> SystemTime) -> Timer {
        let mut state = lock(&self.state);
        let site = self.site(&state, caller);
        let fire_at_ms = if state.next_is_recorded() {
            0
        } else {
            millis(fire_at())
        };
        let seq = state.issue(site, StepRequest::Timer { fire_at_ms });
        Timer::new(self.state.clone(), seq)
    }

    /// Waits for the next external event named `name` (raised with
    /// [`Instance::raise_event`](crate::Instance::raise_event)). Events that arrived
    /// before the wait are kept, in order.
    ///
    /// `name` is an [`EventName<T>`](crate::EventName), which fixes the payload's type
    /// for both the wait and the clients that raise it, or a plain name (`"approved"`,
    /// with the type given as `wait_event::<bool>("approved")` or inferred).
    ///
    /// An event whose payload does not decode as `T` (raised by name with another type)
    /// does not stop the instance: it is set aside, recorded in the history as
    /// `EventSetAside` (see [`Instance::set_aside_events`](crate::Instance::set_aside_events)),
    /// and the wait takes the next event of its name.
    #[track_caller]
    pub fn wait_event<T: DeserializeOwned>(&self, name: impl AsEventName<T>) -> EventWait<T> {
        let caller = Location::caller();
        let site = WaitSite {
            caller,
            line_offset: i64::from(caller.line()) - i64::from(self.fn_line),
        };
        EventWait::new(self.state.clone(), name.event_name(), site)
    }

    /// Starts orchestrator `orchestrator` as a child instance with an id generated for
    /// this call, unique to this run of this instance and step, and starting with
    /// [`GENERATED_ID_PREFIX`](crate::GENERATED_ID_PREFIX), of a form no id a user
    /// chooses may have; [`SubOrchestrationCall::instance_id`] tells it. Await it for its
    /// output.
    ///
    /// # Errors
    ///
    /// The future yields a [`SubOrchestrationError`]: the child failed or was refused;
    /// inside a critical section it is not started, and
    /// [`SubOrchestrationError::lock_rule_violation`] says so.
    #[track_caller]
    pub fn sub_orchestration<O: Orchestrator>(
        &self,
        orchestrator: O,
        input: O::Input,
    ) -> SubOrchestrationCall<O::Output> {
        self.sub_orchestration_at(orchestrator, None, input, Location::caller())
    }

    /// Starts orchestrator `orchestrator` as a child instance with the id `instance`.
    ///
    /// An instance that has finished under that id (completed, failed or terminated) is
    /// replaced, so a parent can start a failed child again under its id; one that has not
    /// finished fails the call with [`FailureKind::Rejected`](crate::record::FailureKind),
    /// as does an id [`Client::start`](crate::Client::start) would refuse.
    #[track_caller]
    pub fn sub_orchestration_with_id<O: Orchestrator>(
        &self,
        orchestrator: O,
        instance: impl Into<String>,
        input: O::Input,
    ) -> SubOrchestrationCall<O::Output> {
        let instance = instance.into();
        self.sub_orchestration_at(orchestrator, Some(instance), input, Location::caller())
    }

    fn sub_orchestration_at<O: Orchestrator>(
        &self,
        _orchestrator: O,
        instance: Option<String>,
        input: O::Input,
        caller: &Location<'_>,
    ) -> SubOrchestrationCall<O::Output> {
        let mut state = lock(&self.state);
        if let Some((_, locked)) = state.open_section() {
            let violation = LockRuleViolation::SubOrchestration {
                orchestrator: O::NAME.to_string(),
                locked: entities::entity_ids(locked),
            };
            drop(state);
            let error = SubOrchestrationError::refused(O::NAME.to_string(), violation);
            return SubOrchestrationCall::refused(self.state.clone(), error);
        }
        let site = self.site(&state, caller);
        let what = || format!("the input of sub-orchestration `{}`", O::NAME);
        let input = Self::encode_step(&mut state, &input, what);
        let run = state.run;
        let child = instance.unwrap_or_else(|| {
            generated_child_id(
                &self.instance,
                run.incarnation,
                run.generation,
                state.next_seq(),
            )
        });
        let request = StepRequest::SubOrchestration {
            orchestrator: O::NAME.to_string(),
            version: O::VERSION,
            instance: child.clone(),
            input,
        };
        let seq = state.issue(site, request);
        // A recorded step keeps the id it was started under (a replay test runs under
        // another incarnation than the instance did).
        let id = state.recorded_child(seq).unwrap_or(child);
        drop(state);
        SubOrchestrationCall::new(self.state.clone(), seq, id)
    }

    /// The current time, recorded in the history so every replay sees the same value.
    #[track_caller]
    pub fn now(&self) -> SystemTime {
        let ms: u64 = self.record(Recorded::Now, Location::caller(), || {
            millis(self.clock.now())
        });
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A random number, recorded in the history so every replay sees the same value.
    #[track_caller]
    pub fn random(&self) -> u64 {
        self.record(Recorded::Random, Location::caller(), || {
            uuid::Uuid::new_v4().as_u64_pair().0
        })
    }

    /// A new random (v4) UUID, recorded in the history so every replay sees the same one.
    #[track_caller]
    pub fn new_uuid(&self) -> uuid::Uuid {
        self.record(Recorded::Uuid, Location::caller(), uuid::Uuid::new_v4)
    }

    /// The escape hatch: runs `f` the first time and records its value in the history;
    /// replays return the recorded value without running `f`. For small, quick,
    /// non-deterministic reads (a configuration flag, a hostname); do real work in
    /// activities.
    #[track_caller]
    pub fn side_effect<T: Serialize + DeserializeOwned>(&self, f: impl FnOnce() -> T) -> T {
        self.record(Recorded::SideEffect, Location::caller(), f)
    }

    /// A value from outside the orchestration, recorded as a step: produced the first
    /// time, read back from the history on replay. `produce` runs without the replay
    /// state locked, so it may be any user code (it must not use the context).
    fn record<T: Serialize + DeserializeOwned>(
        &self,
        kind: Recorded,
        caller: &Location<'_>,
        produce: impl FnOnce() -> T,
    ) -> T {
        let mut state = lock(&self.state);
        let site = self.site(&state, caller);
        if state.next_is_recorded() {
            // Compared with the step the history has here, whose value is read back: the
            // request's own value is never used.
            let request = StepRequest::Recorded {
                kind,
                value: Vec::new(),
            };
            let seq = state.issue(site, request);
            if !state.is_stopped()
                && let Some(bytes) = state.recorded_value(seq)
            {
                match payload::decode(&bytes) {
                    Ok(value) => return value,
                    Err(e) => state.stall_payload(failure::undecodable(e)),
                }
            }
            // The turn is stopping: its result is discarded, any value will do.
            drop(state);
            return produce();
        }
        drop(state);
        let value = produce();
        let mut state = lock(&self.state);
        let bytes = Self::encode_step(&mut state, &value, || {
            format!("the value recorded by `ctx.{kind}`")
        });
        let request = StepRequest::Recorded { kind, value: bytes };
        state.issue(site, request);
        value
    }

    /// Sets the instance's custom status, which clients read while it runs (progress,
    /// the current stage, ...). Stored with the turn.
    pub fn set_custom_status<T: Serialize>(&self, status: &T) {
        let mut state = lock(&self.state);
        let bytes = Self::encode(&mut state, status);
        state.set_custom_status(bytes);
    }

    /// Ends this generation of the instance and starts the next with `input` and a fresh
    /// history, under the same instance id: how an eternal orchestration keeps its
    /// history small. External events it received and did not take are raised again to
    /// the next generation, in order. Called on the context parameter in an
    /// `#[orchestrator]` body, `input` must be a value of the orchestrator's input type,
    /// checked at compile time (a literal `1` is then the input's integer type, not
    /// `i32`); elsewhere (a `#[deterministic]` helper) the type is inferred, so name it:
    /// `ctx.continue_as_new::<Input, _>(next)`. Await it as the orchestrator's last step;
    /// it never resolves, and its output type is whatever the orchestrator returns:
    ///
    /// ```ignore
    /// if round < last {
    ///     return ctx.continue_as_new(round + 1).await;
    /// }
    /// Ok(round)
    /// ```
    pub fn continue_as_new<I: Serialize, T>(&self, input: I) -> ContinueAsNew<T> {
        self.continue_with(input, false)
    }

    /// Like [`continue_as_new`](Self::continue_as_new), and the next generation runs the
    /// newest registered version of this orchestrator: how an eternal instance moves to
    /// new code. `input` must then be what the newest version takes.
    pub fn continue_as_new_latest<I: Serialize, T>(&self, input: I) -> ContinueAsNew<T> {
        self.continue_with(input, true)
    }

    fn continue_with<I: Serialize, T>(&self, input: I, latest_version: bool) -> ContinueAsNew<T> {
        let mut state = lock(&self.state);
        let bytes = Self::encode(&mut state, &input);
        state.continue_as_new(bytes, latest_version);
        ContinueAsNew::new()
    }

    /// Versioning within one orchestrator: whether this instance takes the new path of
    /// change `change_id`. Instances that reach the call for the first time take it (and
    /// record a marker); instances whose history went past this point before the change
    /// keep the old path on replay, and nothing is recorded for them. That holds wherever
    /// the call is inserted: before an activity, a timer, an event wait, a
    /// sub-orchestration, a join, a select, or at the end. Reached while replaying a
    /// recorded turn, it answers `true` only if the history has the marker at this step;
    /// reached for the first time, `true`. The same `change_id` answers alike for the
    /// rest of the execution. The table of cases: [`crate::determinism`].
    ///
    /// Once every old instance has finished, remove the old path; keep the call until the
    /// instances that recorded the marker have finished too (the marker is a step).
    /// Change ids starting with `durable:` are the library's own markers: choose others.
    ///
    /// ```ignore
    /// if ctx.patched("send-receipt") {
    ///     ctx.call(send_receipt, order.id).await?;
    /// }
    /// ```
    #[track_caller]
    pub fn patched(&self, change_id: &str) -> bool {
        self.patched_at(Patch::named(change_id), Location::caller())
    }

    /// Whether the instance takes the new path of `change` (the user's, or the
    /// library's), recorded as asked at `caller`.
    pub(crate) fn patched_at(&self, change: Patch, caller: &Location<'_>) -> bool {
        let mut state = lock(&self.state);
        let site = self.site(&state, caller);
        state.patched(change, site)
    }
}
