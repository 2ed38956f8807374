//! The pure steps on a schedule's state: overlap policies, catch-up, triggers, backfills.

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

fn runs(actions: Vec<Action>) -> Vec<String> {
    (actions.into_iter())
        .filter_map(|a| match a {
            Action::Start(t) => Some(t.run),
            Action::Terminate(_) => None,
        })
        .collect()
}

/// A trigger at the instant of a tick that has no run (the overlap policy skipped it,
/// or the schedule was paused) still leaves the tick its id: a backfill over that
/// instant later runs the tick (it used to find the trigger's run under the tick's id
/// and start nothing).
#[test]
fn a_trigger_at_a_tick_without_a_run_leaves_the_tick_its_id_for_a_backfill() {
    let backfill = |at: u64| Control::Backfill {
        start_ms: at,
        end_ms: at + 1,
        overlap: OverlapPolicy::AllowAll,
    };
    // Skipped: tick 1 runs, tick 2 is skipped beside it, a trigger at tick 2's instant
    // runs once tick 1 is done.
    let mut s = state(OverlapPolicy::Skip);
    s.take_due(MIN);
    assert_eq!(started(&s.plan(MIN)), [MIN]);
    s.take_due(2 * MIN);
    assert!(started(&s.plan(2 * MIN)).is_empty());
    s.observe(vec![(run_id_ms("s", MIN), RunOutcome::Ended)]);
    s.apply(Control::Trigger, 2 * MIN);
    let trigger = runs(s.plan(2 * MIN));
    s.observe(vec![(trigger[0].clone(), RunOutcome::Ended)]);
    s.apply(backfill(2 * MIN), 3 * MIN - 1);
    let tick = runs(s.plan(3 * MIN - 1));
    assert_eq!(tick, [run_id_ms("s", 2 * MIN)]);
    assert_ne!(trigger, tick);
    // Paused: a trigger at tick 1's instant, then a backfill over it once unpaused.
    let mut s = state(OverlapPolicy::AllowAll);
    s.apply(Control::Pause { note: "x".into() }, 0);
    s.apply(Control::Trigger, MIN);
    let trigger = runs(s.plan(MIN));
    s.apply(Control::Unpause, MIN);
    s.apply(backfill(MIN), MIN);
    let tick = runs(s.plan(MIN));
    assert_eq!(tick, [run_id_ms("s", MIN)]);
    assert_ne!(trigger, tick);
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
