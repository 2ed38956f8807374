//! `ctx.patched` inserted before each kind of await, with instances at every position
//! relative to it.
//!
//! Each v1 orchestrator calls `reserve`, awaits something (an activity, a timer, an
//! event, a sub-orchestration, a join, a select, a timeout, or nothing: the end), then
//! `ship`s. Its v2 inserts `if ctx.patched("fraud-check") { fraud_check }` after
//! `reserve`. v1 runs turn by turn; after each turn its history is handed to v2, as a
//! deploy would: v2 must never stall, and it takes the new path exactly when v1 had not
//! yet got past `reserve` (the patch point), recording the marker only then.

use std::collections::VecDeque;
use std::time::Duration;

use durable_core::record::Event;
use durable_core::replay_test::{Command, Execution, Outcome};
use durable_core::{
    ActivityContext, Either, OrchestrationContext, Orchestrator, activity, orchestrator,
};

use crate::builders::*;

#[activity]
async fn reserve(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[activity]
async fn fraud_check(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[activity]
async fn pay(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[activity]
async fn ship(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

/// The child of the sub-orchestration variants.
#[orchestrator]
async fn payment(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(pay, n).await?)
}

fn path(steps: &[&str]) -> Vec<String> {
    steps.iter().map(|s| s.to_string()).collect()
}

// One pair per kind of await: v1, and v2 with the patch inserted before the await.

#[orchestrator(name = "activity")]
async fn activity_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    ctx.call(pay, n).await?;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "pay", "ship"]))
}

#[orchestrator(name = "activity")]
async fn activity_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    ctx.call(pay, n).await?;
    ctx.call(ship, n).await?;
    steps.extend(["pay", "ship"]);
    Ok(path(&steps))
}

#[orchestrator(name = "timer")]
async fn timer_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    ctx.sleep(Duration::from_secs(60)).await;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "sleep", "ship"]))
}

#[orchestrator(name = "timer")]
async fn timer_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    ctx.sleep(Duration::from_secs(60)).await;
    ctx.call(ship, n).await?;
    steps.extend(["sleep", "ship"]);
    Ok(path(&steps))
}

/// The scenario: reserve, wait for `paid`, ship.
#[orchestrator(name = "event")]
async fn event_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    let _: u64 = ctx.wait_event("paid").await;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "paid", "ship"]))
}

#[orchestrator(name = "event")]
async fn event_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    let _: u64 = ctx.wait_event("paid").await;
    ctx.call(ship, n).await?;
    steps.extend(["paid", "ship"]);
    Ok(path(&steps))
}

#[orchestrator(name = "sub")]
async fn sub_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    ctx.sub_orchestration(payment, n)
        .await
        .map_err(|e| e.to_string())?;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "payment", "ship"]))
}

#[orchestrator(name = "sub")]
async fn sub_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    ctx.sub_orchestration(payment, n)
        .await
        .map_err(|e| e.to_string())?;
    ctx.call(ship, n).await?;
    steps.extend(["payment", "ship"]);
    Ok(path(&steps))
}

/// A join of two event waits: nothing of it is a step in the history.
#[orchestrator(name = "join")]
async fn join_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    let paid = ctx.wait_event::<u64>("paid");
    let approved = ctx.wait_event::<u64>("approved");
    ctx.join2(paid, approved).await;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "paid+approved", "ship"]))
}

#[orchestrator(name = "join")]
async fn join_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    let paid = ctx.wait_event::<u64>("paid");
    let approved = ctx.wait_event::<u64>("approved");
    ctx.join2(paid, approved).await;
    ctx.call(ship, n).await?;
    steps.extend(["paid+approved", "ship"]);
    Ok(path(&steps))
}

/// A join of an activity and an event wait.
#[orchestrator(name = "join-activity")]
async fn join_activity_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    let paid = ctx.wait_event::<u64>("paid");
    let (_, charged) = ctx.join2(paid, ctx.call(pay, n)).await;
    charged?;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "paid+pay", "ship"]))
}

#[orchestrator(name = "join-activity")]
async fn join_activity_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    let paid = ctx.wait_event::<u64>("paid");
    let (_, charged) = ctx.join2(paid, ctx.call(pay, n)).await;
    charged?;
    ctx.call(ship, n).await?;
    steps.extend(["paid+pay", "ship"]);
    Ok(path(&steps))
}

/// A select of two event waits.
#[orchestrator(name = "select")]
async fn select_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    let paid = ctx.wait_event::<u64>("paid");
    let cancelled = ctx.wait_event::<u64>("cancelled");
    let won = match ctx.select2(paid, cancelled).await {
        Either::Left(_) => "paid",
        Either::Right(_) => "cancelled",
    };
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", won, "ship"]))
}

