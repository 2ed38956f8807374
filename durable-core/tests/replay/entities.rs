//! Entity calls, signals and critical sections through the pure step: what each records
//! and commands, results from the history, nondeterminism, the rules of a section, and
//! the release of what a section holds when it ends or the orchestration does.

use std::time::Duration;

use durable_core::record::{Event, Failure, FailureKind, Site};
use durable_core::replay_test::{Command, Execution, Outcome};
use durable_core::{
    ActivityContext, EntityId, LockRuleViolation, OrchestrationContext, activity, deterministic,
    entity, orchestrator,
};
use serde::{Deserialize, Serialize};

use crate::builders::*;

// The integration tests' plain `Account`, one definition for both.
#[path = "../../../tests/integration/entity_support/plain.rs"]
mod plain;
use plain::Account;

#[activity]
async fn noop(_ctx: ActivityContext, _: ()) -> Result<(), String> {
    Ok(())
}

/// Withdraws from alice; an `Err` of the operation comes back as its own error.
#[orchestrator]
async fn pay(ctx: OrchestrationContext, amount: i64) -> Result<String, String> {
    match ctx.call_entity(Account::withdraw, "alice", amount).await {
        Ok(left) => Ok(format!("left {left}")),
        Err(e) => match e.error() {
            Some(own) => Ok(format!("refused: {own}")),
            None => Err(e.into()),
        },
    }
}

/// `pay` after a breaking edit: it deposits instead.
#[orchestrator(name = "pay")]
async fn pay_deposits(ctx: OrchestrationContext, amount: i64) -> Result<String, String> {
    ctx.call_entity(Account::deposit, "alice", amount).await?;
    Ok(String::new())
}

/// `pay` after a breaking edit: it withdraws from bob.
#[orchestrator(name = "pay")]
async fn pay_from_bob(ctx: OrchestrationContext, amount: i64) -> Result<String, String> {
    let left = ctx.call_entity(Account::withdraw, "bob", amount).await?;
    Ok(format!("left {left}"))
}

/// Signals bob, now and at a time, and finishes at once.
#[orchestrator]
async fn tip(ctx: OrchestrationContext, amount: i64) -> Result<(), String> {
    ctx.signal_entity(Account::deposit, "bob", amount)?;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(5);
    ctx.signal_entity_at(Account::deposit, EntityId::of::<Account>("bob"), 1, at)?;
    Ok(())
}

/// Moves `amount` from bob to alice inside a section, trying each rule on the way, and
/// reports what each refused.
#[orchestrator]
async fn transfer(ctx: OrchestrationContext, amount: i64) -> Result<Vec<String>, String> {
    let ids = [
        EntityId::of::<Account>("bob"),
        EntityId::of::<Account>("alice"),
        EntityId::of::<Account>("bob"),
    ];
    let section = ctx.lock(ids).await?;
    ctx.call_entity(Account::withdraw, "bob", amount).await?;
    let refused = break_the_rules(&ctx, amount).await;
    ctx.call_entity(Account::deposit, "alice", amount).await?;
    section.release();
    // Outside the section, anything goes again.
    ctx.signal_entity(Account::deposit, "carol", 1)?;
    Ok(refused)
}

/// Tries each rule of a section. A helper: inside `transfer`, where the macro sees the
/// section's guard, the nested lock and the sub-orchestration would not compile.
#[deterministic]
async fn break_the_rules(ctx: &OrchestrationContext, amount: i64) -> Vec<String> {
    let mut refused = Vec::new();
    if let Err(e) = ctx.call_entity(Account::deposit, "carol", amount).await {
        refused.push(e.lock_rule_violation().map(rule).unwrap_or_default());
    }
    if let Err(v) = ctx.signal_entity(Account::deposit, "alice", amount) {
        refused.push(rule(&v));
    }
    if let Err(v) = ctx.lock([EntityId::of::<Account>("carol")]).await {
        refused.push(rule(&v));
    }
    if let Err(e) = ctx.sub_orchestration(pay, 1).await {
        refused.push(e.lock_rule_violation().map(rule).unwrap_or_default());
    }
    refused
}

fn rule(v: &LockRuleViolation) -> String {
    match v {
        LockRuleViolation::CallNotLocked { .. } => "call",
        LockRuleViolation::SignalLocked { .. } => "signal",
        LockRuleViolation::NestedLock { .. } => "lock",
        LockRuleViolation::SubOrchestration { .. } => "sub-orchestration",
        _ => "other",
    }
    .to_string()
}

/// Locks alice and returns holding the section.
#[orchestrator]
async fn hold(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.call(noop, ()).await?;
    drop(section);
    Ok(())
}

