//! Entities answer calls and hold locks (issue 14, step 3, the entity's side): the
//! messages an orchestration sends (`EntityCall`, `EntityLock`, `EntityUnlock`) are
//! committed here straight to the store, from a caller that is a real instance of an
//! orchestrator no runtime here has, so that what the entities send it (answers, grants)
//! stays queued in the store, where the tests read it. Restarts on the same store show
//! what is durable. Also: a stored state that does not decode holds back everything sent
//! to its entity after it, a client's delete included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use durable_core::{Client, Runtime, entity};
use durable_store::{
    Commit, Event, FailureKind, InstanceRecord, ParentLink, Store, WorkId, WorkItem,
};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until `key`'s state of type `E` satisfies `done`, and returns it.
async fn until<E>(client: &Client, key: &str, done: impl Fn(&E) -> bool) -> E
where
    E: durable_core::Entity + std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        if let Some(state) = client.entity_state::<E>(key).await.unwrap()
            && done(&state)
        {
            return state;
        }
        assert!(
            start.elapsed() < WAIT,
            "entity `{key}` never got there: {:?}",
            client.entity_state::<E>(key).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Counter` as first deployed.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CounterV1 {
    n: u64,
}

#[entity(name = "Counter")]
impl CounterV1 {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

/// `Counter` changed incompatibly: the stored state no longer decodes.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CounterV2 {
    n: String,
}

#[entity(name = "Counter")]
impl CounterV2 {
    pub fn bump(&mut self) {
        self.n.push('x');
    }
}

/// A bump waits for code that reads the state; the delete and the bump a client sends
/// after it wait behind it (they used to run at once, the delete resetting the state the
/// waiting bump then ran on after a restart, out of its sender's order).
#[test]
fn a_state_that_does_not_decode_holds_back_what_is_sent_after_it() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV1>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(CounterV1::bump, "c", ())
            .await
            .unwrap();
        until(&client, "c", |c: &CounterV1| c.n == 1).await;
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV2>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(CounterV2::bump, "c", ())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(client.delete_entity::<CounterV2>("c").await.unwrap());
        client
            .signal_entity(CounterV2::bump, "c", ())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let read = client.entity_state::<CounterV2>("c").await;
        assert!(
            matches!(
                read,
                Err(durable_core::Error::UndecodableEntityState { .. })
            ),
            "the delete ran before the bump sent ahead of it: {read:?}"
        );
        runtime.shutdown().await;
    });
    // Code that reads the state: bump (2), delete, bump (1), in the order they were sent.
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<CounterV1>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let start = Instant::now();
        while !store.work_items().unwrap().is_empty() {
            assert!(start.elapsed() < WAIT, "{:?}", store.work_items());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = client.entity_state::<CounterV1>("c").await.unwrap();
        assert_eq!(c, Some(CounterV1 { n: 1 }));
        runtime.shutdown().await;
    });
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
    /// How many operations changed the state.
    applied: u64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
        self.applied += 1;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        self.applied += 1;
        Ok(self.balance)
    }

    /// Changes the state, then panics: the change must not stick.
    pub fn explode(&mut self) {
        self.balance = -1_000_000;
        panic!("boom");
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }
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
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Account>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(Account::deposit, "alice", 100)
            .await
            .unwrap();
        until(&client, "alice", |a: &Account| a.applied == 1).await;
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
        runtime.shutdown().await;
    });
    // Run again: the calls were consumed with the state they changed; none runs twice.
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Account>()
            .start()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sent_to(&store, "teller").len(), 6);
        let alice = runtime
            .client()
            .entity_state::<Account>("alice")
            .await
            .unwrap();
        assert_eq!(
            alice,
            Some(Account {
                balance: 70,
                applied: 2
            })
        );
        runtime.shutdown().await;
    });
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
        client
            .signal_entity(Account::deposit, "bob", 0)
            .await
            .unwrap();
        until(&client, "bob", |b: &Account| b.applied == 1).await;
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
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .entity::<Account>()
            .start()
            .await
            .unwrap();
        let answers = until_sent(&store, "crashed", CALLS as usize).await;
        for seq in 1..=CALLS {
            assert_eq!(completed(answer_of(seq, &answers)), serde_json::json!(null));
        }
        let bob = runtime
            .client()
            .entity_state::<Account>("bob")
            .await
            .unwrap();
        assert_eq!(
            bob,
            Some(Account {
                balance: CALLS as i64,
                applied: CALLS + 1
            })
        );
        runtime.shutdown().await;
    });
}
