//! Schedules (feature `schedules`): start an orchestrator on a cron expression in a time
//! zone or an interval, each tick starting exactly one instance.
//!
//! As in Temporal, a schedule is an orchestration of its own: instance
//! `schedule:{id}` of the built-in orchestrator `durable.schedule`, which a runtime runs
//! once built with [`RuntimeBuilder::schedules`]. So a schedule has what every instance
//! has: its state in the store, a lease, failover to another worker, kill -9 safety, and
//! the admin views. Each generation of it waits on a durable timer for its next tick (or
//! a request: pause, trigger, backfill, update, delete, raised to it as an event), starts
//! the tick's run, and continues as new with its state, so its history stays short.
//!
//! Each tick's run is instance `{id}-{tick as RFC 3339 UTC}` (`nightly-2026-03-25T08:00:00Z`),
//! started by a built-in activity that takes "already exists" as started: however many
//! workers, and wherever one is killed, a tick starts one instance. An instance of that id
//! that another orchestrator runs is not the tick's: the tick is skipped (counted), the
//! instance left alone.
//!
//! Ticks are computed once: each wake records its wake time and what it decided (the
//! ticks due, what starts) in its history, so a replay by a build whose cron parser or
//! tz database places a tick elsewhere carries on with what was decided; the next
//! generation computes with the build that runs it.
//!
//! The files: [`spec`] when a schedule ticks, [`policy`] what it does with overlapping
//! runs, missed ticks and failures, `state.rs` the state and the pure steps taken on it,
//! `orchestration.rs` the built-in orchestrator and activities, [`client`] the client's
//! operations.
//!
//! # Examples
//!
//! ```no_run
//! # async fn run(client: durable_core::Client) -> Result<(), durable_core::Error> {
//! use durable_core::schedule::{OverlapPolicy, Schedule, ScheduleAction, ScheduleSpec};
//! use durable_core::{OrchestrationContext, orchestrator};
//!
//! #[orchestrator]
//! async fn report(_ctx: OrchestrationContext, team: String) -> Result<(), String> {
//!     Ok(())
//! }
//!
//! let spec = ScheduleSpec::cron_in("0 0 9 * * MON-FRI", "Europe/Berlin")?;
//! let action = ScheduleAction::start(report, "ops".to_string())?;
//! let schedule = Schedule::new(spec, action).overlap(OverlapPolicy::BufferOne);
//! let handle = client.create_schedule("daily-report", schedule).await?;
//! handle.pause("until the migration is done").await?;
//! # Ok(())
//! # }
//! ```

pub mod client;
mod orchestration;
pub mod policy;
pub mod spec;
mod state;
pub(crate) mod summary;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{RecentRun, ScheduleDescription, ScheduleHandle};
pub use policy::{OverlapPolicy, SchedulePolicies};
pub use spec::ScheduleSpec;

use crate::client::start_options::StartOptions;
use crate::error::Error;
use crate::handle::Orchestrator;
use crate::runtime::RuntimeBuilder;

/// The prefix of a schedule's instance id: schedule `nightly` runs as instance
/// `schedule:nightly`.
pub const SCHEDULE_INSTANCE_PREFIX: &str = "schedule:";

/// What a schedule starts on each tick: an orchestrator, by the handle `#[orchestrator]`
/// made, its input, and the options of each start ([`StartOptions`], as Temporal's
/// schedule action carries a workflow execution timeout). Stored by name, version and JSON
/// input, so the schedule outlives deploys; the runtime that runs the tick's instance
/// needs the orchestrator registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleAction {
    orchestrator: String,
    version: u32,
    input: serde_json::Value,
    /// Absent from schedules stored before actions had options: the default.
    #[serde(default, skip_serializing_if = "is_default")]
    options: StartOptions,
}

fn is_default(options: &StartOptions) -> bool {
    *options == StartOptions::default()
}

impl ScheduleAction {
    /// Start `orchestrator` (its current version) with `input` on each tick.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] if `input` does not encode as JSON.
    pub fn start<O: Orchestrator>(orchestrator: O, input: O::Input) -> Result<Self, Error> {
        let _ = orchestrator;
        let input = crate::payload::to_json(&crate::payload::encode(&input)?)?;
        Ok(Self::by_name(O::NAME, O::VERSION, input))
    }

    pub(crate) fn by_name(orchestrator: &str, version: u32, input: serde_json::Value) -> Self {
        Self {
            orchestrator: orchestrator.to_string(),
            version,
            input,
            options: StartOptions::default(),
        }
    }

