//! The execution deadline (`Event::ExecutionDeadline`, beside `Started`) and its firing
//! (`Event::ExecutionTimedOut`): replay notes the first, changes nothing the code sees
//! for it, and ends the run failed as timed out on the second, whatever the code waits
//! on, without polling it again. A history without them replays as before.

use durable_core::record::{Event, FailureKind};
use durable_core::replay_test::{Execution, Outcome};

use crate::builders::*;

#[test]
fn a_deadline_changes_nothing_the_code_sees() {
    let mut plain = Execution::of(chain, "i");
    let mut bounded = Execution::of(chain, "i");
    let turn = plain.turn(&[], vec![started("chain", &5u64)]);
    let with_deadline = bounded.turn(
        &[],
        vec![
            started("chain", &5u64),
            Event::ExecutionDeadline { at_ms: 1_000 },
        ],
    );
    assert_eq!(activities(&with_deadline), activities(&turn));
    assert_eq!(with_deadline.outcome, Outcome::Running);
    assert!(
        with_deadline
            .appended
            .contains(&Event::ExecutionDeadline { at_ms: 1_000 })
    );
}

#[test]
fn its_firing_fails_the_run_as_timed_out_while_an_activity_runs() {
    let mut execution = Execution::of(chain, "i");
    let history = execution
        .turn(
            &[],
            vec![
                started("chain", &5u64),
                Event::ExecutionDeadline { at_ms: 1_000 },
            ],
        )
        .appended;
    // From the cache, and replayed from the history: the same end.
    for turn in [
        execution.turn(&[], vec![Event::ExecutionTimedOut]),
        Execution::of(chain, "i").turn(&history, vec![Event::ExecutionTimedOut]),
    ] {
        let Outcome::Failed(failure) = &turn.outcome else {
            panic!("not failed: {:?}", turn.outcome);
        };
        assert_eq!(failure.kind, FailureKind::TimedOut);
        assert!(failure.message.contains("1000"), "{}", failure.message);
        assert!(turn.commands.is_empty(), "nothing more is scheduled");
        let n = turn.appended.len();
        assert_eq!(turn.appended[n - 2], Event::ExecutionTimedOut);
        assert!(matches!(turn.appended[n - 1], Event::Failed { .. }));
    }
}

#[test]
fn a_result_in_the_same_turn_does_not_outrun_the_deadline() {
    let mut execution = Execution::of(chain, "i");
    execution.turn(&[], vec![started("chain", &5u64)]);
    execution.turn(&[], vec![completed(0, &10u64)]);
    let turn = execution.turn(&[], vec![Event::ExecutionTimedOut, completed(1, &30u64)]);
    assert!(matches!(turn.outcome, Outcome::Failed(ref f) if f.kind == FailureKind::TimedOut));
}
