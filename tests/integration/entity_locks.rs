//! Entities answer calls and hold locks (issue 14, step 3, the entity's side): the
//! messages an orchestration sends (`EntityCall`, `EntityLock`, `EntityUnlock`) are
//! committed here straight to the store, from a caller that is a real instance of an
//! orchestrator no runtime here has, so that what the entities send it (answers, grants)
//! stays queued in the store, where the tests read it. Restarts on the same store show
//! what is durable. Also: a stored state that does not decode holds back everything sent
//! to its entity after it, a client's delete included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use durable_core::{Runtime, entity};
use durable_store::{
    Commit, Event, FailureKind, InstanceRecord, ParentLink, Store, WorkId, WorkItem,
};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{
    Account, CounterV1, CounterV2, WAIT, account_runtime, assert_undecodable_as_v2, bump_v2,
    counter_stored_by_v1, deposit, postgres_worker, until, until_no_work_items, until_state,
    with_runtime,
};

/// A bump waits for code that reads the state; the delete and the bump a client sends
/// after it wait behind it (they used to run at once, the delete resetting the state the
/// waiting bump then ran on after a restart, out of its sender's order).
#[test]
fn a_state_that_does_not_decode_holds_back_what_is_sent_after_it() {
    let (_dir, store) = store();
    counter_stored_by_v1(&store, "c");
    with_runtime(
        Runtime::builder(store.clone()).entity::<CounterV2>(),
        async |client| {
            bump_v2(client, "c").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(client.delete_entity::<CounterV2>("c").await.unwrap());
            bump_v2(client, "c").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let why = "the delete ran before the bump sent ahead of it";
            assert_undecodable_as_v2(client, "c", why).await;
        },
    );
    // Code that reads the state: bump (2), delete, bump (1), in the order they were sent.
    with_runtime(
        Runtime::builder(store.clone()).entity::<CounterV1>(),
        async |client| {
            until_no_work_items(&store).await;
            let c = client.entity_state::<CounterV1>("c").await.unwrap();
            assert_eq!(c, Some(CounterV1 { n: 1 }));
        },
    );
}

/// The orchestrator the callers run: no runtime here has it, so what entities send them
/// stays in the store.
const CALLER_ORCHESTRATOR: &str = "Teller";

/// The incarnation of every caller here.
const CALLER_INCARNATION: u64 = 7;

/// The incarnation of every entity (`runtime/entities.rs`).
const ENTITY_INCARNATION: u64 = 1;

/// Writes the record of caller `id`, a run of an orchestrator no runtime here has.
fn make_caller(store: &dyn Store, id: &str) {
    let record = InstanceRecord::pending(
        CALLER_ORCHESTRATOR.to_string(),
        1,
        b"null".to_vec(),
        0,
        CALLER_INCARNATION,
        None,
    );
    let commit = Commit {
        instances: vec![(id.to_string(), record)],
        ..Commit::default()
    };
    store.commit(&[commit]).unwrap();
}

/// Step `seq` of caller `id`.
fn step(id: &str, seq: u64) -> ParentLink {
    ParentLink {
        instance: id.to_string(),
        incarnation: CALLER_INCARNATION,
        generation: 0,
        seq,
    }
}

/// Commits `events` as messages to entity `entity` (`@Account@alice`), in this order,
/// as an orchestration's turn would send them.
fn send(store: &dyn Store, entity: &str, events: Vec<Event>) {
    let first = store.reserve_work_ids(events.len() as u64).unwrap();
    let enqueued = events
        .into_iter()
        .zip(first..)
        .map(|(event, id)| {
            let item = WorkItem::Message {
                instance: entity.to_string(),
                incarnation: ENTITY_INCARNATION,
                generation: None,
                event,
            };
            (id, item)
        })
        .collect();
    let commit = Commit {
        enqueued,
        ..Commit::default()
    };
    store.commit(&[commit]).unwrap();
}

fn call(operation: &str, input: impl Serialize, caller: ParentLink) -> Event {
    Event::EntityCall {
        operation: operation.to_string(),
        input: serde_json::to_vec(&input).unwrap(),
        caller,
    }
}

/// What waits in the store for instance `id`, by work id.
fn sent_to(store: &dyn Store, id: &str) -> BTreeMap<WorkId, Event> {
    (store.work_items().unwrap().into_iter())
        .filter_map(|(work_id, item)| match item {
            WorkItem::Message {
                instance,
                incarnation,
                generation,
                event,
            } if instance == id => {
                assert_eq!(
                    (incarnation, generation),
                    (CALLER_INCARNATION, Some(0)),
                    "sent to the caller's run"
                );
                Some((work_id, event))
            }
            _ => None,
        })
        .collect()
}

