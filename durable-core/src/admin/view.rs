//! The views of the admin API: what `durable list --json`, `durable show --json`,
//! `durable history --json`, `durable stats --json` print and what the dashboard's
//! `/api/` endpoints answer, one shape for both. Payloads are JSON values, never bytes;
//! times are milliseconds since the Unix epoch.
//!
//! Every view is `Serialize` and `Deserialize`, so the CLI reads a running process's
//! `/api/` (`durable --url http://ADDR ...`) into the same types it builds from a store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where in the orchestrator's source a step was issued: the await site the
/// `#[orchestrator]` macro records with each step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteView {
    /// Source file, as `file!()` gives it (`examples/migration.rs`).
    pub file: String,
    /// Line in that file, from 1.
    pub line: u32,
    /// The orchestrator function the site is in.
    pub function: String,
}

/// A durable step: its number, what it is, and where it was issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    /// Step number, from 0 in program order (in the current generation).
    pub step: u64,
    /// What the step is: "activity `pay`", "a timer", ...
    pub operation: String,
    /// The await site.
    pub site: SiteView,
}

/// A failure: its kind and message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureView {
    /// The kind, in snake case: `error`, `panic`, `nondeterminism`, `timeout`, ...
    pub kind: String,
    /// What went wrong, as recorded.
    pub message: String,
}

/// One instance in a list: [`InstanceList::instances`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Instance id.
    pub id: String,
    /// Registered name of its orchestrator.
    pub orchestrator: String,
    /// Version of the orchestrator it runs.
    pub version: u32,
    /// Status name: `pending`, `running`, `completed`, `failed`, `stalled`, `terminated`,
    /// `suspended` or `dead-lettered` ([`StatusKind::as_str`](durable_store::StatusKind::as_str)).
    pub status: String,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When its record last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// For a failed, stalled, terminated, suspended or dead-lettered instance: why (the
    /// failure message, the stall's cause, the reason given or the runtime's).
    pub message: Option<String>,
    /// The custom status the orchestrator set last, if any.
    pub custom_status: Option<serde_json::Value>,
    /// For a stalled or failed instance: the last step it issued, with its await site.
    pub stopped_at: Option<StepView>,
}

/// A page of [`InstanceRow`]s, with the counts by status of the whole store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceList {
    /// The instances of the page, in creation order.
    pub instances: Vec<InstanceRow>,
    /// The cursor of the next page (pass it back as `after`); `None` on the last page.
    pub next: Option<String>,
    /// Orchestration instances by status name, every status present (zeros included).
    pub counts: BTreeMap<String, u64>,
}

/// A child of an instance: a sub-orchestration it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildView {
    /// The child's instance id.
    pub id: String,
    /// The child's orchestrator.
    pub orchestrator: String,
    /// The parent's step that started it.
    pub step: u64,
    /// The child's status name, `None` if it is gone (purged).
    pub status: Option<String>,
}

/// An activity the instance waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingActivity {
    /// Its step.
    pub step: u64,
    /// Activity name.
    pub activity: String,
    /// The attempt under way (1 for the first).
    pub attempt: u32,
    /// Where it was called.
    pub site: SiteView,
}

/// A durable timer that has not fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTimer {
    /// Its step.
    pub step: u64,
    /// When it fires, ms since the Unix epoch.
    pub fire_at_ms: u64,
    /// Where it was created.
    pub site: SiteView,
}

/// What an instance waits for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWork {
    /// Activities scheduled whose results have not arrived.
    pub activities: Vec<PendingActivity>,
    /// Timers that have not fired.
    pub timers: Vec<PendingTimer>,
    /// Sub-orchestrations that have not finished: their steps.
    pub sub_orchestrations: Vec<StepView>,
    /// Names of the external events it waits for and has not received (from the
    /// history's `EventAwaited` records; a history written before them lists none), each
    /// once, in the order the waits began.
    ///
    /// The history records when a wait began, not when the code dropped one before its
    /// event arrived (it lost a race with a timeout): such a name stays listed until an
    /// event of that name arrives for the index it waited for, or the instance ends.
    pub events: Vec<String>,
}

/// One row of an instance's timeline: an activity, timer, sub-orchestration, entity call
/// or event wait, from when it was scheduled to when it was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRow {
    /// `activity`, `timer`, `sub-orchestration`, `entity` or `event`.
    pub kind: String,
    /// The activity, orchestrator, entity operation or event name; `timer` for a timer.
    pub name: String,
    /// Its step; `None` for an event wait (not a step).
    pub step: Option<u64>,
    /// When it was scheduled (or the wait began), ms since the Unix epoch, if known.
    pub started_at_ms: Option<u64>,
    /// When its result was recorded, `None` while it is pending.
    pub ended_at_ms: Option<u64>,
    /// `pending`, `completed`, `failed` (or, for a timer, `fired`; for an event wait
    /// whose event was set aside, `set_aside`).
    pub outcome: String,
    /// Attempts made (1 without retries); more than 1 marks retries.
    pub attempts: u32,
    /// Where it was issued (or the wait created).
    pub site: Option<SiteView>,
}

