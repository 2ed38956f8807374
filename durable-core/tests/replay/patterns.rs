//! Timers, external events, races, recorded values, sub-orchestrations and
//! continue-as-new through the pure step.

use std::time::Duration;

use durable_core::record::{Event, Site};
use durable_core::replay_test::{CarriedEvent, Command, Execution, Outcome};
use durable_core::{Either, OrchestrationContext, orchestrator};

use crate::builders::*;

fn timer_fired(seq: u64) -> Event {
    Event::TimerFired { seq }
}

fn raised<T: serde::Serialize>(name: &str, payload: &T) -> Event {
    Event::EventRaised {
        name: name.to_string(),
        payload: encode(payload),
    }
}

/// Waits for approval for at most a minute.
#[orchestrator]
async fn approval(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let wait = ctx.wait_event::<String>("approval");
    match ctx.timeout(Duration::from_secs(60), wait).await {
        Ok(by) => Ok(format!("approved by {by}")),
        Err(e) => Ok(format!("escalated: {e}")),
    }
}

#[test]
fn a_timer_is_a_command_with_its_time_and_fires_by_event() {
    let mut execution = Execution::of(approval, "i");
    let turn = execution.turn(&[], vec![started("approval", &())]);
    let timer = turn.commands.iter().find_map(|c| match c {
        Command::CreateTimer { seq, fire_at_ms } => Some((*seq, *fire_at_ms)),
        _ => None,
    });
    let (seq, fire_at_ms) = timer.expect("a timer command");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        fire_at_ms >= now_ms + 59_000 && fire_at_ms <= now_ms + 61_000,
        "{fire_at_ms} vs {now_ms}"
    );
    let done = execution.turn(&[], vec![timer_fired(seq)]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&"escalated: timed out after 60s".to_string()))
    );
}

#[test]
fn the_event_wins_when_it_arrives_before_the_timer() {
    let mut execution = Execution::of(approval, "i");
    execution.turn(&[], vec![started("approval", &())]);
    let done = execution.turn(&[], vec![raised("approval", &"ada"), timer_fired(0)]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&"approved by ada".to_string()))
    );
}

#[test]
fn the_race_replays_to_the_same_winner_when_both_are_in_history() {
    let escalated = Outcome::Completed(encode(&"escalated: timed out after 60s".to_string()));
    let mut live = Execution::of(approval, "i");
    let first = live.turn(&[], vec![started("approval", &())]).appended;
    assert_eq!(live.turn(&[], vec![timer_fired(0)]).outcome, escalated);

    // A replay that sees the timer and then the event in one history: the timer, which
    // the history received first, still wins; the other order lets the event win.
    let mut timer_first = first.clone();
    timer_first.extend([timer_fired(0), raised("approval", &"ada")]);
    assert_eq!(
        Execution::of(approval, "i")
            .turn(&timer_first, vec![])
            .outcome,
        escalated
    );

    let mut event_first = first;
    event_first.extend([raised("approval", &"ada"), timer_fired(0)]);
    assert_eq!(
        Execution::of(approval, "i")
            .turn(&event_first, vec![])
            .outcome,
        Outcome::Completed(encode(&"approved by ada".to_string()))
    );
}

/// Collects two approvals, then a third.
#[orchestrator]
async fn collects(ctx: OrchestrationContext, _: ()) -> Result<Vec<String>, String> {
    let first = ctx.wait_event::<String>("vote");
    let second = ctx.wait_event::<String>("vote");
    let (a, b) = ctx.join2(second, first).await;
    let c = ctx.wait_event::<String>("vote").await;
    Ok(vec![b, a, c])
}

#[test]
fn events_raised_before_the_wait_are_kept_in_order() {
    let mut execution = Execution::of(collects, "i");
    let turn = execution.turn(
        &[],
        vec![
            raised("vote", &"one"),
            raised("vote", &"two"),
            started("collects", &()),
            raised("vote", &"three"),
        ],
    );
    let votes: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
    assert_eq!(turn.outcome, Outcome::Completed(encode(&votes)));
}

#[test]
fn an_orchestrator_waiting_for_an_event_is_not_reported_as_stuck() {
    let mut execution = Execution::of(collects, "i");
    let turn = execution.turn(&[], vec![started("collects", &())]);
    assert_eq!(turn.outcome, Outcome::Running);
}

/// Reads the clock, a random number and a uuid.
#[orchestrator]
async fn values(ctx: OrchestrationContext, _: ()) -> Result<(u64, u64, String, u32), String> {
    let now = ctx
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let random = ctx.random();
    let id = ctx.new_uuid().to_string();
    let effect = ctx.side_effect(|| 41 + 1);
    ctx.call(double, 1).await?;
    Ok((now, random, id, effect))
}

#[test]
fn recorded_values_replay_identically() {
    let mut live = Execution::of(values, "i");
    let mut history = live.turn(&[], vec![started("values", &())]).appended;
    let done = live.turn(&[], vec![completed(4, &2u64)]);
    history.extend(done.appended.clone());

    std::thread::sleep(Duration::from_millis(5));
    let mut replayed = Execution::of(values, "i");
    let again = replayed.turn(&history[..history.len() - 1], vec![]);
    assert_eq!(again.outcome, done.outcome);
    let recorded = history
        .iter()
        .filter(|e| matches!(e, Event::Recorded { .. }))
        .count();
    assert_eq!(
        recorded, 4,
        "now, random, uuid and side_effect are each one step"
    );
}