/// Waits until `n` messages wait in the store for `id`, and returns them in the order
/// they were sent.
async fn until_sent(store: &dyn Store, id: &str, n: usize) -> Vec<Event> {
    let start = Instant::now();
    loop {
        let sent = sent_to(store, id);
        if sent.len() >= n {
            return sent.into_values().collect();
        }
        assert!(start.elapsed() < WAIT, "{id} got only {sent:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn answer_of(seq: u64, answers: &[Event]) -> &Event {
    let mut of_seq = answers.iter().filter(|event| match event {
        Event::EntityCompleted { seq: s, .. } | Event::EntityFailed { seq: s, .. } => *s == seq,
        _ => false,
    });
    let answer = of_seq
        .next()
        .unwrap_or_else(|| panic!("no answer to {seq}: {answers:?}"));
    assert!(of_seq.next().is_none(), "{seq} answered twice: {answers:?}");
    answer
}

fn completed(answer: &Event) -> serde_json::Value {
    match answer {
        Event::EntityCompleted { output, .. } => serde_json::from_slice(output).unwrap(),
        other => panic!("not completed: {other:?}"),
    }
}

fn failed(answer: &Event) -> (&FailureKind, &str) {
    match answer {
        Event::EntityFailed { failure, .. } => (&failure.kind, &failure.message),
        other => panic!("not failed: {other:?}"),
    }
}

#[test]
fn a_call_is_answered_in_the_commit_that_runs_it_once() {
    let (_dir, store) = store();
    make_caller(&store, "teller");
    with_runtime(
        Runtime::builder(store.clone()).entity::<Account>(),
        async |client| {
            deposit(client, "alice", 100).await;
            until_state(client, "alice", |a: &Account| a.applied == 1).await;
            let calls = vec![
                call("withdraw", 30, step("teller", 1)),
                call("withdraw", 1_000, step("teller", 2)),
                call("explode", (), step("teller", 3)),
                call("nope", (), step("teller", 4)),
                call("withdraw", "thirty", step("teller", 5)),
                call("balance", (), step("teller", 6)),
            ];
            send(&store, "@Account@alice", calls);
            let answers = until_sent(&store, "teller", 6).await;
            assert_eq!(completed(answer_of(1, &answers)), serde_json::json!(70));
            let (kind, message) = failed(answer_of(2, &answers));
            let payload = serde_json::to_vec("insufficient funds: 70 < 1000").unwrap();
            assert_eq!(kind, &FailureKind::Returned { payload });
            assert!(message.contains("insufficient funds"), "{message}");
            let (kind, message) = failed(answer_of(3, &answers));
            assert_eq!(kind, &FailureKind::Panicked);
            assert!(message.contains("boom"), "{message}");
            let (kind, _) = failed(answer_of(4, &answers));
            assert_eq!(
                kind,
                &FailureKind::Unregistered {
                    name: "nope".into()
                }
            );
            let (kind, _) = failed(answer_of(5, &answers));
            assert!(
                matches!(kind, FailureKind::Decode { type_name } if type_name == "i64"),
                "{kind:?}"
            );
            assert_eq!(completed(answer_of(6, &answers)), serde_json::json!(70));
            let alice = client.entity_state::<Account>("alice").await.unwrap();
            assert_eq!(
                alice,
                Some(Account {
                    balance: 70,
                    applied: 2
                })
            );
        },
    );
    // Run again: the calls were consumed with the state they changed; none runs twice.
    with_runtime(
        Runtime::builder(store.clone()).entity::<Account>(),
        async |client| {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(sent_to(&store, "teller").len(), 6);
            let alice = client.entity_state::<Account>("alice").await.unwrap();
            assert_eq!(
                alice,
                Some(Account {
                    balance: 70,
                    applied: 2
                })
            );
        },
    );
}

#[test]
fn calls_cut_off_by_a_crash_change_the_state_and_are_answered_once_each() {
    const CALLS: u64 = 300;
    let (_dir, store) = store();
    make_caller(&store, "crashed");
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Account>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        deposit(&client, "bob", 0).await;
        until_state(&client, "bob", |b: &Account| b.applied == 1).await;
        // One call at a time, as separate commits, so that the crash cuts them off.
        for seq in 1..=CALLS {
            send(
                &store,
                "@Account@bob",
                vec![call("deposit", 1, step("crashed", seq))],
            );
        }
        until_sent(&store, "crashed", 1).await;
        // Gone, calls still queued and turns mid-flight.
    });
    with_runtime(
        Runtime::builder(store.clone()).entity::<Account>(),
        async |client| {
            let answers = until_sent(&store, "crashed", CALLS as usize).await;
            for seq in 1..=CALLS {
                assert_eq!(completed(answer_of(seq, &answers)), serde_json::json!(null));
            }
            let bob = client.entity_state::<Account>("bob").await.unwrap();
            assert_eq!(
                bob,
                Some(Account {
                    balance: CALLS as i64,
                    applied: CALLS + 1
                })
            );
        },
    );
}