/// Everything about one instance: what `durable show ID` prints and the instance page
/// shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceDetail {
    /// The instance as a list shows it.
    #[serde(flatten)]
    pub summary: InstanceRow,
    /// Its generation (continue-as-new count, from 0).
    pub generation: u32,
    /// For a delayed start that has not run yet
    /// ([`StartOptions::start_at`](crate::StartOptions::start_at)): when its first turn
    /// runs, ms since the Unix epoch.
    #[serde(default)]
    pub starts_at_ms: Option<u64>,
    /// For an instance started with an execution timeout
    /// ([`StartOptions::execution_timeout`](crate::StartOptions::execution_timeout)): when
    /// it times out, ms since the Unix epoch.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Its input.
    pub input: Option<serde_json::Value>,
    /// Its output, once completed.
    pub output: Option<serde_json::Value>,
    /// Its error, once failed, stalled or terminated.
    pub error: Option<FailureView>,
    /// The instance that started it, if it is a sub-orchestration.
    pub parent: Option<String>,
    /// The sub-orchestrations it started.
    pub children: Vec<ChildView>,
    /// What it waits for now.
    pub pending: PendingWork,
    /// Its activities, timers, sub-orchestrations and waits, in the order issued.
    pub timeline: Vec<TimelineRow>,
}

/// One event of an instance's history: what `durable history ID` prints, one per row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// Position in the history, from 0.
    pub index: u32,
    /// The step the event belongs to, if any.
    pub step: Option<u64>,
    /// The event's kind, as named in [`Event`](durable_store::Event):
    /// `ActivityScheduled`, `ActivityCompleted`, `TimerCreated`, ...
    pub kind: String,
    /// The activity, orchestrator, event or entity named, if any.
    pub name: Option<String>,
    /// `completed`, `failed`, `fired`, ... for events that end a step or the instance.
    pub outcome: Option<String>,
    /// When it was recorded, ms since the Unix epoch, if the history says.
    pub at_ms: Option<u64>,
    /// The await site, for events that issue a step or begin an event wait.
    pub site: Option<SiteView>,
    /// The payload it carries (input, output, event payload, failure), as JSON.
    pub payload: Option<serde_json::Value>,
}

/// A store's totals: what `durable stats` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Orchestration instances by status name, every status present.
    pub counts: BTreeMap<String, u64>,
    /// Work items queued (messages, activity tasks, timers) not yet done.
    pub work_queued: u64,
    /// When the oldest queued work item was enqueued (or is due), ms since the Unix epoch.
    /// A message or an activity task carries no time of its own: it counts from when its
    /// instance's record last changed; a timer counts once due, from its fire time.
    pub oldest_pending_at_ms: Option<u64>,
}

/// One entity in a list: [`EntityList::entities`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityRow {
    /// The entity type's name (`Account` of `@Account@alice`).
    pub name: String,
    /// The entity's key (`alice`).
    pub key: String,
    /// Its last committed state as JSON; `None` if it has none (signalled but not yet
    /// run, or deleted). A state that is not JSON shows as a JSON string saying so.
    pub state: Option<serde_json::Value>,
    /// The orchestration instance holding it locked in a critical section, if any.
    pub locked_by: Option<String>,
    /// When its record last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// A page of [`EntityRow`]s, in id order (type name, then key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityList {
    /// The entities of the page.
    pub entities: Vec<EntityRow>,
    /// The cursor of the next page (pass it back as `after`); `None` on the last page.
    pub next: Option<String>,
}

/// One schedule in a list: [`ScheduleList::schedules`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRow {
    /// The schedule's id (its instance is `schedule:{id}`).
    pub id: String,
    /// The orchestrator each tick starts.
    pub orchestrator: String,
    /// The note it was paused with; `None` while it runs.
    pub paused: Option<String>,
    /// Its next tick (without jitter), ms since the Unix epoch; `None` while paused or
    /// once its spec has no more ticks.
    pub next_run_ms: Option<u64>,
    /// Runs it started.
    pub started: u64,
    /// Ticks handled too late for the catch-up window: counted, not run.
    pub missed: u64,
    /// Ticks its overlap policy skipped.
    pub skipped: u64,
}

/// A page of [`ScheduleRow`]s, in id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleList {
    /// The schedules of the page.
    pub schedules: Vec<ScheduleRow>,
    /// The cursor of the next page (the last id of this one; pass it back as `after`);
    /// `None` on the last page.
    pub next: Option<String>,
}

/// A run a schedule started: [`ScheduleDetail::recent_runs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRunView {
    /// Its instance id (`{schedule}-{tick as RFC 3339 UTC}`).
    pub instance_id: String,
    /// Its tick's time (the trigger's time for a triggered run), ms since the Unix epoch.
    pub scheduled_at_ms: u64,
    /// When the schedule started it, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// Its status name now; `None` if it was purged.
    pub status: Option<String>,
}

/// Everything about one schedule: its definition, state, next and recent runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDetail {
    /// The schedule's id.
    pub id: String,
    /// When it ticks: its cron expressions with their zones, intervals, start and end
    /// times and jitter, as JSON (the spec's own serde shape).
    pub spec: serde_json::Value,
    /// The orchestrator each tick starts.
    pub orchestrator: String,
    /// The input each run starts with.
    pub input: serde_json::Value,
    /// The overlap policy: `skip`, `buffer_one`, `buffer_all`, `allow_all` or
    /// `terminate_other`.
    pub overlap: String,
    /// How late a tick may be handled and still run, in ms.
    pub catchup_window_ms: u64,
    /// Whether a failed run pauses the schedule.
    pub pause_on_failure: bool,
    /// The note it was paused with; `None` while it runs.
    pub paused: Option<String>,
    /// Its next ticks (without jitter), ms since the Unix epoch; none while paused.
    pub next_runs_ms: Vec<u64>,
    /// Its latest runs, oldest first, with their status now.
    pub recent_runs: Vec<ScheduleRunView>,
    /// Ticks waiting to run (buffered, triggered or backfilled), ms since the Unix epoch.
    pub queued_ms: Vec<u64>,
    /// Ticks handled too late for the catch-up window: counted, not run.
    pub missed: u64,
    /// Ticks its overlap policy skipped.
    pub skipped: u64,
    /// Runs it started.
    pub started: u64,
}
