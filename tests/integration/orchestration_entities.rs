//! Orchestrations calling, signalling and locking entities through the runtime (issue 14,
//! step 3, the orchestration side): what a turn records and sends, on fjall and on
//! PostgreSQL with two workers, across restarts.
//!
//! Until the entity side answers calls and locks, the tests named `hand_rolled_*` play
//! the entity: they stop the runtime, commit the answer an entity would send
//! (`EntityCompleted`, `EntityFailed`, `EntityLockGranted`) as a message to the
//! orchestration, and start it again. Once entities answer, replace them with the real
//! exchange (register `Account` and drop the hand-rolled commit).

use std::time::{Duration, Instant};

use durable_core::record::{Commit, Event, Failure, FailureKind, ParentLink, WorkItem};
use durable_core::{
    Client, EntityId, FjallStore, OrchestrationContext, Runtime, RuntimeBuilder, Store, entity,
    orchestrator,
};
use durable_store::{PostgresStore, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}

/// Withdraws 5 from `key`: the balance left, or the operation's own error as text.
#[orchestrator]
async fn withdraw_five(ctx: OrchestrationContext, key: String) -> Result<String, String> {
    match ctx.call_entity(Account::withdraw, key.as_str(), 5).await {
        Ok(left) => Ok(format!("left {left}")),
        Err(e) => match e.into_error() {
            Some(own) => Ok(format!("refused: {own}")),
            None => Err("the call failed".into()),
        },
    }
}

/// Signals a deposit of `n` to `key`.
#[orchestrator]
async fn tip(ctx: OrchestrationContext, (key, n): (String, i64)) -> Result<(), String> {
    ctx.signal_entity(Account::deposit, key.as_str(), n)?;
    Ok(())
}

/// Locks alice and bob, then withdraws from bob.
#[orchestrator]
async fn locked_withdraw(ctx: OrchestrationContext, _: ()) -> Result<i64, String> {
    let ids = [
        EntityId::of::<Account>("bob"),
        EntityId::of::<Account>("alice"),
    ];
    let section = ctx.lock(ids).await?;
    let left = ctx.call_entity(Account::withdraw, "bob", 5).await?;
    section.release();
    Ok(left)
}

/// Locks alice and waits for an event that never comes.
#[orchestrator]
async fn lock_and_wait(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let _section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.wait_event::<()>("never").await;
    Ok(())
}

/// Locks alice, signals bob, and continues as new from inside the section once.
#[orchestrator]
async fn rounds(ctx: OrchestrationContext, round: u32) -> Result<u32, String> {
    if round == 1 {
        return Ok(round);
    }
    let _section = ctx.lock([EntityId::of::<Account>("alice")]).await?;
    ctx.signal_entity(Account::deposit, "bob", 1)?;
    ctx.continue_as_new(round + 1).await
}

fn runtime(store: &FjallStore) -> RuntimeBuilder {
    Runtime::builder(store.clone())
        .orchestrator(withdraw_five)
        .orchestrator(tip)
        .orchestrator(locked_withdraw)
        .orchestrator(lock_and_wait)
        .orchestrator(rounds)
}

