//! The pure step of an entity turn ([`super::batch::run`]): order, calls, locks.

use durable_macros::entity;
use durable_store::{Event, FailureKind, ParentLink, WorkId};
use serde::{Deserialize, Serialize};

use super::batch::{self, Batch, Sent, UndecodableState};
use super::recipient;
use crate::entity::{Entity, EntityId};
use crate::runtime::inbox::Delivery;

/// Appends what it is given: the order operations ran in.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Journal {
    entries: Vec<u64>,
}

#[entity]
impl Journal {
    pub fn push(&mut self, n: u64) {
        self.entries.push(n);
    }

    pub fn fail(&mut self) -> Result<(), String> {
        self.entries.push(0);
        Err("no".into())
    }
}

const ME: &str = "@Journal@j";
const NEXT: &str = "@Journal@k";

fn owner(name: &str, seq: u64) -> ParentLink {
    ParentLink {
        instance: name.to_string(),
        incarnation: 3,
        generation: 0,
        seq,
    }
}

fn push(id: WorkId, n: u64) -> Delivery {
    let event = super::operation("push", serde_json::to_vec(&n).unwrap(), None, None);
    Delivery::message(id, recipient(), event)
}

fn call(id: WorkId, operation: &str, input: impl Serialize, caller: ParentLink) -> Delivery {
    let event = Event::EntityCall {
        operation: operation.to_string(),
        input: serde_json::to_vec(&input).unwrap(),
        caller,
    };
    Delivery::message(id, recipient(), event)
}

fn lock(id: WorkId, owner: &ParentLink, entities: &[&str], position: u32) -> Delivery {
    let event = Event::EntityLock {
        owner: owner.clone(),
        entities: entities.iter().map(|e| e.to_string()).collect(),
        position,
    };
    Delivery::message(id, recipient(), event)
}

fn unlock(id: WorkId, owner: &ParentLink) -> Delivery {
    let event = Event::EntityUnlock {
        owner: owner.clone(),
    };
    Delivery::message(id, recipient(), event)
}

fn run(
    state: Option<&Journal>,
    lock: Option<ParentLink>,
    pending: Vec<Delivery>,
) -> Result<Batch, UndecodableState> {
    let id: EntityId = ME.parse().unwrap();
    let entity = batch::Entity {
        id: &id,
        instance: ME,
        dispatch: Journal::dispatch,
        max_payload: 1 << 20,
    };
    let state = state.map(|s| serde_json::to_vec(s).unwrap());
    batch::run(&entity, state, lock, pending)
}

fn entries(batch: &Batch) -> Vec<u64> {
    let state: Journal = serde_json::from_slice(batch.state.as_ref().unwrap()).unwrap();
    state.entries
}

fn ids(deliveries: &[Delivery]) -> Vec<WorkId> {
    deliveries.iter().map(|d| d.id).collect()
}

