//! A schedule's state, carried from one generation of its orchestration to the next, and
//! the pure steps the orchestration takes on it: which ticks are due, which of them start
//! a run under which overlap policy, what a control request changes, when to wake next.
//! No I/O here: the orchestration (`orchestration.rs`) does what these steps decide.

use serde::{Deserialize, Serialize};

use crate::schedule::policy::OverlapPolicy;
use crate::schedule::spec::Compiled;
use crate::schedule::{Schedule, run_id_ms};

/// How many recent runs a schedule remembers (for `describe`).
pub(crate) const RECENT_RUNS: usize = 10;

/// How many ticks one wake steps through at most; more due ticks (a schedule of seconds
/// that slept for a month) are taken by the next generation, at once. Also how many ticks
/// wait in the queue at most: a backfill's are queued as it drains, and a `BufferAll`
/// tick beyond it is skipped (Temporal bounds its buffer likewise), so the state, which
/// is a payload, stays small.
const TICKS_PER_WAKE: usize = 1_000;

/// A schedule's state: its orchestration's input, each generation's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScheduleState {
    /// The schedule's id (not its instance's).
    pub(crate) id: String,
    /// What it starts, when, and its policies.
    pub(crate) schedule: Schedule,
    /// Paused, with a note saying why.
    pub(crate) paused: Option<String>,
    /// Every tick of the spec at or before it was handled (run, buffered, skipped or
    /// missed), in milliseconds since the Unix epoch.
    pub(crate) last_tick_ms: u64,
    /// Ticks waiting to run, in order: buffered behind a running run, or asked for
    /// (trigger, backfill) and not yet handled.
    pub(crate) queued: Vec<Tick>,
    /// Runs started and not yet seen finished, by instance id.
    pub(crate) running: Vec<String>,
    /// The latest runs started, oldest first (at most [`RECENT_RUNS`]).
    pub(crate) recent: Vec<StartedRun>,
    /// Ticks handled later than the catch-up window allows: counted, not run.
    pub(crate) missed: u64,
    /// Ticks the overlap policy dropped.
    pub(crate) skipped: u64,
    /// Runs started.
    pub(crate) started: u64,
    /// Ticks were left due by the last wake ([`TICKS_PER_WAKE`]): wake again at once.
    pub(crate) more_due: bool,
    /// Backfills not yet queued whole, oldest first (absent from states stored before).
    #[serde(default)]
    pub(crate) backfills: Vec<Backfill>,
}

/// The rest of a backfill: its ticks after `after_ms` and before `end_ms`, each queued
/// under `overlap` as the queue has room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Backfill {
    after_ms: u64,
    end_ms: u64,
    overlap: OverlapPolicy,
}

/// A tick to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tick {
    /// Its time, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The run's instance id.
    pub(crate) run: String,
    /// The overlap policy it is handled under.
    pub(crate) overlap: OverlapPolicy,
    /// Asked for by a trigger or a backfill: it runs while the schedule is paused too.
    pub(crate) manual: bool,
}

/// A run the schedule started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartedRun {
    /// Its instance id.
    pub(crate) run: String,
    /// Its tick's time, in milliseconds since the Unix epoch.
    pub(crate) scheduled_ms: u64,
    /// When the schedule started it, in milliseconds since the Unix epoch.
    pub(crate) started_ms: u64,
}

/// A request to a schedule, raised to its instance as an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Control {
    Pause {
        note: String,
    },
    Unpause,
    Trigger,
    Backfill {
        start_ms: u64,
        end_ms: u64,
        overlap: OverlapPolicy,
    },
    Update(Schedule),
    Delete,
}

/// What a run the schedule watches has come to, as its status activity read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RunOutcome {
    /// Not finished (pending, running, suspended, stalled).
    Running,
    /// Finished other than by failing (completed, terminated), or purged.
    Ended,
    /// Failed, with its failure's message.
    Failed(String),
}

/// What the orchestration does for a wake, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Action {
    /// Terminate these runs.
    Terminate(Vec<String>),
    /// Start this tick's run.
    Start(Tick),
}

impl ScheduleState {
    /// A new schedule `id`, created at `now_ms`: its first tick is the spec's first after
    /// that.
    pub(crate) fn new(id: String, schedule: Schedule, paused: Option<String>, now_ms: u64) -> Self {
        Self {
            id,
            schedule,
            paused,
            last_tick_ms: now_ms,
            queued: Vec::new(),
            running: Vec::new(),
            recent: Vec::new(),
            missed: 0,
            skipped: 0,
            started: 0,
            more_due: false,
            backfills: Vec::new(),
        }
    }