/// Waits until `instance`'s history holds an event `found` picks, and returns it.
async fn until_history<T>(
    store: &impl Store,
    instance: &str,
    found: impl Fn(&Event) -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = store.history(instance).unwrap().iter().find_map(&found) {
            return t;
        }
        assert!(
            start.elapsed() < WAIT,
            "{instance}: {:?}",
            store.history(instance)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The messages waiting in the store for `instance`.
fn messages(store: &impl Store, instance: &str) -> Vec<(u64, Event)> {
    store
        .work_items()
        .unwrap()
        .into_iter()
        .filter_map(|(id, item)| match item {
            WorkItem::Message {
                instance: to,
                event,
                ..
            } if to == instance => Some((id, event)),
            _ => None,
        })
        .collect()
}

/// What an entity would do with the message `consumed`: answer `owner` with `answer`.
fn hand_rolled_answer(store: &impl Store, consumed: &[u64], owner: &ParentLink, answer: Event) {
    let id = store.reserve_work_ids(1).unwrap();
    let message = WorkItem::Message {
        instance: owner.instance.clone(),
        incarnation: owner.incarnation,
        generation: Some(owner.generation),
        event: answer,
    };
    store
        .commit(&[Commit {
            dequeued: consumed.to_vec(),
            enqueued: vec![(id, message)],
            ..Commit::default()
        }])
        .unwrap();
}

async fn output(client: &Client, id: &str) -> String {
    client.instance(withdraw_five, id).wait(WAIT).await.unwrap()
}

#[test]
fn a_call_is_recorded_and_sent_with_its_caller_and_makes_the_entity() {
    let (_dir, store) = store();
    let caller = lifetime(async {
        // `Account` is not registered here: the call waits in the store for a worker
        // that has it.
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        client
            .start(withdraw_five, "payer", "alice".to_string())
            .await
            .unwrap();
        let called = until_history(&store, "payer", |e| match e {
            Event::EntityCalled {
                seq,
                entity,
                operation,
                input,
                ..
            } => Some((*seq, entity.clone(), operation.clone(), input.clone())),
            _ => None,
        })
        .await;
        assert_eq!(
            called,
            (
                0,
                "@Account@alice".to_string(),
                "withdraw".to_string(),
                b"5".to_vec()
            )
        );
        runtime.shutdown().await;
        let record = store.instance("payer").unwrap().unwrap();
        ParentLink {
            instance: "payer".into(),
            incarnation: record.incarnation,
            generation: 0,
            seq: 0,
        }
    });
    let entity = store
        .instance("@Account@alice")
        .unwrap()
        .expect("the entity was made");
    assert_eq!(entity.orchestrator, "@Account");
    let sent = messages(&store, "@Account@alice");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].1,
        Event::EntityCall {
            operation: "withdraw".into(),
            input: b"5".to_vec(),
            caller,
        }
    );
}

#[test]
fn hand_rolled_answers_reach_the_call_after_a_restart_typed() {
    let (_dir, store) = store();
    for (id, answer, expected) in [
        (
            "ok",
            Event::EntityCompleted {
                seq: 0,
                output: b"15".to_vec(),
            },
            "left 15",
        ),
        (
            "err",
            Event::EntityFailed {
                seq: 0,
                failure: Failure {
                    kind: FailureKind::Returned {
                        payload: br#""insufficient funds: 3""#.to_vec(),
                    },
                    message: "insufficient funds: 3".into(),
                },
            },
            "refused: insufficient funds: 3",
        ),
    ] {
        let key = format!("key-{id}");
        let entity = format!("@Account@{key}");
        lifetime(async {
            let runtime = runtime(&store).start().await.unwrap();
            let client = runtime.client();
            client.start(withdraw_five, id, key.clone()).await.unwrap();
            until_history(&store, id, |e| {
                matches!(e, Event::EntityCalled { .. }).then_some(())
            })
            .await;
            runtime.shutdown().await;
        });
        let sent = messages(&store, &entity);
        let Event::EntityCall { caller, .. } = &sent[0].1 else {
            panic!("{sent:?}");
        };
        hand_rolled_answer(&store, &[sent[0].0], caller, answer);
        let got = lifetime(async {
            let runtime = runtime(&store).start().await.unwrap();
            let got = output(&runtime.client(), id).await;
            runtime.shutdown().await;
            got
        });
        assert_eq!(got, expected);
    }
}