/// Appends what it is given, to show the order operations ran in.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Journal {
    entries: Vec<u64>,
}

#[entity]
impl Journal {
    pub fn push(&mut self, n: u64) {
        self.entries.push(n);
    }
}

/// The first message of lock request `owner` for `entities` (instance ids, sorted).
fn lock_request(owner: &ParentLink, entities: &[&str]) -> Event {
    Event::EntityLock {
        owner: owner.clone(),
        entities: entities.iter().map(|e| e.to_string()).collect(),
        position: 0,
    }
}

fn unlock(owner: &ParentLink) -> Event {
    Event::EntityUnlock {
        owner: owner.clone(),
    }
}

/// Who holds entity `id`'s lock, as its record says.
fn lock_owner(store: &dyn Store, id: &str) -> Option<ParentLink> {
    store.instance(id).unwrap().unwrap().parent
}

/// The messages waiting in the store for entities.
fn for_entities(store: &dyn Store) -> Vec<Event> {
    (store.work_items().unwrap().into_iter())
        .filter_map(|(_, item)| match item {
            WorkItem::Message {
                instance, event, ..
            } if instance.starts_with('@') => Some(event),
            _ => None,
        })
        .collect()
}

fn runtime(store: &durable_store::FjallStore) -> durable_core::RuntimeBuilder {
    account_runtime(store.clone()).entity::<Journal>()
}

const ALICE: &str = "@Account@alice";
const BOB: &str = "@Account@bob";

