//! The turn markers (`Event::TurnStarted`): the runtime puts one before the events each
//! turn brings, for tools to read the history's times. Replay skips them: a history with
//! them replays as one without, a history saved before they existed still replays, and a
//! turn whose events were all dropped appends nothing, marker included.

use durable_core::record::Event;
use durable_core::replay_test::{self, Execution, Outcome, SavedHistory};

use crate::builders::*;

/// `events`, as the runtime brings them to a turn at `at_ms`.
fn at(at_ms: u64, events: Vec<Event>) -> Vec<Event> {
    let mut marked = vec![Event::TurnStarted { at_ms }];
    marked.extend(events);
    marked
}

fn without_markers(events: &[Event]) -> Vec<Event> {
    (events.iter())
        .filter(|e| !matches!(e, Event::TurnStarted { .. }))
        .cloned()
        .collect()
}

fn saved(events: Vec<Event>) -> SavedHistory {
    SavedHistory {
        instance: "i".into(),
        orchestrator: "chain".into(),
        version: 1,
        events,
    }
}

/// The turns of `chain` for input 5, each behind a marker if `marked`: its history and
/// the outcome of its last turn.
fn run_chain(marked: bool) -> (Vec<Event>, Outcome) {
    let bring = |t, events| if marked { at(t, events) } else { events };
    let mut execution = Execution::of(chain, "i");
    let mut history = Vec::new();
    let mut outcome = Outcome::Running;
    for (t, events) in [
        (100, vec![started("chain", &5u64)]),
        (200, vec![completed(0, &10u64)]),
        (300, vec![completed(1, &30u64)]),
    ] {
        let turn = execution.turn(&[], bring(t, events));
        history.extend(turn.appended);
        outcome = turn.outcome;
    }
    (history, outcome)
}

#[test]
fn markers_change_nothing_the_code_sees() {
    let (plain, plain_outcome) = run_chain(false);
    let (marked, marked_outcome) = run_chain(true);
    assert_eq!(marked_outcome, plain_outcome);
    assert_eq!(marked_outcome, Outcome::Completed(encode(&30u64)));
    assert_eq!(without_markers(&marked), plain);
    // One marker per turn, first of what the turn appended.
    let markers: Vec<_> = (marked.iter().enumerate())
        .filter(|(_, e)| matches!(e, Event::TurnStarted { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(markers.len(), 3);
    assert_eq!(markers[0], 0);
}

#[test]
fn a_marked_history_replays_and_continues_like_a_cached_run() {
    let mut cached = Execution::of(chain, "i");
    let mut history = cached
        .turn(&[], at(100, vec![started("chain", &5u64)]))
        .appended;
    history.extend(
        cached
            .turn(&[], at(200, vec![completed(0, &10u64)]))
            .appended,
    );
    let from_cache = cached.turn(&[], at(300, vec![completed(1, &30u64)]));

    let mut replayed = Execution::of(chain, "i");
    let from_replay = replayed.turn(&history, at(300, vec![completed(1, &30u64)]));
    assert_eq!(from_replay, from_cache);
    assert_eq!(from_replay.outcome, Outcome::Completed(encode(&30u64)));

    history.extend(from_replay.appended);
    replay_test::replay(chain, &saved(history)).unwrap();
}

#[test]
fn a_history_saved_before_turn_markers_still_replays() {
    let (old, _) = run_chain(false);
    assert!(!old.iter().any(|e| matches!(e, Event::TurnStarted { .. })));
    replay_test::replay(chain, &saved(old.clone())).unwrap();

    // An instance that was running when the runtime was upgraded: its old turns have no
    // markers, its new ones do.
    let mut first = Execution::of(chain, "i");
    let mut history = first.turn(&[], vec![started("chain", &5u64)]).appended;
    history.extend(first.turn(&[], vec![completed(0, &10u64)]).appended);
    let mut upgraded = Execution::of(chain, "i");
    let turn = upgraded.turn(&history, at(300, vec![completed(1, &30u64)]));
    assert_eq!(turn.outcome, Outcome::Completed(encode(&30u64)));
    assert_eq!(turn.appended[0], Event::TurnStarted { at_ms: 300 });
    history.extend(turn.appended);
    replay_test::replay(chain, &saved(history)).unwrap();
}

#[test]
fn a_turn_whose_events_were_all_dropped_appends_no_marker() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], at(100, vec![started("chain", &5u64)]));
    // A result for a step never scheduled: dropped, and the code issues nothing.
    let turn = execution.turn(&[], at(200, vec![completed(7, &1u64)]));
    assert!(turn.appended.is_empty(), "{:?}", turn.appended);
    assert_eq!(turn.outcome, Outcome::Running);
}