#[test]
fn signals_from_orchestrations_run_on_their_entity() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).entity::<Account>().start().await.unwrap();
        let client = runtime.client();
        for i in 0..20 {
            let instance = client
                .start(tip, format!("tip-{i}"), ("carol".to_string(), 2))
                .await
                .unwrap();
            instance.wait(WAIT).await.unwrap();
        }
        let start = Instant::now();
        while client.entity_state::<Account>("carol").await.unwrap()
            != Some(Account { balance: 40 })
        {
            assert!(start.elapsed() < WAIT);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let history = store.history("tip-0").unwrap();
        assert!(history.iter().any(|e| matches!(
            e,
            Event::EntitySignaled { seq: 0, entity, .. } if entity == "@Account@carol"
        )));
        runtime.shutdown().await;
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn hand_rolled_grant_opens_a_section_that_survives_a_restart_and_is_released() {
    let (_dir, store) = store();
    let owner = lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        runtime
            .client()
            .start(locked_withdraw, "mover", ())
            .await
            .unwrap();
        let entities = until_history(&store, "mover", |e| match e {
            Event::EntityLockRequested { entities, .. } => Some(entities.clone()),
            _ => None,
        })
        .await;
        assert_eq!(entities, ["@Account@alice", "@Account@bob"], "sorted");
        runtime.shutdown().await;
        let record = store.instance("mover").unwrap().unwrap();
        ParentLink {
            instance: "mover".into(),
            incarnation: record.incarnation,
            generation: 0,
            seq: 0,
        }
    });
    // Both records made; the lock request goes to the first entity.
    assert!(store.instance("@Account@bob").unwrap().is_some());
    let sent = messages(&store, "@Account@alice");
    assert_eq!(
        sent.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        vec![Event::EntityLock {
            owner: owner.clone(),
            entities: vec!["@Account@alice".into(), "@Account@bob".into()],
            position: 0,
        }]
    );
    hand_rolled_answer(
        &store,
        &[sent[0].0],
        &owner,
        Event::EntityLockGranted { seq: 0 },
    );
    // Restarted inside the section: it calls bob.
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        until_history(&store, "mover", |e| {
            matches!(e, Event::EntityCalled { seq: 1, .. }).then_some(())
        })
        .await;
        runtime.shutdown().await;
    });
    let call = messages(&store, "@Account@bob");
    let Event::EntityCall { caller, .. } = &call[0].1 else {
        panic!("{call:?}");
    };
    assert_eq!((caller.seq, &caller.instance), (1, &owner.instance));
    let answer = Event::EntityCompleted {
        seq: 1,
        output: b"7".to_vec(),
    };
    hand_rolled_answer(&store, &[call[0].0], caller, answer);
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let left = runtime
            .client()
            .instance(locked_withdraw, "mover")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(left, 7);
        runtime.shutdown().await;
    });
    let history = store.history("mover").unwrap();
    let releases = history
        .iter()
        .filter(|e| matches!(e, Event::EntityLocksReleased { lock_seq: 0 }))
        .count();
    assert_eq!(releases, 1, "{history:?}");
    for entity in ["@Account@alice", "@Account@bob"] {
        let unlocks: Vec<_> = messages(&store, entity)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            unlocks,
            vec![Event::EntityUnlock {
                owner: owner.clone()
            }],
            "{entity}"
        );
    }
}

#[test]
fn a_terminated_orchestration_unlocks_what_it_holds_or_waits_for() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        let instance = client.start(lock_and_wait, "stuck", ()).await.unwrap();
        until_history(&store, "stuck", |e| {
            matches!(e, Event::EntityLockRequested { .. }).then_some(())
        })
        .await;
        // A status page shows what it waits for.
        let position = instance.position().await.unwrap().to_string();
        assert!(
            position.starts_with("awaiting step 0, a lock on entities [@Account@alice]"),
            "{position}"
        );
        // Not granted: the request is still on its way.
        instance.terminate("enough").await.unwrap();
        let start = Instant::now();
        while !messages(&store, "@Account@alice")
            .iter()
            .any(|(_, e)| matches!(e, Event::EntityUnlock { .. }))
        {
            assert!(start.elapsed() < WAIT);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime.shutdown().await;
    });
    let record = store.instance("stuck").unwrap().unwrap();
    let owner = ParentLink {
        instance: "stuck".into(),
        incarnation: record.incarnation,
        generation: 0,
        seq: 0,
    };
    let sent: Vec<_> = messages(&store, "@Account@alice")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        sent,
        vec![
            Event::EntityLock {
                owner: owner.clone(),
                entities: vec!["@Account@alice".into()],
                position: 0,
            },
            Event::EntityUnlock { owner },
        ]
    );
}

#[test]
fn hand_rolled_grant_then_continue_as_new_sends_the_signal_and_the_unlock() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        runtime.client().start(rounds, "rounds", 0).await.unwrap();
        until_history(&store, "rounds", |e| {
            matches!(e, Event::EntityLockRequested { .. }).then_some(())
        })
        .await;
        runtime.shutdown().await;
    });
    let record = store.instance("rounds").unwrap().unwrap();
    let owner = ParentLink {
        instance: "rounds".into(),
        incarnation: record.incarnation,
        generation: 0,
        seq: 0,
    };
    let lock = messages(&store, "@Account@alice");
    hand_rolled_answer(
        &store,
        &[lock[0].0],
        &owner,
        Event::EntityLockGranted { seq: 0 },
    );
    let output = lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let output = runtime
            .client()
            .instance(rounds, "rounds")
            .wait(WAIT)
            .await
            .unwrap();
        runtime.shutdown().await;
        output
    });
    assert_eq!(output, 1);
    let to = |entity| -> Vec<Event> {
        messages(&store, entity)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    };
    assert_eq!(to("@Account@alice"), vec![Event::EntityUnlock { owner }]);
    assert!(matches!(
        &to("@Account@bob")[..],
        [Event::EntityOperation { operation, sender: Some(sender), .. }]
            if operation == "deposit" && sender == "rounds"
    ));
}