#[test]
fn a_lock_goes_along_its_set_and_holds_back_all_but_its_owner_calls_across_a_restart() {
    let (_dir, store) = store();
    make_caller(&store, "owner");
    make_caller(&store, "other");
    let owner = step("owner", 1);
    let other = step("other", 2);
    with_runtime(runtime(&store), async |client| {
        deposit(client, "alice", 100).await;
        deposit(client, "bob", 100).await;
        until_state(client, "alice", |a: &Account| a.applied == 1).await;
        until_state(client, "bob", |b: &Account| b.applied == 1).await;
        send(&store, ALICE, vec![lock_request(&owner, &[ALICE, BOB])]);
        let granted = until_sent(&store, "owner", 1).await;
        assert_eq!(granted, vec![Event::EntityLockGranted { seq: 1 }]);
        assert_eq!(lock_owner(&store, ALICE), Some(owner.clone()));
        assert_eq!(lock_owner(&store, BOB), Some(owner.clone()));
        // Locked: a client's signal, another orchestration's call and lock request wait;
        // the owner's call runs.
        deposit(client, "alice", 5).await;
        send(&store, ALICE, vec![call("balance", (), step("other", 1))]);
        send(&store, ALICE, vec![lock_request(&other, &[ALICE])]);
        send(&store, ALICE, vec![call("withdraw", 50, step("owner", 2))]);
        let answers = until_sent(&store, "owner", 2).await;
        assert_eq!(completed(answer_of(2, &answers)), serde_json::json!(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(sent_to(&store, "other").is_empty());
    });
    lifetime(async {
        // Still locked after a restart: what waited waits again.
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        send(&store, ALICE, vec![call("balance", (), step("owner", 3))]);
        let answers = until_sent(&store, "owner", 3).await;
        assert_eq!(completed(answer_of(3, &answers)), serde_json::json!(50));
        assert!(sent_to(&store, "other").is_empty());
        assert_eq!(
            for_entities(&store).len(),
            3,
            "the deposit, the call, the lock request"
        );
        // Unlocked: they run in arrival order (the deposit before the call that reads
        // it), and the other lock request takes alice.
        send(&store, ALICE, vec![unlock(&owner)]);
        send(&store, BOB, vec![unlock(&owner)]);
        let answers = until_sent(&store, "other", 2).await;
        assert_eq!(completed(answer_of(1, &answers)), serde_json::json!(55));
        assert_eq!(answers[1], Event::EntityLockGranted { seq: 2 });
        assert_eq!(lock_owner(&store, ALICE), Some(other.clone()));
        deposit(&client, "bob", 1).await;
        until_state(&client, "bob", |b: &Account| b.applied == 2).await;
        assert_eq!(lock_owner(&store, BOB), None);
        deposit(&client, "alice", 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let alice = client
            .entity_state::<Account>("alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            alice.balance, 55,
            "a deposit ran while another held the lock"
        );
        send(&store, ALICE, vec![unlock(&other)]);
        until_state(&client, "alice", |a: &Account| a.balance == 56).await;
        assert_eq!(lock_owner(&store, ALICE), None);
        runtime.shutdown().await;
    });
    assert_eq!(for_entities(&store), vec![]);
}

#[test]
fn an_unlock_that_comes_before_its_lock_request_lets_it_pass_without_locking() {
    let (_dir, store) = store();
    make_caller(&store, "first");
    make_caller(&store, "late");
    let first = step("first", 1);
    let late = step("late", 4);
    with_runtime(runtime(&store), async |client| {
        deposit(client, "alice", 1).await;
        deposit(client, "bob", 1).await;
        until_state(client, "bob", |b: &Account| b.applied == 1).await;
        send(&store, ALICE, vec![lock_request(&first, &[ALICE])]);
        until_sent(&store, "first", 1).await;
        // `late` asks for alice and bob, waits at alice, and ends: it unlocks both.
        send(&store, ALICE, vec![lock_request(&late, &[ALICE, BOB])]);
        send(&store, ALICE, vec![unlock(&late)]);
        send(&store, BOB, vec![unlock(&late)]);
        // Bob is not locked: the unlock waiting there holds up nothing.
        deposit(client, "bob", 1).await;
        until_state(client, "bob", |b: &Account| b.applied == 2).await;
    });
    with_runtime(runtime(&store), async |client| {
        deposit(client, "bob", 1).await;
        until_state(client, "bob", |b: &Account| b.applied == 3).await;
        assert_eq!(lock_owner(&store, BOB), None);
        // Alice unlocked by `first`: `late`'s request passes alice and bob, locking
        // neither, and is granted (a grant an ended orchestration drops).
        send(&store, ALICE, vec![unlock(&first)]);
        let granted = until_sent(&store, "late", 1).await;
        assert_eq!(granted, vec![Event::EntityLockGranted { seq: 4 }]);
        assert_eq!(lock_owner(&store, ALICE), None);
        assert_eq!(lock_owner(&store, BOB), None);
        deposit(client, "alice", 1).await;
        until_state(client, "alice", |a: &Account| a.applied == 2).await;
    });
    assert_eq!(for_entities(&store), vec![]);
}

#[test]
fn what_waits_for_a_lock_runs_in_the_order_each_sender_sent_it() {
    let (_dir, store) = store();
    make_caller(&store, "owner");
    let owner = step("owner", 1);
    let journal = "@Journal@j";
    with_runtime(runtime(&store), async |client| {
        for n in 1..=10 {
            client.signal_entity(Journal::push, "j", n).await.unwrap();
        }
        until_state(client, "j", |j: &Journal| j.entries.len() == 10).await;
        send(&store, journal, vec![lock_request(&owner, &[journal])]);
        until_sent(&store, "owner", 1).await;
        for n in 11..=40 {
            client.signal_entity(Journal::push, "j", n).await.unwrap();
        }
        send(&store, journal, vec![call("push", 100, step("owner", 2))]);
        until_sent(&store, "owner", 2).await;
        for n in 41..=50 {
            client.signal_entity(Journal::push, "j", n).await.unwrap();
        }
        let j = client.entity_state::<Journal>("j").await.unwrap().unwrap();
        let mut expected: Vec<u64> = (1..=10).collect();
        expected.push(100);
        assert_eq!(
            j.entries, expected,
            "only the owner's call ran while locked"
        );
        send(&store, journal, vec![unlock(&owner)]);
        let j = until_state(client, "j", |j: &Journal| j.entries.len() == 51).await;
        expected.extend(11..=50);
        assert_eq!(j.entries, expected);
    });
    assert_eq!(for_entities(&store), vec![]);
}

/// Critical sections of several orchestrations over the same two accounts, on two
/// workers sharing a PostgreSQL database, one of them replaced midway: each is granted
/// once, alone (both accounts name it while it runs), its calls run inside it, a
/// client's deposits wait for the sections to end, and every operation runs once.
#[test]
fn on_postgres_critical_sections_over_two_workers_are_granted_one_at_a_time() {
    const OWNERS: u64 = 6;
    let database = durable_store::TestServer::shared().database();
    let open = || durable_store::PostgresStore::open(database.url()).unwrap();
    let store = open();
    let builder = || postgres_worker(database.url(), Duration::from_secs(5), account_runtime);
    let owners: Vec<String> = (0..OWNERS).map(|k| format!("owner-{k}")).collect();
    for owner in &owners {
        make_caller(&store, owner);
    }
    lifetime(async {
        let a = builder().start().await.unwrap();
        let mut b = builder().start().await.unwrap();
        let client = a.client();
        deposit(&client, "alice", 1_000).await;
        deposit(&client, "bob", 1_000).await;
        until_state(&client, "alice", |x: &Account| x.applied == 1).await;
        until_state(&client, "bob", |x: &Account| x.applied == 1).await;
        for owner in &owners {
            send(
                &store,
                ALICE,
                vec![lock_request(&step(owner, 1), &[ALICE, BOB])],
            );
        }
        let mut served = Vec::new();
        while served.len() < owners.len() {
            let start = Instant::now();
            let granted = loop {
                let granted: Vec<&String> = (owners.iter())
                    .filter(|o| !served.contains(*o) && !sent_to(&store, o).is_empty())
                    .collect();
                assert!(granted.len() <= 1, "two sections at once: {granted:?}");
                if let Some(owner) = granted.first() {
                    break (*owner).clone();
                }
                assert!(
                    start.elapsed() < WAIT,
                    "no section granted after {served:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let section = step(&granted, 1);
            assert_eq!(lock_owner(&store, ALICE), Some(section.clone()));
            assert_eq!(lock_owner(&store, BOB), Some(section.clone()));
            // A transfer: withdraw from alice, deposit to bob; a client's deposit waits.
            deposit(&client, "alice", 1).await;
            send(&store, ALICE, vec![call("withdraw", 10, step(&granted, 2))]);
            send(&store, BOB, vec![call("deposit", 10, step(&granted, 3))]);
            let answers = until_sent(&store, &granted, 3).await;
            assert!(matches!(
                answer_of(2, &answers),
                Event::EntityCompleted { .. }
            ));
            assert!(matches!(
                answer_of(3, &answers),
                Event::EntityCompleted { .. }
            ));
            served.push(granted);
            if served.len() == 3 {
                // One worker goes, another comes: the locks are in the records.
                b.shutdown().await;
                b = builder().start().await.unwrap();
            }
            send(&store, ALICE, vec![unlock(&section)]);
            send(&store, BOB, vec![unlock(&section)]);
        }
        let alice = until_state(&client, "alice", |x: &Account| x.applied == 1 + 2 * OWNERS).await;
        assert_eq!(alice.balance, 1_000 - 10 * OWNERS as i64 + OWNERS as i64);
        let bob = until_state(&client, "bob", |x: &Account| x.applied == 1 + OWNERS).await;
        assert_eq!(bob.balance, 1_000 + 10 * OWNERS as i64);
        // The last section's unlocks may still be queued once the deposits have run.
        until("no message left for an entity", || async {
            match for_entities(&store) {
                left if left.is_empty() => Ok(()),
                left => Err(format!("{left:?}")),
            }
        })
        .await;
        a.shutdown().await;
        b.shutdown().await;
    });
    assert_eq!(for_entities(&store), vec![]);
    assert_eq!(lock_owner(&store, ALICE), None);
    assert_eq!(lock_owner(&store, BOB), None);
    for owner in &owners {
        assert_eq!(
            sent_to(&store, owner).len(),
            3,
            "{owner}: a grant and two answers"
        );
    }
}

#[test]
fn a_delete_sent_to_a_locked_entity_waits_for_the_section_to_end() {
    let (_dir, store) = store();
    make_caller(&store, "owner");
    let owner = step("owner", 1);
    let journal = "@Journal@d";
    with_runtime(runtime(&store), async |client| {
        client.signal_entity(Journal::push, "d", 1).await.unwrap();
        until_state(client, "d", |j: &Journal| j.entries == [1]).await;
        send(&store, journal, vec![lock_request(&owner, &[journal])]);
        until_sent(&store, "owner", 1).await;
        assert!(client.delete_entity::<Journal>("d").await.unwrap());
        client.signal_entity(Journal::push, "d", 2).await.unwrap();
        send(&store, journal, vec![call("push", 3, step("owner", 2))]);
        until_sent(&store, "owner", 2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let d = client.entity_state::<Journal>("d").await.unwrap().unwrap();
        assert_eq!(d.entries, vec![1, 3], "the delete ran inside the section");
        send(&store, journal, vec![unlock(&owner)]);
        until_state(client, "d", |j: &Journal| j.entries == [2]).await;
    });
    assert_eq!(for_entities(&store), vec![]);
}
