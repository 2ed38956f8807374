//! The client's schedule operations: create a schedule, and through its
//! [`ScheduleHandle`] update, pause, unpause, trigger, backfill, describe and delete it.
//! Requests reach the schedule's orchestration as raised events; a description reads its
//! state (the input of its current generation) and the records of its recent runs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_store::StatusKind;

use crate::client::Client;
use crate::error::Error;
use crate::schedule::orchestration::{CONTROL_EVENT, schedule as schedule_orchestrator};
use crate::schedule::policy::OverlapPolicy;
use crate::schedule::spec::millis;
use crate::schedule::state::{Control, ScheduleState};
use crate::schedule::{Schedule, instance_id, run_id_ms};

/// How long [`ScheduleHandle::delete`] waits for the schedule's orchestration to end.
const DELETE_WAIT: Duration = Duration::from_secs(30);

impl Client {
    /// Creates schedule `id`: from now on each tick of its spec starts its action, on the
    /// runtimes built with [`RuntimeBuilder::schedules`](crate::RuntimeBuilder::schedules).
    /// The first tick is the spec's first after now (a backfill runs earlier ones). The
    /// runs' ids are those an earlier schedule of the same id gave its runs: a tick whose
    /// instance exists (such a run) is taken as run.
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleExists`] if schedule `id` exists; [`Error::InvalidSchedule`] if
    /// its spec does not parse, or `id` is too long for its runs' ids;
    /// [`Error::InvalidInstanceId`] if `id` is not valid in an instance id;
    /// [`Error::UnregisteredOrchestrator`] if this client's runtime was not built with
    /// `schedules()`; [`Error::Store`] if the store fails.
    pub async fn create_schedule(
        &self,
        id: &str,
        schedule: Schedule,
    ) -> Result<ScheduleHandle, Error> {
        self.create_schedule_paused(id, schedule, None).await
    }

    /// [`create_schedule`](Self::create_schedule), paused with `note` if it is `Some`.
    ///
    /// # Errors
    ///
    /// As [`create_schedule`](Self::create_schedule).
    pub async fn create_schedule_paused(
        &self,
        id: &str,
        schedule: Schedule,
        note: Option<String>,
    ) -> Result<ScheduleHandle, Error> {
        schedule.spec.compile()?;
        // The longest run id the schedule makes (a tick with milliseconds) must be valid.
        let longest = run_id_ms(id, 253_402_300_799_999);
        if longest.len() > crate::instance_id::MAX_INSTANCE_ID_LEN {
            return Err(Error::InvalidSchedule(format!(
                "schedule id `{id}` is too long: its runs' ids would be over {} bytes",
                crate::instance_id::MAX_INSTANCE_ID_LEN
            )));
        }
        crate::instance_id::check_user_instance_id(&longest)?;
        let state = ScheduleState::new(id.to_string(), schedule, note, self.engine.now_ms());
        let started = self
            .start(schedule_orchestrator, instance_id(id), state)
            .await?;
        if !started.is_new() {
            return Err(Error::ScheduleExists(id.to_string()));
        }
        Ok(self.schedule(id))
    }

    /// A handle on schedule `id` (not checked until used: its calls then fail with
    /// [`Error::ScheduleNotFound`] if there is none).
    pub fn schedule(&self, id: &str) -> ScheduleHandle {
        ScheduleHandle {
            client: self.clone(),
            id: id.to_string(),
        }
    }
}

/// A handle on one schedule. Cheap to clone. Each request is raised to the schedule's
/// orchestration and takes effect when it next runs (at once, on a running runtime).
#[derive(Clone, Debug)]
pub struct ScheduleHandle {
    client: Client,
    id: String,
}

/// A schedule as [`ScheduleHandle::describe`] reads it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ScheduleDescription {
    /// The schedule's id.
    pub id: String,
    /// Its definition.
    pub schedule: Schedule,
    /// The note it was paused with, if it is paused.
    pub paused: Option<String>,
    /// The times of its next ticks (without jitter), as many as asked for; none while
    /// paused.
    pub next_runs: Vec<SystemTime>,
    /// The latest runs it started, oldest first, with their status now.
    pub recent_runs: Vec<RecentRun>,
    /// The ticks waiting to run (buffered, or asked for by a trigger or backfill): at
    /// most a thousand; a longer backfill's later ticks are queued as these run.
    pub queued: Vec<SystemTime>,
    /// Ticks handled later than the catch-up window allows: counted, not run.
    pub missed: u64,
    /// Ticks the overlap policy skipped.
    pub skipped: u64,
    /// Runs started.
    pub started: u64,
}

/// A run a schedule started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecentRun {
    /// Its instance id.
    pub instance_id: String,
    /// Its tick's time (the trigger's time for a triggered run).
    pub scheduled_at: SystemTime,
    /// When the schedule started it.
    pub started_at: SystemTime,
    /// Its status now; `None` if it was purged.
    pub status: Option<StatusKind>,
}

impl ScheduleHandle {
    /// The schedule's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the schedule's definition (spec, action, policies). Ticks of the new spec
    /// before now do not run; its paused state, runs and counts stay.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchedule`] if the spec does not parse; [`Error::ScheduleNotFound`]
    /// if there is no schedule; [`Error::Store`] if the store fails.
    pub async fn update(&self, schedule: Schedule) -> Result<(), Error> {
        schedule.spec.compile()?;
        self.send(Control::Update(schedule)).await
    }

    /// Pauses the schedule, with a note saying why: its ticks start nothing until
    /// [`unpause`](Self::unpause) (they are not run later either). Triggers and
    /// backfills still run.
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleNotFound`] if there is no schedule; [`Error::Store`] if the store
    /// fails.
    pub async fn pause(&self, note: &str) -> Result<(), Error> {
        self.send(Control::Pause {
            note: note.to_string(),
        })
        .await
    }

    /// Unpauses the schedule: its next tick after now runs.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn unpause(&self) -> Result<(), Error> {
        self.send(Control::Unpause).await
    }

    /// Starts a run now, under the schedule's overlap policy, as instance
    /// `{id}-{now as RFC 3339 UTC}` ("now" is when the schedule handles the request). If
    /// a run of the schedule has that id already, or the spec ticks at that instant, its
    /// id gets `-2` (`-3`, ...) appended: a trigger always asks for a run of its own.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn trigger(&self) -> Result<(), Error> {
        self.send(Control::Trigger).await
    }

    /// Runs the ticks the spec has from `start` (included) to `end` (excluded), each as
    /// its tick's instance (a tick that ran already does not run again), under `overlap`
    /// (Temporal recommends [`OverlapPolicy::BufferAll`] or [`OverlapPolicy::AllowAll`]),
    /// whatever the catch-up window and even while paused. A range of many ticks is
    /// queued a thousand at a time, as the earlier ones run, with the spec the schedule
    /// has then. A tick whose instance exists (a run of this schedule older than its ten
    /// recent ones, or of a deleted schedule of the same id) is taken as run and counted
    /// as started; one whose id another orchestrator's instance holds is skipped.
    ///
    /// # Errors
    ///
    /// As [`pause`](Self::pause).
    pub async fn backfill(
        &self,
        start: SystemTime,
        end: SystemTime,
        overlap: OverlapPolicy,
    ) -> Result<(), Error> {
        self.send(Control::Backfill {
            start_ms: millis(start),
            end_ms: millis(end),
            overlap,
        })
        .await
    }

    /// Deletes the schedule: it starts nothing more, and its instance is purged once it
    /// has ended (waiting up to 30 s for a runtime to end it). Its runs are left as they
    /// are.
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleNotFound`] if there is no schedule; [`Error::Timeout`] if no
    /// runtime ended it in time (it still will); [`Error::Store`] if the store fails.
    pub async fn delete(&self) -> Result<(), Error> {
        let id = instance_id(&self.id);
        let record = self.client.record(&id).await?;
        let record = record.ok_or_else(|| Error::ScheduleNotFound(self.id.clone()))?;
        // A schedule whose orchestration ended otherwise (an operator terminated it) is
        // only purged.
        if !record.status.is_terminal() {
            self.send(Control::Delete).await?;
            let schedule = self.client.instance(schedule_orchestrator, &id);
            match schedule.wait(DELETE_WAIT).await {
                Ok(()) | Err(Error::Failed { .. } | Error::Terminated { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.client.purge(&id).await
    }

    /// The schedule now: its definition, whether it is paused (and why), its next `next`
    /// tick times, its recent runs with their statuses, its missed and skipped counts.
    /// Reads the state as of its latest wake (a request raised since shows once handled)
    /// and one record per recent run.
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleNotFound`] if there is no schedule; [`Error::Payload`] if its
    /// state does not decode; [`Error::Store`] if the store fails.
    pub async fn describe(&self, next: usize) -> Result<ScheduleDescription, Error> {
        let record = self.client.record(&instance_id(&self.id)).await?;
        let record = record
            .filter(|r| !r.status.is_terminal())
            .ok_or_else(|| Error::ScheduleNotFound(self.id.clone()))?;
        let state: ScheduleState = crate::payload::decode(&record.input)?;
        let next_runs: Vec<SystemTime> = state.next_ticks(next)?.into_iter().map(time).collect();
        let mut recent_runs = Vec::with_capacity(state.recent.len());
        for run in &state.recent {
            let status = self.client.record(&run.run).await?;
            recent_runs.push(RecentRun {
                instance_id: run.run.clone(),
                scheduled_at: time(run.scheduled_ms),
                started_at: time(run.started_ms),
                status: status.map(|r| r.status.kind()),
            });
        }
        Ok(ScheduleDescription {
            id: state.id,
            schedule: state.schedule,
            paused: state.paused,
            next_runs,
            recent_runs,
            queued: state.queued.iter().map(|t| time(t.at_ms)).collect(),
            missed: state.missed,
            skipped: state.skipped,
            started: state.started,
        })
    }

    /// Asks the schedule's orchestration to end, without waiting for it (what
    /// [`delete`](Self::delete) does first): for a tool's client, which runs nothing.
    pub(crate) async fn request_delete(&self) -> Result<(), Error> {
        self.send(Control::Delete).await
    }

    async fn send(&self, control: Control) -> Result<(), Error> {
        let id = instance_id(&self.id);
        match self.client.raise_event(&id, CONTROL_EVENT, &control).await {
            Err(Error::InstanceNotFound(_) | Error::InvalidState { .. }) => {
                Err(Error::ScheduleNotFound(self.id.clone()))
            }
            other => other,
        }
    }
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