/// What went to orchestrations, in order.
fn to_orchestrations(batch: &Batch) -> Vec<(String, Event)> {
    (batch.sent.iter())
        .filter_map(|sent| match sent {
            Sent::ToOrchestration { to, event } => Some((to.instance.clone(), event.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn unlocked_everything_runs_in_arrival_order() {
    let batch = run(None, None, (1..=5).map(|n| push(n, n)).collect())
        .ok()
        .unwrap();
    assert_eq!(entries(&batch), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&batch.consumed), vec![1, 2, 3, 4, 5]);
    assert!(batch.held.is_empty() && batch.lock.is_none());
}

#[test]
fn a_call_is_answered_with_its_output_or_its_failure() {
    let a = owner("a", 0);
    let pending = vec![
        call(1, "push", 7, owner("a", 4)),
        call(2, "fail", (), owner("a", 5)),
        call(3, "nope", (), owner("a", 6)),
    ];
    let batch = run(None, None, pending).ok().unwrap();
    assert_eq!(entries(&batch), vec![7], "the failed call changed nothing");
    let answers = to_orchestrations(&batch);
    assert_eq!(
        answers[0],
        (
            a.instance.clone(),
            Event::EntityCompleted {
                seq: 4,
                output: b"null".to_vec()
            }
        )
    );
    match &answers[1].1 {
        Event::EntityFailed { seq: 5, failure } => {
            let payload = serde_json::to_vec("no").unwrap();
            assert_eq!(failure.kind, FailureKind::Returned { payload });
        }
        other => panic!("{other:?}"),
    }
    match &answers[2].1 {
        Event::EntityFailed { seq: 6, failure } => {
            assert_eq!(
                failure.kind,
                FailureKind::Unregistered {
                    name: "nope".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn locked_only_the_owner_runs_then_what_waited_runs_in_order_until_the_next_lock() {
    let (a, b) = (owner("a", 1), owner("b", 1));
    let pending = vec![
        push(1, 1),
        lock(2, &a, &[ME, NEXT], 0),
        push(3, 3),
        lock(4, &b, &[ME], 0),
        push(5, 5),
        call(6, "push", 6, owner("a", 2)),
        call(7, "push", 7, owner("b", 2)),
        unlock(8, &a),
        push(9, 9),
    ];
    let batch = run(None, None, pending).ok().unwrap();
    // 1 ran, then a's lock; a's call (6) ran ahead of 3; a's unlock let 3 run, then b's
    // lock took it: 5, b's call and 9 wait (b's call runs once b holds it).
    assert_eq!(entries(&batch), vec![1, 6, 3, 7]);
    assert_eq!(batch.lock, Some(b.clone()));
    assert_eq!(ids(&batch.held), vec![5, 9]);
    match &batch.sent[0] {
        Sent::Forward { entity, event } => {
            assert_eq!(entity.to_string(), NEXT);
            assert!(matches!(event, Event::EntityLock { position: 1, .. }));
        }
        _ => panic!("a's request goes on to the next entity first"),
    }
    assert!(to_orchestrations(&batch).contains(&("b".into(), Event::EntityLockGranted { seq: 1 })));
}

#[test]
fn an_unlock_before_its_lock_request_waits_for_it_and_neither_locks() {
    let a = owner("a", 1);
    let pending = vec![unlock(1, &a), push(2, 2), lock(3, &a, &[ME], 0), push(4, 4)];
    let batch = run(None, None, pending).ok().unwrap();
    assert_eq!(entries(&batch), vec![2, 4]);
    assert_eq!(batch.lock, None);
    let mut consumed = ids(&batch.consumed);
    consumed.sort_unstable();
    assert_eq!(consumed, vec![1, 2, 3, 4]);
    assert_eq!(
        to_orchestrations(&batch),
        vec![("a".into(), Event::EntityLockGranted { seq: 1 })]
    );
    // Alone, the unlock waits (and holds up nothing).
    let batch = run(None, None, vec![unlock(1, &a), push(2, 2)])
        .ok()
        .unwrap();
    assert_eq!(ids(&batch.held), vec![1]);
    assert_eq!(entries(&batch), vec![2]);
}

#[test]
fn a_lock_request_that_comes_again_to_its_owner_is_not_passed_on_twice() {
    let a = owner("a", 1);
    let batch = run(None, Some(a.clone()), vec![lock(1, &a, &[ME, NEXT], 0)])
        .ok()
        .unwrap();
    assert_eq!(ids(&batch.consumed), vec![1]);
    assert!(batch.sent.is_empty());
    assert_eq!(batch.lock, Some(a));
}

#[test]
fn a_state_that_does_not_decode_stops_the_turn() {
    let id: EntityId = ME.parse().unwrap();
    let entity = batch::Entity {
        id: &id,
        instance: ME,
        dispatch: Journal::dispatch,
        max_payload: 1 << 20,
    };
    let stored = Some(br#"{"entries":"x"}"#.to_vec());
    let ran = batch::run(&entity, stored, None, vec![push(1, 1)]);
    assert!(ran.is_err());
}
