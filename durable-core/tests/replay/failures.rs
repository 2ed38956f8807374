//! Errors inside an orchestration: activity failures it catches or propagates, panics,
//! and payloads that no longer decode.

use durable_core::record::{Event, FailureKind};
use durable_core::{Execution, OrchestrationContext, Outcome, orchestrator};

use crate::builders::*;

/// Calls `double`; if it fails, compensates with `undo` and carries on.
#[orchestrator]
async fn compensating(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    match ctx.call(double, n).await {
        Ok(v) => Ok(format!("doubled to {v}")),
        Err(e) => {
            let undone = ctx.call(undo, n).await?;
            Ok(format!(
                "undid {undone} after `{}` failed on attempt {}: {}",
                e.activity(),
                e.attempt(),
                e.message()
            ))
        }
    }
}

#[orchestrator]
async fn panicking(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    if a > 5 {
        panic!("value {a} out of range");
    }
    Ok(a)
}

fn failure_of(outcome: Outcome) -> durable_core::record::Failure {
    match outcome {
        Outcome::Failed(failure) => failure,
        other => panic!("expected a failed instance, got {other:?}"),
    }
}

#[test]
fn a_failed_activity_reaches_the_orchestrator_which_compensates() {
    let mut execution = Execution::of(compensating, "i");
    execution.turn(&[], vec![started("compensating", &5u64)]);
    let turn = execution.turn(&[], vec![failed(0, "disk full")]);
    assert_eq!(scheduled_names(&turn.appended), ["undo"]);
    let done = execution.turn(&[], vec![completed(1, &5u64)]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(
            &"undid 5 after `double` failed on attempt 1: disk full".to_string()
        ))
    );
}

#[test]
fn an_uncaught_activity_error_fails_the_instance_with_its_message() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    let turn = execution.turn(&[], vec![failed(0, "disk full")]);
    let failure = failure_of(turn.outcome);
    assert_eq!(
        failure.message,
        "activity `double` failed on attempt 1: disk full"
    );
    assert!(matches!(failure.kind, FailureKind::Returned { .. }));
    assert!(matches!(turn.appended.last(), Some(Event::Failed { .. })));
}

#[test]
fn a_panicking_orchestrator_fails_the_instance() {
    let mut execution = Execution::of(panicking, "i");
    execution.turn(&[], vec![started("panicking", &5u64)]);
    let turn = execution.turn(&[], vec![completed(0, &10u64)]);
    let failure = failure_of(turn.outcome);
    assert_eq!(failure.kind, FailureKind::Panicked);
    assert!(
        failure.message.contains("value 10 out of range"),
        "{}",
        failure.message
    );
}

#[test]
fn a_result_that_no_longer_decodes_fails_the_instance_naming_the_type() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    let turn = execution.turn(&[], vec![completed(0, &"ten".to_string())]);
    let failure = failure_of(turn.outcome);
    assert_eq!(
        failure.kind,
        FailureKind::Decode {
            type_name: "u64".into()
        }
    );
    assert!(failure.message.contains("`u64`"), "{}", failure.message);
}

#[test]
fn an_input_that_no_longer_decodes_fails_the_instance_naming_the_type() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&[], vec![started("chain", &"five".to_string())]);
    let failure = failure_of(turn.outcome);
    assert_eq!(
        failure.kind,
        FailureKind::Decode {
            type_name: "u64".into()
        }
    );
}