/// Counts to three by continuing as new.
#[orchestrator]
async fn counter(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    ctx.set_custom_status(&format!("at {n}"));
    if n < 3 {
        return ctx.continue_as_new(n + 1).await;
    }
    Ok(n)
}

#[test]
fn continue_as_new_ends_the_turn_with_the_next_input() {
    let mut execution = Execution::of(counter, "i");
    let turn = execution.turn(&[], vec![started("counter", &1u32)]);
    assert_eq!(
        turn.outcome,
        Outcome::ContinuedAsNew {
            input: encode(&2u32),
            latest_version: false,
            events: vec![],
        }
    );
    assert_eq!(turn.custom_status, Some(encode(&"at 1".to_string())));
}

/// Takes one `add` per generation, continuing as new with the running total.
#[orchestrator]
async fn adder(ctx: OrchestrationContext, total: u64) -> Result<u64, String> {
    let n = ctx.wait_event::<u64>("add").await;
    ctx.continue_as_new(total + n).await
}

#[test]
fn events_a_generation_did_not_take_are_carried_to_the_next() {
    let mut execution = Execution::of(adder, "i");
    let turn = execution.turn(
        &[],
        vec![
            started("adder", &0u64),
            raised("add", &1u64),
            raised("other", &"x"),
            raised("add", &2u64),
        ],
    );
    assert_eq!(
        turn.outcome,
        Outcome::ContinuedAsNew {
            input: encode(&1u64),
            latest_version: false,
            events: vec![
                CarriedEvent {
                    name: "other".to_string(),
                    payload: encode(&"x"),
                },
                CarriedEvent {
                    name: "add".to_string(),
                    payload: encode(&2u64),
                },
            ],
        }
    );
}

/// Runs `chain` as a child and doubles its output.
#[orchestrator]
async fn parent(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let child = ctx.sub_orchestration(chain, n);
    // `Execution::of` runs incarnation 0, generation 0 of the id.
    assert_eq!(child.instance_id(), "~p~0.0.0");
    let out = child.await?;
    let named = ctx.sub_orchestration_with_id(chain, "named-child", n);
    Ok(out + named.await?)
}

#[test]
fn a_sub_orchestration_is_a_command_and_its_result_an_event() {
    let mut execution = Execution::of(parent, "p");
    let turn = execution.turn(&[], vec![started("parent", &1u64)]);
    assert!(matches!(
        &turn.commands[..],
        [Command::StartSubOrchestration { seq: 0, orchestrator, instance, .. }]
            if orchestrator == "chain" && instance == "~p~0.0.0"
    ));
    let turn = execution.turn(
        &[],
        vec![Event::SubOrchestrationCompleted {
            seq: 0,
            output: encode(&6u64),
        }],
    );
    assert!(matches!(
        &turn.commands[..],
        [Command::StartSubOrchestration { seq: 1, instance, .. }] if instance == "named-child"
    ));
    let done = execution.turn(
        &[],
        vec![Event::SubOrchestrationCompleted {
            seq: 1,
            output: encode(&6u64),
        }],
    );
    assert_eq!(done.outcome, Outcome::Completed(encode(&12u64)));
}

/// Reports the id of the child it ran.
#[orchestrator]
async fn names_child(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    let child = ctx.sub_orchestration(chain, n);
    let id = child.instance_id().to_string();
    Ok(format!("{id}: {}", child.await?))
}

/// The runtime generated the child's id from the instance's incarnation; a replay (as a
/// replay test runs it, under no incarnation) serves the id the history recorded, so the
/// output it compares is the one the instance had.
#[test]
fn a_replayed_sub_orchestration_keeps_the_id_it_was_started_under() {
    let recorded = "~p~5eed.0.0".to_string();
    let history = vec![
        started("names_child", &1u64),
        Event::SubOrchestrationScheduled {
            seq: 0,
            orchestrator: "chain".into(),
            instance: recorded.clone(),
            input: encode(&1u64),
            site: Site {
                function: "names_child".into(),
                file: file!().into(),
                line: line!(),
                line_offset: 2,
            },
        },
        Event::SubOrchestrationCompleted {
            seq: 0,
            output: encode(&6u64),
        },
    ];
    let mut execution = Execution::of(names_child, "p");
    let turn = execution.turn(&history, Vec::new());
    assert_eq!(
        turn.outcome,
        Outcome::Completed(encode(&format!("{recorded}: 6")))
    );
}

/// Races two activities.
#[orchestrator]
async fn race(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    let calls = vec![ctx.call(double, n), ctx.call(triple, n)];
    let (index, output) = ctx.when_any(calls).await;
    let second = ctx
        .select2(ctx.call(double, 1), ctx.sleep(Duration::from_secs(5)))
        .await;
    let second = match second {
        Either::Left(v) => format!("call {}", v?),
        Either::Right(()) => "timer".to_string(),
    };
    Ok(format!("{index}: {} then {second}", output?))
}

#[test]
fn when_any_picks_the_result_the_history_received_first() {
    let mut execution = Execution::of(race, "i");
    execution.turn(&[], vec![started("race", &5u64)]);
    // Both results arrive in one turn: the triple (step 1) came first.
    let turn = execution.turn(&[], vec![completed(1, &15u64), completed(0, &10u64)]);
    assert_eq!(turn.outcome, Outcome::Running);
    let done = execution.turn(&[], vec![timer_fired(3)]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&"1: 15 then timer".to_string()))
    );
}