#[orchestrator(name = "select")]
async fn select_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    let paid = ctx.wait_event::<u64>("paid");
    let cancelled = ctx.wait_event::<u64>("cancelled");
    let won = match ctx.select2(paid, cancelled).await {
        Either::Left(_) => "paid",
        Either::Right(_) => "cancelled",
    };
    ctx.call(ship, n).await?;
    steps.extend([won, "ship"]);
    Ok(path(&steps))
}

/// A select of an event wait and a timer (`timeout`).
#[orchestrator(name = "timeout")]
async fn timeout_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    let paid = ctx.wait_event::<u64>("paid");
    let won = match ctx.timeout(Duration::from_secs(60), paid).await {
        Ok(_) => "paid",
        Err(_) => "timed out",
    };
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", won, "ship"]))
}

#[orchestrator(name = "timeout")]
async fn timeout_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    let paid = ctx.wait_event::<u64>("paid");
    let won = match ctx.timeout(Duration::from_secs(60), paid).await {
        Ok(_) => "paid",
        Err(_) => "timed out",
    };
    ctx.call(ship, n).await?;
    steps.extend([won, "ship"]);
    Ok(path(&steps))
}

/// The patch at the end: nothing is awaited after it.
#[orchestrator(name = "end")]
async fn end_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    Ok(path(&["reserve"]))
}

#[orchestrator(name = "end")]
async fn end_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    if ctx.patched("fraud-check") {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    Ok(path(&steps))
}

/// Plays the world around an instance: answers one outstanding command per turn, in the
/// order they were issued, and raises the next event when nothing is outstanding.
#[derive(Clone, Debug)]
struct World {
    outstanding: VecDeque<Event>,
    events: VecDeque<&'static str>,
}

