//! Errors inside an orchestration: activity failures it catches or propagates, panics,
//! and payloads that no longer decode.

use std::time::Duration;

use durable_core::record::{Event, Failure, FailureKind, Site};
use durable_core::replay_test::{Command, Execution, Outcome, Turn};
use durable_core::{OrchestrationContext, RetryPolicy, orchestrator};

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

fn stall_of(outcome: Outcome) -> durable_core::record::Failure {
    match outcome {
        Outcome::Stalled(failure) => failure,
        other => panic!("expected a stalled instance, got {other:?}"),
    }
}

#[test]
fn a_result_that_no_longer_decodes_stalls_the_instance_naming_the_type() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    let turn = execution.turn(&[], vec![completed(0, &"ten".to_string())]);
    let failure = stall_of(turn.outcome);
    assert_eq!(
        failure.kind,
        FailureKind::Decode {
            type_name: "u64".into()
        }
    );
    assert!(failure.message.contains("`u64`"), "{}", failure.message);
    assert!(
        !turn
            .appended
            .iter()
            .any(|e| matches!(e, Event::Failed { .. })),
        "a stall records no end: {:?}",
        turn.appended
    );
}

#[test]
fn an_input_that_no_longer_decodes_stalls_the_instance_naming_the_type() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&[], vec![started("chain", &"five".to_string())]);
    let failure = stall_of(turn.outcome);
    assert_eq!(
        failure.kind,
        FailureKind::Decode {
            type_name: "u64".into()
        }
    );
}

fn raised<T: serde::Serialize>(name: &str, payload: &T) -> Event {
    Event::EventRaised {
        name: name.to_string(),
        payload: encode(payload),
    }
}

/// Waits for a `bool` event `approved`.
#[orchestrator]
async fn approving(ctx: OrchestrationContext, _: ()) -> Result<bool, String> {
    Ok(ctx.wait_event::<bool>("approved").await)
}

#[test]
fn an_event_of_the_wrong_type_is_set_aside_and_the_wait_takes_the_next() {
    let mut execution = Execution::of(approving, "i");
    let mut history = execution
        .turn(&[], vec![started("approving", &())])
        .appended;
    let turn = execution.turn(&[], vec![raised("approved", &"yes")]);
    assert_eq!(turn.outcome, Outcome::Running);
    let set_aside = turn.appended.iter().find_map(|e| match e {
        Event::EventSetAside {
            name,
            index,
            payload,
            reason,
        } => Some((name.clone(), *index, payload.clone(), reason.clone())),
        _ => None,
    });
    let (name, index, payload, reason) = set_aside.expect("an EventSetAside record");
    assert_eq!((name.as_str(), index), ("approved", 0));
    assert_eq!(payload, encode(&"yes"));
    assert!(reason.contains("`bool`"), "{reason}");
    history.extend(turn.appended);
    let done = execution.turn(&[], vec![raised("approved", &true)]);
    assert_eq!(done.outcome, Outcome::Completed(encode(&true)));
    // A fresh replay of the history agrees: the set-aside event is not taken again.
    let mut replayed = Execution::of(approving, "i");
    let caught_up = replayed.turn(&history, Vec::new());
    assert_eq!(caught_up.outcome, Outcome::Running);
    let done = replayed.turn(&[], vec![raised("approved", &false)]);
    assert_eq!(done.outcome, Outcome::Completed(encode(&false)));
}

/// Waits for `approved` for at most a minute.
#[orchestrator]
async fn approving_in_time(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let wait = ctx.wait_event::<bool>("approved");
    match ctx.timeout(Duration::from_secs(60), wait).await {
        Ok(yes) => Ok(format!("approved: {yes}")),
        Err(e) => Ok(format!("escalated: {e}")),
    }
}

#[test]
fn a_race_never_picks_a_wait_whose_event_is_set_aside() {
    let mut execution = Execution::of(approving_in_time, "i");
    execution.turn(&[], vec![started("approving_in_time", &())]);
    let timer_fired = Event::TimerFired { seq: 0 };
    let done = execution.turn(&[], vec![raised("approved", &"yes"), timer_fired]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&"escalated: timed out after 60s".to_string()))
    );
}

