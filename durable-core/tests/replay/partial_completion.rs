use durable_core::record::Event;
use durable_core::replay_test::{Execution, Outcome};
use durable_core::{OrchestrationContext, orchestrator};

use crate::builders::*;

/// The history after the first turn and the result of step 0.
fn history_after_first_step() -> Vec<Event> {
    let mut first = Execution::of(chain, "i");
    let mut history = first.turn(&[], vec![started("chain", &5u64)]).appended;
    let second = first.turn(&[], vec![completed(0, &10u64)]);
    history.extend(second.appended);
    history
}

#[test]
fn a_completed_step_is_served_from_history_and_the_next_one_scheduled() {
    let mut execution = Execution::of(chain, "i");
    let first = execution.turn(&[], vec![started("chain", &5u64)]);
    let turn = execution.turn(&[], vec![completed(0, &10u64)]);

    assert_eq!(turn.outcome, Outcome::Running);
    assert_eq!(turn.appended[0], completed(0, &10u64));
    assert_eq!(scheduled_names(&turn.appended), ["triple"]);
    assert_eq!(activities(&turn).len(), 1);
    assert_eq!(activities(&turn)[0].seq, 1);
    assert_eq!(activities(&turn)[0].input, encode(&10u64));
    assert_eq!(scheduled_names(&first.appended), ["double"]);
}

#[test]
fn replaying_a_history_runs_nothing_again() {
    let history = history_after_first_step();
    let mut replayed = Execution::of(chain, "i");
    let turn = replayed.turn(&history, vec![]);

    assert_eq!(turn.outcome, Outcome::Running);
    assert!(turn.appended.is_empty(), "{:?}", turn.appended);
    assert!(activities(&turn).is_empty(), "{:?}", activities(&turn));
}

#[test]
fn a_replayed_instance_continues_like_a_cached_one() {
    let history = history_after_first_step();
    let mut replayed = Execution::of(chain, "i");
    let from_replay = replayed.turn(&history, vec![completed(1, &30u64)]);

    let mut cached = Execution::of(chain, "i");
    cached.turn(&[], vec![started("chain", &5u64)]);
    cached.turn(&[], vec![completed(0, &10u64)]);
    let from_cache = cached.turn(&[], vec![completed(1, &30u64)]);

    assert_eq!(from_replay, from_cache);
    assert_eq!(from_replay.outcome, Outcome::Completed(encode(&30u64)));
    assert_eq!(
        from_replay.appended,
        vec![
            completed(1, &30u64),
            Event::Completed {
                output: encode(&30u64)
            }
        ]
    );
}

#[test]
fn a_duplicate_result_is_dropped() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    execution.turn(&[], vec![completed(0, &10u64)]);
    let turn = execution.turn(&[], vec![completed(0, &10u64)]);
    assert!(turn.appended.is_empty(), "{:?}", turn.appended);
    assert_eq!(turn.outcome, Outcome::Running);
}

#[test]
fn a_result_for_a_step_never_scheduled_is_dropped() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    let turn = execution.turn(&[], vec![completed(7, &1u64)]);
    assert!(turn.appended.is_empty(), "{:?}", turn.appended);
    assert_eq!(turn.outcome, Outcome::Running);
}

/// Two lanes of two steps each, joined.
#[orchestrator]
async fn two_lanes(ctx: OrchestrationContext, n: u64) -> Result<(u64, u64), String> {
    let left = async {
        let a = ctx.call(double, n).await?;
        ctx.call(triple, a).await
    };
    let right = async {
        let b = ctx.call(undo, n).await?;
        ctx.call(double, b).await
    };
    let (l, r) = ctx.join2(left, right).await;
    Ok((l?, r?))
}

#[test]
fn lanes_of_several_steps_replay_as_they_ran() {
    let mut live = Execution::of(two_lanes, "i");
    let mut history = Vec::new();
    for new in [
        vec![started("two_lanes", &1u64)],
        vec![completed(0, &2u64)],
        vec![completed(1, &1u64)],
        vec![completed(2, &6u64), completed(3, &2u64)],
    ] {
        let turn = live.turn(&[], new);
        history.extend(turn.appended);
    }
    assert!(
        matches!(history.last(), Some(Event::Completed { .. })),
        "{history:?}"
    );
    let mut fresh = Execution::of(two_lanes, "i");
    let replayed = fresh.turn(&history[..history.len() - 1], vec![]);
    assert_eq!(replayed.outcome, Outcome::Completed(encode(&(6u64, 2u64))));
}