impl World {
    fn new(name: &str, events: &[&'static str]) -> Self {
        Self {
            outstanding: VecDeque::from([started(name, &7u64)]),
            events: events.iter().copied().collect(),
        }
    }

    fn next(&mut self) -> Vec<Event> {
        if let Some(event) = self.outstanding.pop_front() {
            return vec![event];
        }
        let name = self
            .events
            .pop_front()
            .expect("the instance waits, and there is nothing left to give it");
        vec![Event::EventRaised {
            name: name.to_string(),
            payload: encode(&1u64),
        }]
    }

    fn answer(&mut self, commands: &[Command]) {
        for command in commands {
            self.outstanding.push_back(match command {
                Command::ScheduleActivity { seq, .. } => completed(*seq, &1u64),
                Command::CreateTimer { seq, .. } => Event::TimerFired { seq: *seq },
                Command::StartSubOrchestration { seq, .. } => Event::SubOrchestrationCompleted {
                    seq: *seq,
                    output: encode(&1u64),
                },
                other => panic!("a command this test does not answer: {other:?}"),
            });
        }
    }
}

/// Where an instance stands: its history so far and the world around it.
#[derive(Clone, Debug)]
struct Position {
    history: Vec<Event>,
    world: World,
}

fn finished(history: &[Event]) -> bool {
    history
        .iter()
        .any(|e| matches!(e, Event::Completed { .. } | Event::Failed { .. }))
}

/// Every position v1 goes through, from before its start to its end.
fn positions<O: Orchestrator>(v1: O, world: World) -> Vec<Position> {
    let mut execution = Execution::of(v1, "i");
    let mut at = Position {
        history: Vec::new(),
        world,
    };
    let mut positions = vec![at.clone()];
    while !finished(&at.history) {
        assert!(positions.len() < 30, "v1 does not finish");
        let turn = execution.turn(&[], at.world.next());
        assert!(
            matches!(turn.outcome, Outcome::Running | Outcome::Completed(_)),
            "v1: {:?}",
            turn.outcome
        );
        at.world.answer(&turn.commands);
        at.history.extend(turn.appended);
        positions.push(at.clone());
    }
    positions
}

/// Runs `v2` from `at` to its end. With `fresh_each_turn`, every turn replays the whole
/// history on a new execution (a restart before each turn); otherwise the history is
/// replayed once, with the next event, and the execution is kept.
fn finish<O: Orchestrator>(
    v2: O,
    mut at: Position,
    fresh_each_turn: bool,
) -> (Outcome, Vec<Event>) {
    let mut execution = Execution::of(v2, "i");
    let mut recorded = at.history.clone();
    if finished(&at.history) {
        let turn = execution.turn(&recorded, Vec::new());
        return (turn.outcome, at.history);
    }
    for _ in 0..30 {
        if fresh_each_turn {
            execution = Execution::of(v2, "i");
            recorded = at.history.clone();
        }
        let turn = execution.turn(&recorded, at.world.next());
        recorded.clear();
        at.world.answer(&turn.commands);
        at.history.extend(turn.appended);
        match turn.outcome {
            Outcome::Running => {}
            outcome => return (outcome, at.history),
        }
    }
    panic!("v2 does not finish");
}

fn has_marker(history: &[Event]) -> bool {
    history
        .iter()
        .any(|e| matches!(e, Event::Recorded { what, .. } if what == "patch:fraud-check"))
}

fn check<V1: Orchestrator, V2: Orchestrator>(
    v1: V1,
    v2: V2,
    events: &[&'static str],
    old: &[&str],
) {
    let old = path(old);
    let mut new = old.clone();
    new.insert(1, "fraud_check".to_string());
    let all = positions(v1, World::new(V1::NAME, events));
    assert_eq!(
        Execution::of(v1, "i")
            .turn(&all.last().unwrap().history, Vec::new())
            .outcome,
        Outcome::Completed(encode(&old)),
        "v1 replays its own history"
    );
    for (n, at) in all.iter().enumerate() {
        // The patch point is right after `reserve` (step 0) returns: an instance whose
        // history has that result went past it under v1.
        let past_the_patch = at
            .history
            .iter()
            .any(|e| matches!(e, Event::ActivityCompleted { seq: 0, .. }));
        let expected = if past_the_patch { &old } else { &new };
        for fresh_each_turn in [false, true] {
            let (outcome, history) = finish(v2, at.clone(), fresh_each_turn);
            let context = format!(
                "`{}` at position {n} ({} events{}), {}",
                V1::NAME,
                at.history.len(),
                if past_the_patch {
                    ", past the patch"
                } else {
                    ""
                },
                if fresh_each_turn {
                    "replayed before every turn"
                } else {
                    "replayed once"
                }
            );
            assert_eq!(outcome, Outcome::Completed(encode(expected)), "{context}");
            assert_eq!(has_marker(&history), !past_the_patch, "{context}");
            // What v2 wrote replays, on a fresh execution, to the same end.
            let replayed = Execution::of(v2, "i").turn(&history, Vec::new()).outcome;
            assert_eq!(replayed, outcome, "{context}: replaying v2's history");
        }
    }
}

#[test]
fn a_patch_before_an_activity() {
    check(activity_v1, activity_v2, &[], &["reserve", "pay", "ship"]);
}

#[test]
fn a_patch_before_a_timer() {
    check(timer_v1, timer_v2, &[], &["reserve", "sleep", "ship"]);
}

#[test]
fn a_patch_before_an_event_wait() {
    check(event_v1, event_v2, &["paid"], &["reserve", "paid", "ship"]);
}

#[test]
fn a_patch_before_a_sub_orchestration() {
    check(sub_v1, sub_v2, &[], &["reserve", "payment", "ship"]);
}

#[test]
fn a_patch_before_a_join_of_event_waits() {
    check(
        join_v1,
        join_v2,
        &["paid", "approved"],
        &["reserve", "paid+approved", "ship"],
    );
}

#[test]
fn a_patch_before_a_join_of_an_event_and_an_activity() {
    check(
        join_activity_v1,
        join_activity_v2,
        &["paid"],
        &["reserve", "paid+pay", "ship"],
    );
}

#[test]
fn a_patch_before_a_select_of_event_waits() {
    check(
        select_v1,
        select_v2,
        &["paid"],
        &["reserve", "paid", "ship"],
    );
}

#[test]
fn a_patch_before_a_select_of_an_event_and_a_timer() {
    check(
        timeout_v1,
        timeout_v2,
        &[],
        &["reserve", "timed out", "ship"],
    );
}

#[test]
fn a_patch_at_the_end() {
    check(end_v1, end_v2, &[], &["reserve"]);
}

/// The report: v1 waits for `paid`; v2 is deployed; `paid` is raised to a fresh
/// execution of v2 (the history replayed, then the event applied in the same turn).
#[test]
fn raising_the_awaited_event_after_a_patch_was_inserted_before_the_wait() {
    let mut v1 = Execution::of(event_v1, "i");
    let mut history = v1.turn(&[], vec![started("event", &7u64)]).appended;
    history.extend(v1.turn(&[], vec![completed(0, &1u64)]).appended);

    let mut v2 = Execution::of(event_v2, "i");
    let raised = Event::EventRaised {
        name: "paid".to_string(),
        payload: encode(&1u64),
    };
    let turn = v2.turn(&history, vec![raised]);
    assert_eq!(turn.outcome, Outcome::Running, "{:?}", turn.outcome);
    assert!(!has_marker(&turn.appended), "no marker for an old instance");
    assert_eq!(scheduled_names(&turn.appended), ["ship"]);
    let done = v2.turn(&[], vec![completed(1, &1u64)]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&path(&["reserve", "paid", "ship"])))
    );
}