#[test]
fn an_event_taken_before_that_no_longer_decodes_stalls_on_replay() {
    // Earlier code, waiting for a string, took the event; this code waits for a `bool`.
    let history = [started("approving", &()), raised("approved", &"yes")];
    let mut execution = Execution::of(approving, "i");
    let failure = stall_of(execution.turn(&history, Vec::new()).outcome);
    assert_eq!(
        failure.kind,
        FailureKind::Decode {
            type_name: "bool".into()
        }
    );
}

/// Calls `double` with up to three attempts, a millisecond apart.
#[orchestrator]
async fn retrying(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(1));
    Ok(ctx.call_with_retry(double, n, policy).await?)
}

/// `double` failed on attempt `attempt` because the runtime did not have it.
fn unregistered(seq: u64, attempt: u32) -> Event {
    Event::ActivityFailed {
        seq,
        attempt,
        failure: Failure {
            kind: FailureKind::Unregistered {
                name: "double".into(),
            },
            message: "activity `double` is not registered with this runtime".into(),
        },
    }
}

fn site() -> Site {
    Site {
        function: "retrying".into(),
        file: file!().into(),
        line: 1,
        line_offset: 0,
    }
}

#[test]
fn an_error_no_attempt_can_mend_is_not_retried_and_the_history_says_so() {
    let mut execution = Execution::of(retrying, "i");
    execution.turn(&[], vec![started("retrying", &1u64)]);
    let turn = execution.turn(&[], vec![unregistered(0, 1)]);
    assert!(
        matches!(&turn.outcome, Outcome::Failed(f)
            if f.message == "activity `double` failed on attempt 1: activity `double` is not registered with this runtime"),
        "{:?}",
        turn.outcome
    );
    assert!(
        turn.commands.is_empty(),
        "no retry timer: {:?}",
        turn.commands
    );
    assert!(
        turn.appended.iter().any(
            |e| matches!(e, Event::Recorded { what, .. } if what == "patch:durable:non-retryable-errors")
        ),
        "{:?}",
        turn.appended
    );
}

#[test]
fn a_history_that_retried_such_an_error_replays_as_it_ran() {
    // Written before errors were told apart: the failure is followed by the retry's wait
    // and a second attempt, which succeeds now.
    let history = vec![
        started("retrying", &1u64),
        Event::ActivityScheduled {
            seq: 0,
            activity: "double".into(),
            input: encode(&1u64),
            site: site(),
        },
        unregistered(0, 1),
        Event::TimerCreated {
            seq: 1,
            fire_at_ms: 1,
            site: site(),
        },
        Event::TimerFired { seq: 1 },
        Event::ActivityScheduled {
            seq: 2,
            activity: "double".into(),
            input: encode(&1u64),
            site: site(),
        },
    ];
    let mut execution = Execution::of(retrying, "i");
    let turn = execution.turn(&history, vec![completed(2, &2u64)]);
    assert_eq!(turn.outcome, Outcome::Completed(encode(&2u64)));
}

/// Retries `double`; if it fails for good, compensates with `undo`.
#[orchestrator]
async fn retrying_then_compensating(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(1));
    match ctx.call_with_retry(double, n, policy).await {
        Ok(v) => Ok(v),
        Err(_) => Ok(ctx.call(undo, n).await?),
    }
}

#[test]
fn a_history_with_the_no_retry_marker_and_steps_after_it_replays_as_it_ran() {
    let mut live = Execution::of(retrying_then_compensating, "i");
    let mut history = Vec::new();
    for new in [
        vec![started("retrying_then_compensating", &4u64)],
        vec![unregistered(0, 1)],
        vec![completed(2, &4u64)],
    ] {
        history.extend(live.turn(&[], new).appended);
    }
    assert!(
        matches!(history.last(), Some(Event::Completed { .. })),
        "{history:?}"
    );
    let mut fresh = Execution::of(retrying_then_compensating, "i");
    let replayed = fresh.turn(&history[..history.len() - 1], vec![]);
    assert_eq!(replayed.outcome, Outcome::Completed(encode(&4u64)));
}

/// `double` returned an error on execution `attempt` of its call.
fn failed_on(seq: u64, attempt: u32) -> Event {
    Event::ActivityFailed {
        seq,
        attempt,
        failure: Failure {
            kind: FailureKind::Returned {
                payload: encode(&"transient".to_string()),
            },
            message: "transient".into(),
        },
    }
}