/// Locks alice and returns from inside the section.
#[orchestrator]
async fn keep(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let _section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    Err("gave up".into())
}

fn entity_completed<T: Serialize>(seq: u64, output: &T) -> Event {
    Event::EntityCompleted {
        seq,
        output: encode(output),
    }
}

fn granted(seq: u64) -> Event {
    Event::EntityLockGranted { seq }
}

const ALICE: &str = "@Account@alice";
const BOB: &str = "@Account@bob";

#[test]
fn a_call_is_a_step_and_a_command_and_its_result_comes_from_the_history() {
    let mut execution = Execution::of(pay, "i");
    let turn = execution.turn(&[], vec![started("pay", &5i64)]);
    assert!(matches!(
        &turn.appended[1],
        Event::EntityCalled { seq: 0, entity, operation, input, .. }
            if entity == ALICE && operation == "withdraw" && *input == encode(&5i64)
    ));
    assert_eq!(
        turn.commands,
        vec![Command::CallEntity {
            seq: 0,
            entity: ALICE.into(),
            operation: "withdraw".into(),
            input: encode(&5i64),
        }]
    );
    let done = execution.turn(&[], vec![entity_completed(0, &15i64)]);
    let left = Outcome::Completed(encode(&"left 15".to_string()));
    assert_eq!(done.outcome, left);

    // Replayed from its history: the same result, nothing sent again.
    let mut history = turn.appended;
    history.push(entity_completed(0, &15i64));
    let mut replay = Execution::of(pay, "i");
    let replayed = replay.turn(&history, Vec::new());
    assert!(replayed.commands.is_empty());
    let mut replay = Execution::of(pay, "i");
    let (last, before) = history.split_last().unwrap();
    let replayed = replay.turn(before, vec![last.clone()]);
    assert_eq!(replayed.outcome, left);
    assert!(replayed.commands.is_empty());
}

