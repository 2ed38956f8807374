//! Event waits against replay, turn by turn: at every turn of a cached run, a fresh
//! execution given the history so far and the same new events must produce the same
//! turn (the same `EventAwaited`, commands and outcome), an execution given that history
//! without its `EventAwaited` (saved before they existed) the same commands and outcome,
//! and one that only catches up must append nothing. Joins, races of a wait with a timer
//! in a loop, waits dropped by a timeout, several waits of one name or of several names,
//! events set aside or raised before the wait, continue-as-new.

use std::time::Duration;

use durable_core::record::Event;
use durable_core::replay_test::{self, CarriedEvent, Command, Execution, Outcome, SavedHistory};
use durable_core::{Either, OrchestrationContext, orchestrator};

use crate::builders::*;

fn raised<T: serde::Serialize>(name: &str, payload: &T) -> Event {
    Event::EventRaised {
        name: name.to_string(),
        payload: encode(payload),
    }
}

fn fired(seq: u64) -> Event {
    Event::TimerFired { seq }
}

/// The (name, index) of each `EventAwaited` in `events`.
fn awaited(events: &[Event]) -> Vec<(String, u32)> {
    (events.iter())
        .filter_map(|e| match e {
            Event::EventAwaited { name, index, .. } => Some((name.clone(), *index)),
            _ => None,
        })
        .collect()
}

/// Timers' times come from the wall clock: left out of comparisons.
fn timeless_events(events: &[Event]) -> Vec<Event> {
    (events.iter())
        .map(|e| match e {
            Event::TimerCreated { seq, site, .. } => Event::TimerCreated {
                seq: *seq,
                fire_at_ms: 0,
                site: site.clone(),
            },
            other => other.clone(),
        })
        .collect()
}

fn timeless_commands(commands: &[Command]) -> Vec<Command> {
    (commands.iter())
        .map(|c| match c {
            Command::CreateTimer { seq, .. } => Command::CreateTimer {
                seq: *seq,
                fire_at_ms: 0,
            },
            other => other.clone(),
        })
        .collect()
}

/// Runs `turns` (each the events one turn brings, behind its `TurnStarted`) on one cached
/// execution of `new_execution`'s orchestrator, checking each against replays (see the
/// module); returns the history and the last outcome.
fn run_checked(
    new_execution: impl Fn() -> Execution,
    turns: Vec<Vec<Event>>,
) -> (Vec<Event>, Outcome) {
    let mut cached = new_execution();
    let mut history: Vec<Event> = Vec::new();
    let mut outcome = Outcome::Running;
    for (n, brought) in turns.into_iter().enumerate() {
        let mut new = vec![Event::TurnStarted {
            at_ms: 1000 * n as u64,
        }];
        new.extend(brought);
        let live = cached.turn(&[], new.clone());

        let replayed = new_execution().turn(&history, new.clone());
        assert_eq!(
            timeless_events(&replayed.appended),
            timeless_events(&live.appended),
            "turn {n}: replayed from the history, appended"
        );
        assert_eq!(
            timeless_commands(&replayed.commands),
            timeless_commands(&live.commands),
            "turn {n}: replayed from the history, commands"
        );
        assert_eq!(replayed.outcome, live.outcome, "turn {n}: outcome");

        let old = without_awaits(&history);
        let upgraded = new_execution().turn(&old, new);
        assert_eq!(
            without_awaits(&timeless_events(&upgraded.appended)),
            without_awaits(&timeless_events(&live.appended)),
            "turn {n}: replayed from the history without its waits, appended"
        );
        assert_eq!(
            timeless_commands(&upgraded.commands),
            timeless_commands(&live.commands),
            "turn {n}: replayed from the history without its waits, commands"
        );
        assert_eq!(upgraded.outcome, live.outcome, "turn {n}: outcome (old)");

        history.extend(live.appended);
        outcome = live.outcome;
        if outcome != Outcome::Running {
            break;
        }
        let caught_up = new_execution().turn(&history, Vec::new());
        assert_eq!(caught_up.outcome, Outcome::Running, "turn {n}: caught up");
        assert!(
            caught_up.appended.is_empty() && caught_up.commands.is_empty(),
            "turn {n}: a turn that only catches up appends {:?}",
            caught_up.appended
        );
    }
    (history, outcome)
}

fn saved(orchestrator: &str, events: &[Event]) -> SavedHistory {
    SavedHistory {
        instance: "i".into(),
        orchestrator: orchestrator.into(),
        version: 1,
        events: events.to_vec(),
    }
}

