//! The event waits (`Event::EventAwaited`): a turn that ends with a live wait whose event
//! has not arrived appends one, once per (name, index). Replay skips them: a history with
//! them replays and its waits still get their events, one saved before they existed still
//! replays, and a replayed turn appends what the cached run appended.

use durable_core::record::Event;
use durable_core::replay_test::{self, Execution, Outcome, SavedHistory};
use durable_core::{OrchestrationContext, orchestrator};

use crate::builders::*;

fn raised<T: serde::Serialize>(name: &str, payload: &T) -> Event {
    Event::EventRaised {
        name: name.to_string(),
        payload: encode(payload),
    }
}

fn saved(events: Vec<Event>) -> SavedHistory {
    SavedHistory {
        instance: "i".into(),
        orchestrator: "two_approvals".into(),
        version: 1,
        events,
    }
}

/// The (name, index, line) of each `EventAwaited` in `events`.
fn awaited(events: &[Event]) -> Vec<(String, u32, u32)> {
    (events.iter())
        .filter_map(|e| match e {
            Event::EventAwaited { name, index, site } => Some((name.clone(), *index, site.line)),
            _ => None,
        })
        .collect()
}

const FIRST_WAIT_LINE: u32 = line!() + 5;

/// Waits for two `approve` events, one after the other; sums them.
#[orchestrator]
async fn two_approvals(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let first: u64 = ctx.wait_event("approve").await;
    let second: u64 = ctx.wait_event("approve").await;
    Ok(first + second)
}

#[test]
fn a_turn_ending_with_a_live_wait_appends_one_event_awaited_once() {
    let mut execution = Execution::of(two_approvals, "i");
    let turn = execution.turn(&[], vec![started("two_approvals", &())]);
    assert_eq!(turn.outcome, Outcome::Running);
    assert_eq!(
        awaited(&turn.appended),
        [("approve".to_string(), 0, FIRST_WAIT_LINE)]
    );
    let site = turn.appended.iter().find_map(|e| match e {
        Event::EventAwaited { site, .. } => Some(site.clone()),
        _ => None,
    });
    let site = site.expect("an EventAwaited");
    assert_eq!(site.function, "two_approvals");
    assert_eq!(site.file, file!());
    assert_eq!(site.line_offset, 1);
    // Another event, the same wait still live: nothing appended for it again.
    let turn = execution.turn(&[], vec![raised("other", &1u64)]);
    assert!(awaited(&turn.appended).is_empty(), "{:?}", turn.appended);
    // The first arrives: the second wait begins, for event 1.
    let turn = execution.turn(&[], vec![raised("approve", &2u64)]);
    assert_eq!(
        awaited(&turn.appended),
        [("approve".to_string(), 1, FIRST_WAIT_LINE + 1)]
    );
    let turn = execution.turn(&[], vec![raised("approve", &3u64)]);
    assert!(awaited(&turn.appended).is_empty(), "{:?}", turn.appended);
    assert_eq!(turn.outcome, Outcome::Completed(encode(&5u64)));
}

#[test]
fn an_event_that_arrived_before_the_wait_appends_no_event_awaited() {
    let mut execution = Execution::of(two_approvals, "i");
    let turn = execution.turn(
        &[],
        vec![
            started("two_approvals", &()),
            raised("approve", &2u64),
            raised("approve", &3u64),
        ],
    );
    assert_eq!(turn.outcome, Outcome::Completed(encode(&5u64)));
    assert!(awaited(&turn.appended).is_empty(), "{:?}", turn.appended);
}

#[test]
fn a_history_with_waits_replays_like_the_cached_run_and_the_wait_gets_its_event() {
    let mut cached = Execution::of(two_approvals, "i");
    let mut history = cached
        .turn(&[], vec![started("two_approvals", &())])
        .appended;
    history.extend(cached.turn(&[], vec![raised("approve", &2u64)]).appended);
    assert_eq!(awaited(&history).len(), 2);
    replay_test::replay(two_approvals, &saved(history.clone())).unwrap();

    // Caught up from the history alone: nothing to append, the wait still live.
    let mut caught_up = Execution::of(two_approvals, "i");
    let turn = caught_up.turn(&history, Vec::new());
    assert_eq!(turn.outcome, Outcome::Running);
    assert!(turn.appended.is_empty(), "{:?}", turn.appended);

    let from_cache = cached.turn(&[], vec![raised("approve", &3u64)]);
    let mut replayed = Execution::of(two_approvals, "i");
    let from_replay = replayed.turn(&history, vec![raised("approve", &3u64)]);
    assert_eq!(from_replay, from_cache);
    assert_eq!(from_replay.outcome, Outcome::Completed(encode(&5u64)));
    history.extend(from_replay.appended);
    replay_test::replay(two_approvals, &saved(history)).unwrap();
}

#[test]
fn a_history_saved_before_event_waits_still_replays() {
    let mut first = Execution::of(two_approvals, "i");
    let mut history = first
        .turn(&[], vec![started("two_approvals", &())])
        .appended;
    history.extend(first.turn(&[], vec![raised("approve", &2u64)]).appended);
    let old = without_awaits(&history);
    replay_test::replay(two_approvals, &saved(old.clone())).unwrap();
    // The upgraded runtime goes on from it; the wait gets its event.
    let mut upgraded = Execution::of(two_approvals, "i");
    let turn = upgraded.turn(&old, vec![raised("approve", &3u64)]);
    assert_eq!(turn.outcome, Outcome::Completed(encode(&5u64)));
    let mut history = old;
    history.extend(turn.appended);
    replay_test::replay(two_approvals, &saved(history)).unwrap();
}