#[test]
fn an_operation_that_returned_err_gives_the_orchestrator_its_own_error() {
    let mut execution = Execution::of(pay, "i");
    execution.turn(&[], vec![started("pay", &5i64)]);
    let failed = Event::EntityFailed {
        seq: 0,
        failure: Failure {
            kind: FailureKind::Returned {
                payload: encode(&"insufficient funds: 3"),
            },
            message: "insufficient funds: 3".into(),
        },
    };
    let done = execution.turn(&[], vec![failed]);
    assert_eq!(
        done.outcome,
        Outcome::Completed(encode(&"refused: insufficient funds: 3".to_string()))
    );
    // A panic has no error value: `?` fails the orchestration with the message.
    let mut execution = Execution::of(pay, "i");
    execution.turn(&[], vec![started("pay", &5i64)]);
    let panicked = Event::EntityFailed {
        seq: 0,
        failure: Failure {
            kind: FailureKind::Panicked,
            message: "boom".into(),
        },
    };
    match execution.turn(&[], vec![panicked]).outcome {
        Outcome::Failed(failure) => assert!(
            failure
                .message
                .contains("operation `withdraw` of entity `@Account@alice` panicked: boom"),
            "{}",
            failure.message
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn calling_another_operation_or_entity_on_replay_is_nondeterminism() {
    let mut live = Execution::of(pay, "i");
    let history = live.turn(&[], vec![started("pay", &5i64)]).appended;
    for (code, theirs) in [
        (
            Execution::of(pay_deposits, "i"),
            "operation `deposit` of entity `@Account@alice`",
        ),
        (
            Execution::of(pay_from_bob, "i"),
            "operation `withdraw` of entity `@Account@bob`",
        ),
    ] {
        let mut code = code;
        let turn = code.turn(&history, vec![entity_completed(0, &1i64)]);
        match turn.outcome {
            Outcome::Stalled(failure) => {
                assert_eq!(failure.kind, FailureKind::Nondeterminism);
                assert!(
                    failure
                        .message
                        .contains("operation `withdraw` of entity `@Account@alice`")
                        && failure.message.contains(theirs),
                    "{}",
                    failure.message
                );
            }
            other => panic!("expected a stall, got {other:?}"),
        }
    }
}

#[test]
fn a_signal_is_a_step_done_once_sent() {
    let mut execution = Execution::of(tip, "i");
    let turn = execution.turn(&[], vec![started("tip", &7i64)]);
    assert_eq!(turn.outcome, Outcome::Completed(encode(&())));
    let signals: Vec<_> = turn
        .appended
        .iter()
        .filter_map(|e| match e {
            Event::EntitySignaled {
                seq, entity, at_ms, ..
            } => Some((*seq, entity.as_str(), *at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(signals, vec![(0, BOB, None), (1, BOB, Some(5_000))]);
    assert_eq!(
        turn.commands[1],
        Command::SignalEntity {
            seq: 1,
            entity: BOB.into(),
            operation: "deposit".into(),
            input: encode(&1i64),
            at_ms: Some(5_000),
        }
    );
    // Replayed: nothing sent again.
    let mut replay = Execution::of(tip, "i");
    assert!(replay.turn(&turn.appended, Vec::new()).commands.is_empty());
}

#[test]
fn a_section_locks_in_order_refuses_what_breaks_its_rules_and_releases() {
    let mut execution = Execution::of(transfer, "i");
    let first = execution.turn(&[], vec![started("transfer", &4i64)]);
    let locked = vec![ALICE.to_string(), BOB.to_string()];
    assert!(matches!(
        &first.appended[1],
        Event::EntityLockRequested { seq: 0, entities, .. } if *entities == locked
    ));
    assert_eq!(
        first.commands,
        vec![Command::LockEntities {
            seq: 0,
            entities: locked.clone(),
        }]
    );
    let mut history = first.appended;
    let mut turn = |new: Event| {
        let turn = execution.turn(&[], vec![new]);
        history.extend(turn.appended.clone());
        turn
    };
    let in_section = turn(granted(0));
    assert!(matches!(
        &in_section.commands[..],
        [Command::CallEntity { seq: 1, entity, .. }] if entity == BOB
    ));
    let next = turn(entity_completed(1, &6i64));
    // The refused steps took no number: the deposit to alice is step 2.
    assert!(matches!(
        &next.commands[..],
        [Command::CallEntity { seq: 2, entity, .. }] if entity == ALICE
    ));
    let done = turn(entity_completed(2, &()));
    let refused = ["call", "signal", "lock", "sub-orchestration"].map(String::from);
    assert_eq!(done.outcome, Outcome::Completed(encode(&refused)));
    assert_eq!(
        done.commands,
        vec![
            Command::UnlockEntities {
                lock_seq: 0,
                entities: locked,
            },
            Command::SignalEntity {
                seq: 3,
                entity: "@Account@carol".into(),
                operation: "deposit".into(),
                input: encode(&1i64),
                at_ms: None,
            },
        ]
    );
    let releases = history
        .iter()
        .filter(|e| matches!(e, Event::EntityLocksReleased { lock_seq: 0 }))
        .count();
    assert_eq!(releases, 1);

    // A restart inside the section resumes inside it: replayed up to the grant and the
    // first call, the code still refuses what the section forbids, and sends only what
    // is new.
    let cut = history
        .iter()
        .position(|e| matches!(e, Event::EntityCompleted { seq: 1, .. }))
        .unwrap();
    let mut restarted = Execution::of(transfer, "i");
    let resumed = restarted.turn(&history[..cut], vec![history[cut].clone()]);
    assert!(matches!(
        &resumed.commands[..],
        [Command::CallEntity { seq: 2, entity, .. }] if entity == ALICE
    ));
    let done = restarted.turn(&[], vec![entity_completed(2, &())]);
    assert_eq!(done.outcome, Outcome::Completed(encode(&refused)));

    // The whole history replays to the same end, recording no second release.
    let mut replay = Execution::of(transfer, "i");
    let replayed = replay.turn(&history, Vec::new());
    assert!(replayed.commands.is_empty(), "{:?}", replayed.commands);
}

#[test]
fn the_end_of_the_orchestration_releases_what_it_holds_or_waits_for() {
    // Returned from inside the section: released in the turn that ends it, before the
    // end is recorded.
    let mut execution = Execution::of(keep, "i");
    execution.turn(&[], vec![started("keep", &())]);
    let done = execution.turn(&[], vec![granted(0)]);
    assert!(matches!(done.outcome, Outcome::Failed(_)));
    let tail: Vec<_> = done.appended[1..].to_vec();
    assert!(matches!(
        &tail[..],
        [
            Event::EntityLocksReleased { lock_seq: 0 },
            Event::Failed { .. }
        ]
    ));
    assert_eq!(
        done.commands,
        vec![Command::UnlockEntities {
            lock_seq: 0,
            entities: vec![ALICE.into()],
        }]
    );

    // Released by its drop, then ended: released once.
    let mut execution = Execution::of(hold, "i");
    execution.turn(&[], vec![started("hold", &())]);
    execution.turn(&[], vec![granted(0)]);
    let done = execution.turn(&[], vec![completed(1, &())]);
    assert_eq!(done.outcome, Outcome::Completed(encode(&())));
    let unlocks = done
        .commands
        .iter()
        .filter(|c| matches!(c, Command::UnlockEntities { .. }))
        .count();
    assert_eq!(unlocks, 1);
}

#[test]
fn a_section_is_rebuilt_from_a_history_whose_sites_moved() {
    // Histories keep the site of each step; a replay compares kinds, not sites.
    let site = Site {
        function: "keep".into(),
        file: "elsewhere.rs".into(),
        line: 1,
        line_offset: 0,
    };
    let history = vec![
        started("keep", &()),
        Event::EntityLockRequested {
            seq: 0,
            entities: vec![ALICE.into()],
            site,
        },
    ];
    let mut execution = Execution::of(keep, "i");
    let done = execution.turn(&history, vec![granted(0)]);
    assert!(matches!(done.outcome, Outcome::Failed(_)));
    assert!(matches!(
        &done.commands[..],
        [Command::UnlockEntities { lock_seq: 0, .. }]
    ));
}

/// Gives up waiting for the lock after a minute, then locks again.
#[orchestrator]
async fn impatient(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let ids = [EntityId::of::<Account>("alice")];
    let waited = ctx
        .timeout(Duration::from_secs(60), ctx.lock(ids.clone()))
        .await;
    let Err(_) = waited else {
        return Ok("locked".into());
    };
    let in_section = ctx.locked_entities().is_some();
    let again = ctx.lock(ids).await?;
    let holds = ctx.locked_entities().unwrap_or_default();
    drop(again);
    Ok(format!(
        "in a section after giving up: {in_section}; then {holds:?}"
    ))
}

#[test]
fn a_lock_request_given_up_is_released_and_the_section_closed() {
    let mut execution = Execution::of(impatient, "i");
    execution.turn(&[], vec![started("impatient", &())]);
    let gave_up = execution.turn(&[], vec![Event::TimerFired { seq: 1 }]);
    assert_eq!(
        gave_up.commands,
        vec![
            Command::UnlockEntities {
                lock_seq: 0,
                entities: vec![ALICE.into()],
            },
            Command::LockEntities {
                seq: 2,
                entities: vec![ALICE.into()],
            },
        ]
    );
    // The first grant, arriving late, is kept in the history and changes nothing.
    let done = execution.turn(&[], vec![granted(0), granted(2)]);
    let expected = format!(
        "in a section after giving up: false; then [{:?}]",
        EntityId::of::<Account>("alice")
    );
    assert_eq!(done.outcome, Outcome::Completed(encode(&expected)));
}

/// Locks alice, then continues as new from inside the section.
#[orchestrator]
async fn rounds(ctx: OrchestrationContext, round: u32) -> Result<(), String> {
    let _section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    if round < 1 {
        return ctx.continue_as_new(round + 1).await;
    }
    Ok(())
}

#[test]
fn continuing_as_new_releases_what_the_generation_holds() {
    let mut execution = Execution::of(rounds, "i");
    execution.turn(&[], vec![started("rounds", &0u32)]);
    let next = execution.turn(&[], vec![granted(0)]);
    assert!(matches!(next.outcome, Outcome::ContinuedAsNew { .. }));
    assert_eq!(
        next.commands,
        vec![Command::UnlockEntities {
            lock_seq: 0,
            entities: vec![ALICE.into()],
        }]
    );
}

#[derive(Default, Serialize, Deserialize)]
pub struct Other;

#[entity]
impl Other {
    pub fn ping(&mut self) {}
}

/// Calls alice's account by the id of another entity type, and locks nothing.
#[orchestrator]
async fn mistaken(ctx: OrchestrationContext, _: ()) -> Result<Vec<String>, String> {
    let wrong = EntityId::of::<Other>("alice");
    let called = ctx.call_entity(Account::deposit, wrong, 1).await;
    let locked = ctx.lock(Vec::new()).await;
    Ok(vec![
        called.map_err(|e| e.to_string()).err().unwrap_or_default(),
        locked
            .map(|_| ())
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default(),
    ])
}

#[test]
fn a_call_to_an_id_of_another_type_and_an_empty_lock_are_refused_unrecorded() {
    let mut execution = Execution::of(mistaken, "i");
    let turn = execution.turn(&[], vec![started("mistaken", &())]);
    assert!(turn.commands.is_empty());
    assert_eq!(turn.appended.len(), 2, "{:?}", turn.appended);
    let expected = vec![
        "operation `deposit` of entity `@Other@alice` failed: `@Other@alice` is not an entity \
         of type `Account`; name it by its key, or by an id `@Account@key`"
            .to_string(),
        "`lock` was given no entity; name at least one".to_string(),
    ];
    assert_eq!(turn.outcome, Outcome::Completed(encode(&expected)));
}
