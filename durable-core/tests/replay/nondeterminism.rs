//! Code that no longer takes the path its history records stops the turn: the instance is
//! stalled, nothing of the turn is to be committed, and the message names the step and
//! both sides.

use durable_core::record::{Event, FailureKind};
use durable_core::replay_test::{Execution, Outcome};
use durable_core::{OrchestrationContext, orchestrator};

use crate::builders::*;

/// `chain` after a breaking edit: its first step calls another activity.
#[orchestrator(name = "chain")]
async fn chain_calls_triple_first(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(triple, n).await?;
    Ok(a)
}

/// `chain` after a breaking edit: it returns after its first step.
#[orchestrator(name = "chain")]
async fn chain_stops_early(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    Ok(a)
}

/// `chain` after an edit that is not breaking: the calls moved down a few lines.
#[orchestrator(name = "chain")]
async fn chain_moved_call(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let n = n.max(1);

    let a = ctx.call(double, n).await?;
    let b = ctx.call(triple, a).await?;
    Ok(b)
}

/// Awaits something that is not a durable operation.
#[orchestrator]
async fn awaits_foreign_future(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    std::future::pending::<()>().await;
    Ok(a)
}

fn history() -> Vec<Event> {
    let mut execution = Execution::of(chain, "i");
    let mut history = execution.turn(&[], vec![started("chain", &5u64)]).appended;
    history.extend(execution.turn(&[], vec![completed(0, &10u64)]).appended);
    history
}

fn stalled_message(outcome: Outcome) -> String {
    match outcome {
        Outcome::Stalled(failure) => {
            assert_eq!(failure.kind, FailureKind::Nondeterminism);
            failure.message
        }
        other => panic!("expected a stalled instance, got {other:?}"),
    }
}

#[test]
fn another_activity_at_a_recorded_step_is_nondeterminism() {
    let mut execution = Execution::of(chain_calls_triple_first, "i");
    let turn = execution.turn(&history(), vec![]);
    let scheduled = activities(&turn);
    let message = stalled_message(turn.outcome);
    assert!(message.starts_with("step 0:"), "{message}");
    assert!(
        message.contains("history has activity `double`")
            && message.contains("now asks for activity `triple`"),
        "{message}"
    );
    assert!(
        message.contains("builders.rs"),
        "names the recorded site: {message}"
    );
    assert!(
        message.contains("nondeterminism.rs"),
        "names the new site: {message}"
    );
    assert!(scheduled.is_empty(), "a stalled turn schedules nothing");
}

#[test]
fn returning_before_a_recorded_step_is_nondeterminism() {
    let mut execution = Execution::of(chain_stops_early, "i");
    let turn = execution.turn(&history(), vec![]);
    let message = stalled_message(turn.outcome);
    assert!(message.starts_with("step 1:"), "{message}");
    assert!(
        message.contains("`triple`") && message.contains("returns without asking for it"),
        "{message}"
    );
}

#[test]
fn calls_that_only_moved_lines_still_replay() {
    let mut execution = Execution::of(chain_moved_call, "i");
    let turn = execution.turn(&history(), vec![]);
    assert_eq!(turn.outcome, Outcome::Running);
    assert_eq!(scheduled_names(&turn.appended), Vec::<String>::new());
}

#[test]
fn awaiting_a_foreign_future_is_reported_not_left_hanging() {
    let mut execution = Execution::of(awaits_foreign_future, "i");
    execution.turn(&[], vec![started("awaits_foreign_future", &5u64)]);
    let turn = execution.turn(&[], vec![completed(0, &10u64)]);
    let message = stalled_message(turn.outcome);
    assert!(message.contains("not a durable operation"), "{message}");
    assert!(message.contains("awaits_foreign_future"), "{message}");
    // The message of d8ae86d, unchanged by the restructure.
    assert!(
        message.contains("(a tokio timer, a channel, a socket?): after step 0"),
        "{message}"
    );
}

#[test]
fn unchanged_code_replays_its_own_history() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&history(), vec![]);
    assert_eq!(turn.outcome, Outcome::Running);
}

/// A future woken from outside the runtime: it wakes its waker from a thread.
fn woken_from_a_thread() -> impl std::future::Future<Output = ()> {
    let mut armed = false;
    std::future::poll_fn(move |cx| {
        if !armed {
            armed = true;
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                waker.wake();
            });
        }
        std::task::Poll::Pending
    })
}

#[orchestrator]
async fn awaits_foreign_wake(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let (a, ()) = ctx.join2(ctx.call(double, n), woken_from_a_thread()).await;
    Ok(a?)
}

#[test]
fn a_wake_from_outside_the_runtime_is_reported() {
    let mut execution = Execution::of(awaits_foreign_wake, "i");
    let first = execution.turn(&[], vec![started("awaits_foreign_wake", &5u64)]);
    assert_eq!(
        first.outcome,
        Outcome::Running,
        "an activity is outstanding"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    let turn = execution.turn(&[], vec![completed(0, &10u64)]);
    let message = stalled_message(turn.outcome);
    assert!(
        message.contains("woken by something other than the runtime"),
        "{message}"
    );
    assert!(message.contains("awaits_foreign_wake"), "{message}");
    // The message of d8ae86d, unchanged by the restructure.
    assert!(
        message.contains("not a durable operation (a tokio timer, a channel,"),
        "{message}"
    );
}
