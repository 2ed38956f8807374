//! The custom status a turn reports: only what the code sets as it runs for the first
//! time, never one replayed from the history.

use durable_core::record::Event;
use durable_core::replay_test::{Execution, Outcome};
use durable_core::{OrchestrationContext, orchestrator};

use crate::builders::*;

/// Sets a status before each step.
#[orchestrator]
async fn staged(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    ctx.set_custom_status(&"Validating");
    let a = ctx.call(double, n).await?;
    ctx.set_custom_status(&"Paying");
    Ok(ctx.call(triple, a).await?)
}

/// `staged` after a deploy whose code panics when it replays its first turn.
#[orchestrator(name = "staged")]
async fn staged_panics(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    if ctx.is_replaying() {
        panic!("cannot replay");
    }
    Ok(ctx.call(double, n).await?)
}

fn history() -> Vec<Event> {
    let mut live = Execution::of(staged, "i");
    let first = live.turn(&[], vec![started("staged", &5u64)]);
    assert_eq!(first.custom_status, Some(encode(&"Validating")));
    let second = live.turn(&[], vec![completed(0, &10u64)]);
    assert_eq!(second.custom_status, Some(encode(&"Paying")));
    let mut history = first.appended;
    history.extend(second.appended);
    history
}

#[test]
fn a_replay_reports_no_status_and_a_new_one_is_reported() {
    let history = history();
    let mut replayed = Execution::of(staged, "i");
    let turn = replayed.turn(&history, Vec::new());
    assert_eq!(turn.outcome, Outcome::Running);
    assert_eq!(
        turn.custom_status, None,
        "replayed statuses are stored already"
    );
    let done = replayed.turn(&[], vec![completed(1, &30u64)]);
    assert_eq!(done.outcome, Outcome::Completed(encode(&30u64)));
    assert_eq!(done.custom_status, None, "the code set none in this turn");
}

#[test]
fn a_replay_that_stops_early_reports_no_older_status() {
    let history = history();
    let turn = Execution::of(staged_panics, "i").turn(&history, Vec::new());
    assert!(
        matches!(turn.outcome, Outcome::Failed(_)),
        "{:?}",
        turn.outcome
    );
    assert_eq!(
        turn.custom_status, None,
        "not `Validating`, the first turn's"
    );
}