/// Sums `go` events until 10, each awaited with a minute's timeout, in a loop; counts
/// the timeouts in the tens.
#[orchestrator]
async fn select_loop(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let mut total = 0;
    loop {
        let wait = ctx.wait_event::<u64>("go");
        match ctx.select2(wait, ctx.sleep(Duration::from_secs(60))).await {
            Either::Left(n) => total += n,
            Either::Right(()) => total += 100,
        }
        if total % 100 >= 10 {
            return Ok(total);
        }
    }
}

#[test]
fn a_wait_raced_with_a_timer_in_a_loop_is_recorded_once_per_event_and_replays() {
    let (history, outcome) = run_checked(
        || Execution::of(select_loop, "i"),
        vec![
            vec![started("select_loop", &())],
            vec![fired(0)],
            vec![fired(1)],
            vec![raised("go", &3u64)],
            vec![fired(3), raised("go", &4u64)],
            vec![raised("go", &5u64), fired(5)],
        ],
    );
    assert_eq!(outcome, Outcome::Completed(encode(&312u64)));
    // One per event the loop waited for, not one per turn.
    assert_eq!(
        awaited(&history),
        [("go".into(), 0), ("go".into(), 1), ("go".into(), 2)]
    );
    replay_test::replay(select_loop, &saved("select_loop", &history)).unwrap();
    replay_test::replay(
        select_loop,
        &saved("select_loop", &without_awaits(&history)),
    )
    .unwrap();
}

/// Waits for `a` and `b` together, then for another `a`.
#[orchestrator]
async fn two_names(ctx: OrchestrationContext, _: ()) -> Result<Vec<u64>, String> {
    let (b, a) = ctx
        .join2(ctx.wait_event::<u64>("b"), ctx.wait_event::<u64>("a"))
        .await;
    let again = ctx.wait_event::<u64>("a").await;
    Ok(vec![a, b, again])
}

#[test]
fn joined_waits_of_several_names_replay_whichever_event_comes_first() {
    let orders: [Vec<Vec<Event>>; 3] = [
        vec![
            vec![started("two_names", &())],
            vec![raised("a", &1u64)],
            vec![raised("b", &2u64)],
            vec![raised("a", &3u64)],
        ],
        vec![
            vec![started("two_names", &())],
            vec![raised("b", &2u64), raised("a", &1u64)],
            vec![raised("other", &0u64)],
            vec![raised("a", &3u64)],
        ],
        vec![
            vec![raised("a", &1u64), started("two_names", &())],
            vec![raised("b", &2u64)],
            vec![raised("a", &3u64)],
        ],
    ];
    let expected = [
        vec![("a".into(), 0), ("b".into(), 0), ("a".into(), 1)],
        vec![("a".into(), 0), ("b".into(), 0), ("a".into(), 1)],
        vec![("b".into(), 0), ("a".into(), 1)],
    ];
    for (turns, expected) in orders.into_iter().zip(expected) {
        let (history, outcome) = run_checked(|| Execution::of(two_names, "i"), turns);
        assert_eq!(outcome, Outcome::Completed(encode(&vec![1u64, 2, 3])));
        assert_eq!(awaited(&history), expected);
        replay_test::replay(two_names, &saved("two_names", &history)).unwrap();
    }
}

/// Two waits of `x`; the first is raced with a timer and may lose, the second is then
/// awaited; the result says which took what.
#[orchestrator]
async fn first_dropped(ctx: OrchestrationContext, _: ()) -> Result<(u64, u64), String> {
    let first = ctx.wait_event::<u64>("x");
    let second = ctx.wait_event::<u64>("x");
    let a: u64 = (ctx.timeout(Duration::from_secs(60), first).await).unwrap_or_default();
    let b = second.await;
    Ok((a, b))
}

#[test]
fn a_wait_dropped_by_its_timeout_leaves_its_event_to_the_next_and_replays() {
    let (history, outcome) = run_checked(
        || Execution::of(first_dropped, "i"),
        vec![
            vec![started("first_dropped", &())],
            vec![fired(0)],
            vec![raised("x", &7u64)],
        ],
    );
    // The second wait took event 0, the one the first was recorded waiting for.
    assert_eq!(outcome, Outcome::Completed(encode(&(0u64, 7u64))));
    assert_eq!(awaited(&history), [("x".into(), 0), ("x".into(), 1)]);
    replay_test::replay(first_dropped, &saved("first_dropped", &history)).unwrap();

    let (history, outcome) = run_checked(
        || Execution::of(first_dropped, "i"),
        vec![
            vec![started("first_dropped", &())],
            vec![raised("x", &7u64)],
            vec![fired(0), raised("x", &8u64)],
        ],
    );
    assert_eq!(outcome, Outcome::Completed(encode(&(7u64, 8u64))));
    assert_eq!(awaited(&history), [("x".into(), 0), ("x".into(), 1)]);
}