    /// Its next `n` ticks (without jitter), in milliseconds since the Unix epoch: none
    /// while paused, fewer once its spec has no more.
    ///
    /// # Errors
    ///
    /// The error of [`ScheduleSpec`](crate::schedule::ScheduleSpec) if its spec no
    /// longer compiles.
    pub(crate) fn next_ticks(&self, n: usize) -> Result<Vec<u64>, crate::error::Error> {
        if self.paused.is_some() {
            return Ok(Vec::new());
        }
        let spec = self.schedule.spec.compile()?;
        let ticks = std::iter::successors(spec.next_after(self.last_tick_ms), |&tick| {
            spec.next_after(tick)
        });
        Ok(ticks.take(n).collect())
    }

    /// When the orchestration wakes next (before `jitter_ms`, which it adds to a tick):
    /// the next tick, or sooner to look at the runs a queued tick waits for (or that may
    /// fail and pause it); `None` to wait only for a request.
    pub(crate) fn next_wake_ms(&self, now_ms: u64, jitter_ms: u64) -> Option<u64> {
        let refill = !self.backfills.is_empty() && self.queued.len() < TICKS_PER_WAKE / 2;
        if self.more_due || refill {
            return Some(now_ms);
        }
        let poll = !self.running.is_empty()
            && (!self.queued.is_empty() || self.schedule.policies.pause_on_failure);
        let poll = poll.then(|| now_ms + self.schedule.policies.status_poll_ms.max(1));
        let tick = if self.paused.is_some() {
            None
        } else {
            let spec = self.schedule.spec.compile().ok()?;
            spec.next_after(self.last_tick_ms).map(|t| t + jitter_ms)
        };
        match (tick, poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies request `control`, at `now_ms`. Returns `true` for a delete.
    pub(crate) fn apply(&mut self, control: Control, now_ms: u64) -> bool {
        match control {
            Control::Pause { note } => self.paused = Some(note),
            Control::Unpause => {
                // The ticks that passed while paused are neither run nor missed.
                self.paused = None;
                self.last_tick_ms = self.last_tick_ms.max(now_ms);
            }
            Control::Trigger => {
                let run = self.trigger_run_id(now_ms);
                self.queued.push(Tick {
                    at_ms: now_ms,
                    run,
                    overlap: self.schedule.policies.overlap,
                    manual: true,
                });
            }
            Control::Backfill {
                start_ms,
                end_ms,
                overlap,
            } => {
                self.backfills.push(Backfill {
                    after_ms: start_ms.saturating_sub(1),
                    end_ms,
                    overlap,
                });
                let spec = self.schedule.spec.clone();
                if let Ok(spec) = spec.compile() {
                    self.take_backfills(&spec);
                }
            }
            Control::Update(schedule) => {
                // The old spec's ticks due by now were due before the update: taken under
                // it, so an update handled at a tick's instant (the two in one turn, the
                // update winning the select) does not drop that tick.
                self.take_due(now_ms);
                self.schedule = schedule;
                self.last_tick_ms = self.last_tick_ms.max(now_ms);
            }
            Control::Delete => return true,
        }
        false
    }

    fn queue(&mut self, at_ms: u64, overlap: OverlapPolicy, manual: bool) {
        self.queued.push(Tick {
            at_ms,
            run: run_id_ms(&self.id, at_ms),
            overlap,
            manual,
        });
    }

    /// The run id of a trigger handled at `now_ms`: [`run_id_ms`] of that time, or, if a
    /// run of this schedule has that id already (a trigger at the instant of another
    /// trigger) or the spec ticks at that instant, that id with `-2`, `-3`, ... appended.
    /// A tick's id stays its tick's, whether the tick ran, runs after the trigger, or
    /// has no run (skipped, paused) and a backfill runs it later. A trigger asks for a
    /// run of its own: it never folds into a tick's, as a backfill's ticks do.
    fn trigger_run_id(&self, now_ms: u64) -> String {
        let base = run_id_ms(&self.id, now_ms);
        let spec_ticks_now = (self.schedule.spec.compile().ok())
            .and_then(|spec| spec.next_after(now_ms.saturating_sub(1)))
            == Some(now_ms);
        let taken = |run: &str| {
            (run == base && spec_ticks_now)
                || self.running.iter().any(|r| r == run)
                || self.recent.iter().any(|r| r.run == run)
                || self.queued.iter().any(|t| t.run == run)
        };
        (1u32..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            })
            .find(|run| !taken(run))
            .expect("some suffix is free")
    }

    /// Queues the backfills' next ticks while the queue has room.
    fn take_backfills(&mut self, spec: &Compiled<'_>) {
        while self.queued.len() < TICKS_PER_WAKE {
            let Some(backfill) = self.backfills.first_mut() else {
                return;
            };
            let (end_ms, overlap) = (backfill.end_ms, backfill.overlap);
            match spec.next_after(backfill.after_ms).filter(|&t| t < end_ms) {
                Some(tick) => {
                    backfill.after_ms = tick;
                    self.queue(tick, overlap, true);
                }
                None => {
                    self.backfills.remove(0);
                }
            }
        }
    }

    /// Takes in what the watched runs have come to: finished ones are no longer running;
    /// a failed one pauses the schedule if its policy says so.
    pub(crate) fn observe(&mut self, outcomes: Vec<(String, RunOutcome)>) {
        for (run, outcome) in outcomes {
            match outcome {
                RunOutcome::Running => continue,
                RunOutcome::Failed(message) if self.schedule.policies.pause_on_failure => {
                    self.paused = Some(format!("run `{run}` failed: {message}"));
                }
                RunOutcome::Failed(_) | RunOutcome::Ended => {}
            }
            self.running.retain(|r| *r != run);
        }
    }

    /// Queues the backfills' next ticks, then the spec's ticks due at `now_ms` that the
    /// catch-up window lets run, and counts the older ones as missed. No tick of the spec
    /// is due while paused.
    pub(crate) fn take_due(&mut self, now_ms: u64) {
        self.more_due = false;
        let spec = self.schedule.spec.clone();
        let Ok(spec) = spec.compile() else {
            // No tick can be computed: a backfill left would wake the schedule forever.
            self.backfills.clear();
            return;
        };
        self.take_backfills(&spec);
        if self.paused.is_some() {
            return;
        }
        let window = self.schedule.policies.catchup_window_ms;
        let overlap = self.schedule.policies.overlap;
        for _ in 0..TICKS_PER_WAKE {
            let Some(tick) = spec.next_after(self.last_tick_ms).filter(|&t| t <= now_ms) else {
                return;
            };
            self.last_tick_ms = tick;
            if now_ms - tick > window {
                self.missed += 1;
            } else {
                self.queue(tick, overlap, false);
            }
        }
        self.more_due = true;
    }

    /// Decides what the queued ticks do, given the runs still running: each starts, waits
    /// (stays queued), or is skipped, per its overlap policy. Records the starts as done
    /// (the orchestration carries them out before the state is kept).
    pub(crate) fn plan(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut waiting: Vec<Tick> = Vec::new();
        for tick in std::mem::take(&mut self.queued) {
            if self.paused.is_some() && !tick.manual {
                waiting.push(tick);
                continue;
            }
            if self.running.contains(&tick.run) || self.recent.iter().any(|r| r.run == tick.run) {
                // The same tick twice (a backfill over ticks that ran): one run per tick.
                continue;
            }
            let start = self.running.is_empty()
                || match tick.overlap {
                    OverlapPolicy::Skip => false,
                    OverlapPolicy::AllowAll => true,
                    OverlapPolicy::TerminateOther => {
                        actions.push(Action::Terminate(std::mem::take(&mut self.running)));
                        true
                    }
                    OverlapPolicy::BufferOne => {
                        if !waiting
                            .iter()
                            .any(|w| w.overlap == OverlapPolicy::BufferOne)
                        {
                            waiting.push(tick);
                        } else {
                            self.skipped += 1;
                        }
                        continue;
                    }
                    OverlapPolicy::BufferAll => {
                        if waiting.len() < TICKS_PER_WAKE {
                            waiting.push(tick);
                        } else {
                            self.skipped += 1;
                        }
                        continue;
                    }
                };
            if start {
                self.running.push(tick.run.clone());
                self.started += 1;
                self.recent.push(StartedRun {
                    run: tick.run.clone(),
                    scheduled_ms: tick.at_ms,
                    started_ms: now_ms,
                });
                if self.recent.len() > RECENT_RUNS {
                    self.recent.remove(0);
                }
                actions.push(Action::Start(tick));
            } else {
                self.skipped += 1;
            }
        }
        self.queued = waiting;
        actions
    }

    /// Takes back the start of `run`, which [`plan`](Self::plan) recorded: its instance id
    /// is another orchestrator's, so the tick has no run (counted as skipped).
    pub(crate) fn unstart(&mut self, run: &str) {
        self.running.retain(|r| r != run);
        let before = self.recent.len();
        self.recent.retain(|r| r.run != run);
        if self.recent.len() < before {
            self.started = self.started.saturating_sub(1);
        }
        self.skipped += 1;
    }
}

#[cfg(test)]
mod tests;