#[test]
fn on_postgres_hand_rolled_answers_take_a_section_through_two_workers() {
    let database = TestServer::shared().database();
    // Neither worker has `Account`: its messages wait in the store for the test to play
    // the entity.
    let worker = |url: &str| {
        Runtime::builder(PostgresStore::open(url).unwrap())
            .orchestrator(locked_withdraw)
            .lease(Duration::from_secs(5))
    };
    let store = PostgresStore::open(database.url()).unwrap();
    let both = |until: fn(&Event) -> bool| {
        lifetime(async {
            let a = worker(database.url()).start().await.unwrap();
            let b = worker(database.url()).start().await.unwrap();
            if store.instance("pg-mover").unwrap().is_none() {
                b.client()
                    .start(locked_withdraw, "pg-mover", ())
                    .await
                    .unwrap();
            }
            until_history(&store, "pg-mover", |e| until(e).then_some(())).await;
            a.shutdown().await;
            b.shutdown().await;
        });
    };
    both(|e| matches!(e, Event::EntityLockRequested { .. }));
    let record = store.instance("pg-mover").unwrap().unwrap();
    let owner = ParentLink {
        instance: "pg-mover".into(),
        incarnation: record.incarnation,
        generation: 0,
        seq: 0,
    };
    let lock = messages(&store, "@Account@alice");
    assert!(
        matches!(&lock[..], [(_, Event::EntityLock { position: 0, .. })]),
        "{lock:?}"
    );
    hand_rolled_answer(
        &store,
        &[lock[0].0],
        &owner,
        Event::EntityLockGranted { seq: 0 },
    );
    both(|e| matches!(e, Event::EntityCalled { seq: 1, .. }));
    let call = messages(&store, "@Account@bob");
    let Event::EntityCall { caller, .. } = &call[0].1 else {
        panic!("{call:?}");
    };
    let answer = Event::EntityCompleted {
        seq: 1,
        output: b"7".to_vec(),
    };
    hand_rolled_answer(&store, &[call[0].0], caller, answer);
    both(|e| matches!(e, Event::Completed { .. }));
    assert!(matches!(
        store.instance("pg-mover").unwrap().unwrap().status,
        durable_core::record::Status::Completed { ref output } if output == b"7"
    ));
    for entity in ["@Account@alice", "@Account@bob"] {
        let unlocks: Vec<_> = messages(&store, entity)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            unlocks,
            vec![Event::EntityUnlock {
                owner: owner.clone()
            }],
            "{entity}"
        );
    }
}

#[orchestrator]
async fn tip_and_call(ctx: OrchestrationContext, key: String) -> Result<(), String> {
    ctx.signal_entity(Account::deposit, key.as_str(), 3)?;
    Ok(())
}

#[test]
fn on_postgres_two_workers_send_each_signal_of_many_orchestrations_once() {
    let database = TestServer::shared().database();
    let worker = |url: &str| {
        Runtime::builder(PostgresStore::open(url).unwrap())
            .entity::<Account>()
            .orchestrator(tip_and_call)
            .lease(Duration::from_secs(5))
    };
    lifetime(async {
        let a = worker(database.url()).start().await.unwrap();
        let b = worker(database.url()).start().await.unwrap();
        let (client_a, client_b) = (a.client(), b.client());
        let mut started = Vec::new();
        for i in 0..40 {
            let client = if i % 2 == 0 { &client_a } else { &client_b };
            started.push(
                client
                    .start(tip_and_call, format!("t{i}"), "dora".to_string())
                    .await
                    .unwrap(),
            );
        }
        for instance in started {
            instance.wait(WAIT).await.unwrap();
        }
        let start = Instant::now();
        loop {
            let dora = client_a.entity_state::<Account>("dora").await.unwrap();
            if dora == Some(Account { balance: 120 }) {
                break;
            }
            assert!(start.elapsed() < WAIT, "{dora:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.shutdown().await;
        b.shutdown().await;
    });
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
}