/// Waits for `approve` with a timeout; on a timeout waits for `approve` again, without.
#[orchestrator]
async fn wait_again(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let wait = ctx.wait_event::<String>("approve");
    match ctx.timeout(Duration::from_secs(60), wait).await {
        Ok(by) => Ok(by),
        Err(_) => {
            let late: String = ctx.wait_event("approve").await;
            let n: u64 = ctx.wait_event("count").await;
            Ok(format!("{late} late, {n}"))
        }
    }
}

#[test]
fn a_new_wait_after_a_timeout_replays_and_events_set_aside_move_the_index() {
    let (history, outcome) = run_checked(
        || Execution::of(wait_again, "i"),
        vec![
            vec![started("wait_again", &())],
            vec![fired(0)],
            // Not a string: set aside, the wait takes the next.
            vec![raised("approve", &1u64)],
            vec![raised("count", &"no"), raised("approve", &"ada")],
            vec![raised("count", &2u64)],
        ],
    );
    assert_eq!(
        outcome,
        Outcome::Completed(encode(&"ada late, 2".to_string()))
    );
    assert_eq!(
        awaited(&history),
        [
            ("approve".into(), 0),
            ("approve".into(), 1),
            ("count".into(), 1)
        ]
    );
    replay_test::replay(wait_again, &saved("wait_again", &history)).unwrap();
}

/// Takes two `add` events per generation, then continues as new with their sum.
#[orchestrator]
async fn pairs(ctx: OrchestrationContext, total: u64) -> Result<u64, String> {
    let a: u64 = ctx.wait_event("add").await;
    let b: u64 = ctx.wait_event("add").await;
    if total + a + b > 100 {
        return Ok(total + a + b);
    }
    ctx.continue_as_new(total + a + b).await
}

#[test]
fn after_continue_as_new_the_carried_events_count_in_the_index() {
    let (_, outcome) = run_checked(
        || Execution::of(pairs, "i"),
        vec![vec![
            started("pairs", &0u64),
            raised("add", &1u64),
            raised("add", &2u64),
            raised("add", &3u64),
        ]],
    );
    let Outcome::ContinuedAsNew { input, events, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        events,
        [CarriedEvent {
            name: "add".into(),
            payload: encode(&3u64)
        }]
    );
    // The next generation begins with the carried event, as the runtime sends it.
    let carried = events.into_iter().map(|e| Event::EventRaised {
        name: e.name,
        payload: e.payload,
    });
    let mut first = vec![Event::Started {
        orchestrator: "pairs".into(),
        input,
    }];
    first.extend(carried);
    let (history, outcome) = run_checked(
        || Execution::of(pairs, "i"),
        vec![first, vec![raised("add", &200u64)]],
    );
    assert_eq!(outcome, Outcome::Completed(encode(&206u64)));
    // The generation's second `add`: the carried one was its first.
    assert_eq!(awaited(&history), [("add".into(), 1)]);
}

#[test]
fn catching_up_with_a_history_saved_before_event_waits_appends_the_live_waits_once() {
    let (history, _) = run_checked(
        || Execution::of(two_names, "i"),
        vec![
            vec![started("two_names", &())],
            vec![raised("a", &1u64), raised("other", &0u64)],
        ],
    );
    let old = without_awaits(&history);
    // A turn that only catches up (its new events were all of an earlier run): the wait
    // still live is recorded, at the end of the history, where it was polled last.
    let caught_up = Execution::of(two_names, "i").turn(&old, Vec::new());
    assert_eq!(caught_up.outcome, Outcome::Running);
    assert!(caught_up.commands.is_empty());
    assert_eq!(awaited(&caught_up.appended), [("b".into(), 0)]);
    assert_eq!(caught_up.appended.len(), 1);
    let mut upgraded = old;
    upgraded.extend(caught_up.appended);
    let again = Execution::of(two_names, "i").turn(&upgraded, Vec::new());
    assert!(again.appended.is_empty(), "{:?}", again.appended);
    // It goes on as the history with its waits does.
    let next = vec![raised("b", &2u64), raised("a", &3u64)];
    let from_upgraded = Execution::of(two_names, "i").turn(&upgraded, next.clone());
    let from_history = Execution::of(two_names, "i").turn(&history, next);
    assert_eq!(from_upgraded, from_history);
    assert_eq!(
        from_history.outcome,
        Outcome::Completed(encode(&vec![1u64, 2, 3]))
    );
    replay_test::replay(two_names, &saved("two_names", &upgraded)).unwrap();
}