    /// Starts each tick's run with `options`: an
    /// [`execution_timeout`](StartOptions::execution_timeout) bounds each run (counted
    /// from its start), [`max_recoveries`](StartOptions::max_recoveries) parks a run that
    /// crashes its worker, a [`start_delay`](StartOptions::start_delay) starts it that long
    /// after the schedule's start (its id still names the tick; the run is pending, and
    /// counts as running for the overlap policy, meanwhile). A
    /// [`start_at`](StartOptions::start_at) is one instant for every run: once it has
    /// passed, runs start at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use durable_core::{OrchestrationContext, orchestrator};
    /// use std::time::Duration;
    /// use durable_core::StartOptions;
    /// use durable_core::schedule::ScheduleAction;
    ///
    /// # #[orchestrator]
    /// # async fn report(_ctx: OrchestrationContext, team: String) -> Result<(), String> { Ok(()) }
    /// let options = StartOptions::new().execution_timeout(Duration::from_secs(3600));
    /// let action = ScheduleAction::start(report, "ops".to_string())?.options(options);
    /// assert_eq!(action.start_options().timeout(), Some(Duration::from_secs(3600)));
    /// # Ok::<(), durable_core::Error>(())
    /// ```
    pub fn options(mut self, options: StartOptions) -> Self {
        self.options = options;
        self
    }

    /// The options each run is started with (the default unless set with
    /// [`options`](Self::options)).
    pub fn start_options(&self) -> &StartOptions {
        &self.options
    }

    /// The name of the orchestrator it starts.
    pub fn orchestrator(&self) -> &str {
        &self.orchestrator
    }

    /// The input, as JSON.
    pub fn input(&self) -> &serde_json::Value {
        &self.input
    }
}

/// A schedule's definition: when ([`ScheduleSpec`]), what ([`ScheduleAction`]), and its
/// policies ([`SchedulePolicies`]), set with the builder methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Schedule {
    /// When it ticks.
    pub spec: ScheduleSpec,
    /// What each tick starts.
    pub action: ScheduleAction,
    /// Overlap, catch-up and failure policies.
    pub policies: SchedulePolicies,
}

impl Schedule {
    /// Start `action` on the ticks of `spec`, with the default policies: skip a tick
    /// while the previous run runs, a catch-up window of a year, no pause on failure.
    pub fn new(spec: ScheduleSpec, action: ScheduleAction) -> Self {
        Self {
            spec,
            action,
            policies: SchedulePolicies::default(),
        }
    }

    /// What a tick does while a previous run still runs (default [`OverlapPolicy::Skip`]).
    pub fn overlap(mut self, overlap: OverlapPolicy) -> Self {
        self.policies.overlap = overlap;
        self
    }

    /// How late a tick may be handled and still run (default: a year); older ticks,
    /// passed while no worker ran the schedule, are counted as missed.
    pub fn catchup_window(mut self, window: Duration) -> Self {
        self.policies.catchup_window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Whether a run that fails pauses the schedule, with a note naming the run.
    pub fn pause_on_failure(mut self, pause: bool) -> Self {
        self.policies.pause_on_failure = pause;
        self
    }

    /// How often the schedule reads the status of its runs while a tick waits for them
    /// (or it pauses on failure); default 10 s.
    pub fn status_poll(mut self, every: Duration) -> Self {
        self.policies.status_poll_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        self
    }
}

impl RuntimeBuilder {
    /// Lets this runtime run schedules (feature `schedules`): registers the built-in
    /// orchestrator `durable.schedule` and its activities. Every worker on a store whose
    /// schedules should keep ticking through failures needs it.
    pub fn schedules(self) -> Self {
        orchestration::register(self)
    }
}

/// The instance id of schedule `id`.
pub(crate) fn instance_id(id: &str) -> String {
    format!("{SCHEDULE_INSTANCE_PREFIX}{id}")
}

/// The instance id of schedule `schedule`'s run for the tick at `tick`:
/// `{schedule}-{tick as RFC 3339 UTC}`, `nightly-2026-03-25T08:00:00Z` (milliseconds only
/// if the tick has some).
pub fn run_id(schedule: &str, tick: std::time::SystemTime) -> String {
    run_id_ms(schedule, spec::millis(tick))
}

/// [`run_id`] of a tick in milliseconds since the Unix epoch.
pub(crate) fn run_id_ms(schedule: &str, at_ms: u64) -> String {
    format!("{schedule}-{}", spec::rfc3339(at_ms))
}