// A patch inside a loop, and two patches reached in one turn: each instance takes one
// path for the whole execution (the first answer of a change id holds), never stalls,
// and replays what it wrote.

#[orchestrator(name = "looped")]
async fn loop_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    for _ in 0..3 {
        ctx.call(reserve, n).await?;
        steps.push("reserve");
        ctx.wait_event::<u64>("next").await;
    }
    Ok(path(&steps))
}

#[orchestrator(name = "looped")]
async fn loop_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    for _ in 0..3 {
        ctx.call(reserve, n).await?;
        steps.push("reserve");
        if ctx.patched("fraud-check") {
            ctx.call(fraud_check, n).await?;
            steps.push("fraud_check");
        }
        ctx.wait_event::<u64>("next").await;
    }
    Ok(path(&steps))
}

#[orchestrator(name = "two")]
async fn two_v1(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    ctx.call(reserve, n).await?;
    ctx.wait_event::<u64>("paid").await;
    ctx.call(ship, n).await?;
    Ok(path(&["reserve", "ship"]))
}

#[orchestrator(name = "two")]
async fn two_v2(ctx: OrchestrationContext, n: u64) -> Result<Vec<String>, String> {
    let mut steps = vec!["reserve"];
    ctx.call(reserve, n).await?;
    // Two changes reached in one turn, with no await between them.
    let fraud = ctx.patched("fraud-check");
    let pay_first = ctx.patched("pay-first");
    if fraud {
        ctx.call(fraud_check, n).await?;
        steps.push("fraud_check");
    }
    if pay_first {
        ctx.call(pay, n).await?;
        steps.push("pay");
    }
    ctx.wait_event::<u64>("paid").await;
    ctx.call(ship, n).await?;
    steps.push("ship");
    Ok(path(&steps))
}

/// Runs `v2` from every position of `v1` and checks that it finishes with the old path's
/// output (`old`) where v1 went past `reserve` (step 0), writing no marker, and with the
/// new path's output (`new`) elsewhere, writing markers; and that what it wrote replays.
fn every_position<V1: Orchestrator, V2: Orchestrator>(
    v1: V1,
    v2: V2,
    events: &[&'static str],
    old: &[&str],
    new: &[&str],
) {
    for at in positions(v1, World::new(V1::NAME, events)) {
        let past = at
            .history
            .iter()
            .any(|e| matches!(e, Event::ActivityCompleted { seq: 0, .. }));
        for fresh_each_turn in [false, true] {
            let context = format!(
                "from {} events (past the patch point: {past}), replayed {}",
                at.history.len(),
                if fresh_each_turn {
                    "before every turn"
                } else {
                    "once"
                }
            );
            let (outcome, history) = finish(v2, at.clone(), fresh_each_turn);
            let expected = if past { path(old) } else { path(new) };
            assert_eq!(outcome, Outcome::Completed(encode(&expected)), "{context}");
            let markers = history
                .iter()
                .filter(|e| matches!(e, Event::Recorded { what, .. } if what.starts_with("patch:")))
                .count();
            assert_eq!(markers > 0, !past, "{context}: markers");
            let replayed = Execution::of(v2, "i").turn(&history, Vec::new()).outcome;
            assert_eq!(replayed, outcome, "{context}: replaying v2's history");
        }
    }
}

#[test]
fn a_patch_inside_a_loop_answers_alike_in_every_iteration() {
    every_position(
        loop_v1,
        loop_v2,
        &["next", "next", "next"],
        &["reserve", "reserve", "reserve"],
        &[
            "reserve",
            "fraud_check",
            "reserve",
            "fraud_check",
            "reserve",
            "fraud_check",
        ],
    );
}

#[test]
fn two_patches_reached_in_one_turn() {
    every_position(
        two_v1,
        two_v2,
        &["paid"],
        &["reserve", "ship"],
        &["reserve", "fraud_check", "pay", "ship"],
    );
}
