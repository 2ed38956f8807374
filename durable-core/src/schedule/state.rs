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
    /// run of this schedule has that id already (a trigger at the instant of a tick that
    /// ran, or of another trigger) or the spec ticks at that instant and that tick is yet
    /// to be handled (after the trigger, it will take that id), that id with `-2`, `-3`, ... appended. A
    /// trigger asks for a run of its own: it never folds into a tick's, as a backfill's
    /// ticks do.
    fn trigger_run_id(&self, now_ms: u64) -> String {
        let base = run_id_ms(&self.id, now_ms);
        // The spec's tick at this instant, if any, is still to be handled (and run).
        let spec_ticks_now = self.paused.is_none()
            && self.last_tick_ms < now_ms
            && (self.schedule.spec.compile().ok())
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
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::schedule::spec::ScheduleSpec;
    use crate::schedule::{Schedule, ScheduleAction};

    const MIN: u64 = 60_000;

    fn state(overlap: OverlapPolicy) -> ScheduleState {
        let spec = ScheduleSpec::every(Duration::from_secs(60)).unwrap();
        let action = ScheduleAction::by_name("job", 1, serde_json::Value::Null);
        let schedule = Schedule::new(spec, action).overlap(overlap);
        ScheduleState::new("s".into(), schedule, None, 0)
    }

    fn started(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start(t) => Some(t.at_ms),
                Action::Terminate(_) => None,
            })
            .collect()
    }

    /// A trigger at the instant of a tick that ran, of a tick handled in the same wake,
    /// or of another trigger, starts a run of its own (it used to take the tick's id and
    /// start nothing, counted nowhere).
    #[test]
    fn a_trigger_at_a_tick_s_instant_starts_a_run_of_its_own() {
        let mut s = state(OverlapPolicy::AllowAll);
        s.take_due(MIN);
        assert_eq!(started(&s.plan(MIN)), [MIN]);
        s.apply(Control::Trigger, MIN);
        s.apply(Control::Trigger, MIN);
        let runs: Vec<String> = (s.plan(MIN).into_iter())
            .filter_map(|a| match a {
                Action::Start(t) => Some(t.run),
                Action::Terminate(_) => None,
            })
            .collect();
        let tick = run_id_ms("s", MIN);
        assert_eq!(runs, [format!("{tick}-2"), format!("{tick}-3")]);
        // Handled in the same wake as tick 2, before it: both run.
        s.apply(Control::Trigger, 2 * MIN);
        s.take_due(2 * MIN);
        let runs: Vec<String> = (s.plan(2 * MIN).into_iter())
            .filter_map(|a| match a {
                Action::Start(t) => Some(t.run),
                Action::Terminate(_) => None,
            })
            .collect();
        let tick = run_id_ms("s", 2 * MIN);
        assert_eq!(runs, [format!("{tick}-2"), tick]);
        assert_eq!(s.started, 5);
    }

    #[test]
    fn skip_drops_ticks_while_a_run_runs() {
        let mut s = state(OverlapPolicy::Skip);
        s.take_due(3 * MIN);
        assert_eq!(started(&s.plan(3 * MIN)), [MIN]);
        assert_eq!((s.skipped, s.queued.len()), (2, 0));
    }

    #[test]
    fn buffer_one_keeps_one_tick_and_buffer_all_keeps_them_all() {
        let mut one = state(OverlapPolicy::BufferOne);
        one.take_due(3 * MIN);
        assert_eq!(started(&one.plan(3 * MIN)), [MIN]);
        assert_eq!((one.skipped, one.queued.len()), (1, 1));
        let mut all = state(OverlapPolicy::BufferAll);
        all.take_due(3 * MIN);
        assert_eq!(started(&all.plan(3 * MIN)), [MIN]);
        assert_eq!(all.queued.len(), 2);
        all.observe(vec![(run_id_ms("s", MIN), RunOutcome::Ended)]);
        assert_eq!(started(&all.plan(4 * MIN)), [2 * MIN]);
    }

    #[test]
    fn allow_all_starts_every_tick_and_terminate_other_ends_the_previous() {
        let mut all = state(OverlapPolicy::AllowAll);
        all.take_due(3 * MIN);
        assert_eq!(started(&all.plan(3 * MIN)), [MIN, 2 * MIN, 3 * MIN]);
        let mut term = state(OverlapPolicy::TerminateOther);
        term.take_due(2 * MIN);
        let actions = term.plan(2 * MIN);
        assert_eq!(started(&actions), [MIN, 2 * MIN]);
        assert_eq!(actions[1], Action::Terminate(vec![run_id_ms("s", MIN)]));
    }

    #[test]
    fn the_wake_is_the_next_tick_plus_jitter_or_sooner_to_look_at_a_run() {
        let mut s = state(OverlapPolicy::BufferAll);
        assert_eq!(s.next_wake_ms(0, 5), Some(MIN + 5));
        s.take_due(2 * MIN);
        s.plan(2 * MIN);
        // A tick waits for the running run: read its status every 10 s.
        assert_eq!(s.next_wake_ms(2 * MIN, 0), Some(2 * MIN + 10_000));
        s.apply(Control::Pause { note: "n".into() }, 2 * MIN);
        s.queued.clear();
        assert_eq!(
            s.next_wake_ms(2 * MIN, 0),
            None,
            "paused: only a request wakes it"
        );
    }

    #[test]
    fn ticks_older_than_the_catchup_window_are_counted_not_run() {
        let mut s = state(OverlapPolicy::AllowAll);
        s.schedule.policies.catchup_window_ms = 2 * MIN;
        s.take_due(10 * MIN);
        assert_eq!(started(&s.plan(10 * MIN)), [8 * MIN, 9 * MIN, 10 * MIN]);
        assert_eq!(s.missed, 7);
    }

    #[test]
    fn a_failed_run_pauses_when_the_policy_says_so() {
        let mut s = state(OverlapPolicy::Skip);
        s.schedule.policies.pause_on_failure = true;
        s.take_due(MIN);
        s.plan(MIN);
        s.observe(vec![(
            run_id_ms("s", MIN),
            RunOutcome::Failed("boom".into()),
        )]);
        assert!(s.paused.as_deref().unwrap().contains("boom"));
        s.take_due(5 * MIN);
        assert!(s.plan(5 * MIN).is_empty());
        let pause = Control::Pause {
            note: String::new(),
        };
        assert!(!s.apply(pause, 0), "only a delete ends the schedule");
        assert!(s.clone().apply(Control::Delete, 0));
        s.apply(Control::Unpause, 5 * MIN);
        assert_eq!(s.last_tick_ms, 5 * MIN, "ticks while paused are not run");
    }

    #[test]
    fn an_update_handled_at_a_tick_runs_the_tick_under_the_old_spec() {
        // The tick's timer and the update land in one turn; the update wins the select.
        let mut s = state(OverlapPolicy::Skip);
        let every_two = ScheduleSpec::every(Duration::from_secs(120)).unwrap();
        let action = ScheduleAction::by_name("job", 2, serde_json::Value::Null);
        s.apply(Control::Update(Schedule::new(every_two, action)), 3 * MIN);
        s.take_due(3 * MIN);
        assert_eq!(
            started(&s.plan(3 * MIN)),
            [MIN],
            "tick 1 was due before the update"
        );
        assert_eq!(s.skipped, 2);
        assert_eq!(
            s.next_wake_ms(3 * MIN, 0),
            Some(4 * MIN),
            "then the new spec"
        );
    }

    #[test]
    fn a_start_taken_back_is_neither_running_nor_recent_and_counts_as_skipped() {
        let mut s = state(OverlapPolicy::AllowAll);
        s.take_due(2 * MIN);
        s.plan(2 * MIN);
        s.unstart(&run_id_ms("s", MIN));
        assert_eq!(s.running, [run_id_ms("s", 2 * MIN)]);
        assert_eq!(s.recent.len(), 1);
        assert_eq!((s.started, s.skipped), (1, 1));
    }

    /// The state's size as its orchestration's input (a payload: 2 MiB at most by default).
    fn size(s: &ScheduleState) -> usize {
        serde_json::to_vec(s).unwrap().len()
    }

    #[test]
    fn a_large_backfill_is_queued_a_wake_at_a_time() {
        let mut s = state(OverlapPolicy::BufferAll);
        let backfill = Control::Backfill {
            start_ms: MIN,
            end_ms: 5_001 * MIN,
            overlap: OverlapPolicy::BufferAll,
        };
        s.apply(backfill, 0);
        s.take_due(0);
        assert_eq!(started(&s.plan(0)), [MIN]);
        assert_eq!(s.queued.len(), TICKS_PER_WAKE - 1);
        assert!(size(&s) < 256 << 10, "{} bytes", size(&s));
        // Each run ends; the queue refills from the range, in order, to the end.
        let mut ran = vec![MIN];
        for wake in 1..=5_000 {
            let run = s.running.clone();
            s.observe(run.into_iter().map(|r| (r, RunOutcome::Ended)).collect());
            s.take_due(0);
            ran.extend(started(&s.plan(0)));
            if s.queued.is_empty() && !s.more_due {
                assert_eq!(wake, 4_999, "one wake per run after the first");
                break;
            }
        }
        assert_eq!(ran, (1..=5_000).map(|n| n * MIN).collect::<Vec<_>>());
    }

    #[test]
    fn buffer_all_keeps_at_most_a_wake_s_ticks_waiting() {
        let mut s = state(OverlapPolicy::BufferAll);
        for _ in 0..5 {
            s.take_due(5_000 * MIN);
            s.plan(5_000 * MIN);
        }
        assert_eq!(s.last_tick_ms, 5_000 * MIN);
        assert_eq!(s.queued.len(), TICKS_PER_WAKE);
        assert_eq!(s.skipped, 5_000 - 1 - TICKS_PER_WAKE as u64);
    }

    #[test]
    fn a_backfill_queues_the_range_and_runs_while_paused() {
        let mut s = state(OverlapPolicy::Skip);
        s.apply(Control::Pause { note: "x".into() }, 0);
        s.apply(
            Control::Backfill {
                start_ms: MIN,
                end_ms: 4 * MIN,
                overlap: OverlapPolicy::AllowAll,
            },
            10 * MIN,
        );
        assert_eq!(started(&s.plan(10 * MIN)), [MIN, 2 * MIN, 3 * MIN]);
    }
}