/// The attempt and key step of the activity a turn schedules.
fn scheduled_attempt(turn: &Turn) -> Option<(u32, u64)> {
    turn.commands.iter().find_map(|c| match c {
        Command::ScheduleActivity {
            attempt, key_seq, ..
        } => Some((*attempt, *key_seq)),
        _ => None,
    })
}

/// The step of the timer a turn sets.
fn timer_seq(turn: &Turn) -> u64 {
    turn.commands
        .iter()
        .find_map(|c| match c {
            Command::CreateTimer { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no timer: {:?}", turn.commands))
}

#[test]
fn a_retry_counts_on_from_the_execution_that_failed_and_replays_alike() {
    // The first attempt was lost in a crash and redelivered: the failure is the call's
    // second execution, so the retry is its third, and with three attempts allowed,
    // its failure is the last.
    let mut live = Execution::of(retrying, "i");
    let mut history = live.turn(&[], vec![started("retrying", &1u64)]).appended;
    let failure = live.turn(&[], vec![failed_on(0, 2)]);
    history.extend(failure.appended.clone());
    let fired = Event::TimerFired {
        seq: timer_seq(&failure),
    };
    let retry = live.turn(&[], vec![fired]);
    assert_eq!(
        scheduled_attempt(&retry),
        Some((3, 0)),
        "{:?}",
        retry.commands
    );
    history.extend(retry.appended.clone());
    let retry_seq = match retry.commands.first() {
        Some(Command::ScheduleActivity { seq, .. }) => *seq,
        other => panic!("expected the retry, got {other:?}"),
    };
    let gave_up = |outcome: &Outcome| {
        matches!(outcome, Outcome::Failed(f)
            if f.message == "activity `double` failed on attempt 3: transient")
    };
    let last = live.turn(&[], vec![failed_on(retry_seq, 3)]);
    assert!(gave_up(&last.outcome), "{:?}", last.outcome);
    assert!(last.commands.is_empty(), "{:?}", last.commands);

    // Replayed from its history, the instance counts the same.
    let mut fresh = Execution::of(retrying, "i");
    let replayed = fresh.turn(&history, vec![failed_on(retry_seq, 3)]);
    assert!(gave_up(&replayed.outcome), "{:?}", replayed.outcome);
    assert_eq!(replayed.appended, last.appended);
}

/// Calls `double` with up to two attempts of at most a second each.
#[orchestrator]
async fn bounded_retry(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let policy =
        RetryPolicy::fixed(2, Duration::from_millis(1)).attempt_timeout(Duration::from_secs(1));
    Ok(ctx.call_with_retry(double, n, policy).await?)
}

#[test]
fn an_attempt_timeout_goes_with_the_task_and_sets_no_timer() {
    let mut execution = Execution::of(bounded_retry, "i");
    let turn = execution.turn(&[], vec![started("bounded_retry", &1u64)]);
    assert!(
        matches!(
            turn.commands.as_slice(),
            [Command::ScheduleActivity {
                attempt: 1,
                attempt_timeout_ms: Some(1000),
                ..
            }]
        ),
        "the worker bounds the execution; no timer races it: {:?}",
        turn.commands
    );
    assert!(
        turn.appended.iter().any(
            |e| matches!(e, Event::Recorded { what, .. } if what == "patch:durable:start-to-close")
        ),
        "{:?}",
        turn.appended
    );
}

#[test]
fn a_history_that_raced_an_attempt_against_a_timer_replays_as_it_ran() {
    // Written before attempt timeouts went with the task: a durable timer raced the
    // attempt, and its firing timed the attempt out.
    let history = vec![
        started("bounded_retry", &1u64),
        Event::ActivityScheduled {
            seq: 0,
            activity: "double".into(),
            input: encode(&1u64),
            site: site(),
        },
        Event::TimerCreated {
            seq: 1,
            fire_at_ms: 1_000,
            site: site(),
        },
    ];
    let mut execution = Execution::of(bounded_retry, "i");
    let turn = execution.turn(&history, vec![Event::TimerFired { seq: 1 }]);
    assert_eq!(turn.outcome, Outcome::Running, "{:?}", turn.outcome);
    assert!(
        matches!(
            turn.commands.as_slice(),
            [Command::CreateTimer { seq: 2, .. }]
        ),
        "the retry's wait: {:?}",
        turn.commands
    );
}
