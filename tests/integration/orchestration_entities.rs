//! Orchestrations calling, signalling and locking entities through the runtime (issue 14,
//! step 3, the orchestration side): what a turn records and sends, on fjall and on
//! PostgreSQL with two workers, across restarts.

use std::time::Duration;

use durable_core::record::{Event, ParentLink, WorkItem};
use durable_core::{
    Client, EntityId, FjallStore, OrchestrationContext, Runtime, RuntimeBuilder, Store,
    orchestrator,
};
use durable_store::{PostgresStore, TestServer};

use crate::common::{lifetime, store};
use crate::entity_support::plain::Account;
use crate::entity_support::{
    WAIT, postgres_worker, until, until_queued, until_settled, until_state, with_runtime,
};

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

/// Locks alice and bob, waits for the event `go`, then withdraws from bob.
#[orchestrator]
async fn locked_withdraw(ctx: OrchestrationContext, _: ()) -> Result<i64, String> {
    let ids = [
        EntityId::of::<Account>("bob"),
        EntityId::of::<Account>("alice"),
    ];
    let section = ctx.lock(ids).await?;
    ctx.wait_event::<()>("go").await;
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
    until(&format!("an event in `{instance}`'s history"), || async {
        let history = store.history(instance).unwrap();
        history
            .iter()
            .find_map(&found)
            .ok_or_else(|| format!("{history:?}"))
    })
    .await
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

/// The owner of the lock `entity` holds, if it is locked.
fn lock_owner(store: &impl Store, entity: &str) -> Option<ParentLink> {
    store.instance(entity).unwrap().unwrap().parent
}

/// Deposits `amount` to `key` with a runtime that has `Account`, and waits until it ran.
fn deposited(store: &FjallStore, key: &str, amount: i64) {
    with_runtime(runtime(store).entity::<Account>(), async |client| {
        client
            .signal_entity(Account::deposit, key, amount)
            .await
            .unwrap();
        until_state(client, key, |a: &Account| *a == Account { balance: amount }).await;
    });
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

/// The call is made while no worker has `Account`; after a restart with it, the entity
/// answers (after the deposit its key was sent first) and the orchestration gets the
/// typed result: the balance left, or the operation's own `Err`.
#[test]
fn answers_reach_the_call_after_a_restart_typed() {
    let (_dir, store) = store();
    for (id, deposit, expected) in [
        ("ok", 20, "left 15"),
        ("err", 3, "refused: insufficient funds: 3"),
    ] {
        let key = format!("key-{id}");
        deposited(&store, &key, deposit);
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
        let sent = messages(&store, &format!("@Account@{key}"));
        assert!(
            matches!(&sent[..], [(_, Event::EntityCall { .. })]),
            "{sent:?}"
        );
        let got = lifetime(async {
            let runtime = runtime(&store).entity::<Account>().start().await.unwrap();
            let got = output(&runtime.client(), id).await;
            runtime.shutdown().await;
            got
        });
        assert_eq!(got, expected);
    }
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn signals_from_orchestrations_run_on_their_entity() {
    let (_dir, store) = store();
    with_runtime(runtime(&store).entity::<Account>(), async |client| {
        for i in 0..20 {
            let instance = client
                .start(tip, format!("tip-{i}"), ("carol".to_string(), 2))
                .await
                .unwrap();
            instance.wait(WAIT).await.unwrap();
        }
        until_state(client, "carol", |a: &Account| *a == Account { balance: 40 }).await;
        let history = store.history("tip-0").unwrap();
        assert!(history.iter().any(|e| matches!(
            e,
            Event::EntitySignaled { seq: 0, entity, .. } if entity == "@Account@carol"
        )));
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
}

/// The lock request goes, sorted, to the first entity; once both entities have granted
/// it, the section survives a restart (both entities still name their owner), calls bob
/// inside it, and is released once: both entities end unlocked.
#[test]
fn a_grant_opens_a_section_that_survives_a_restart_and_is_released() {
    let (_dir, store) = store();
    deposited(&store, "bob", 12);
    let owner = lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        client.start(locked_withdraw, "mover", ()).await.unwrap();
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
    // The entities grant it; the orchestration waits inside the section.
    with_runtime(runtime(&store).entity::<Account>(), async |_client| {
        until_history(&store, "mover", |e| {
            matches!(e, Event::EntityLockGranted { seq: 0 }).then_some(())
        })
        .await;
    });
    for entity in ["@Account@alice", "@Account@bob"] {
        assert_eq!(lock_owner(&store, entity), Some(owner.clone()), "{entity}");
    }
    // Restarted inside the section: it calls bob, and ends releasing both.
    with_runtime(runtime(&store).entity::<Account>(), async |client| {
        let mover = client.instance(locked_withdraw, "mover");
        mover.raise_event("go", &()).await.unwrap();
        assert_eq!(mover.wait(WAIT).await.unwrap(), 7);
        until_settled(&store, &["@Account@alice", "@Account@bob"]).await;
        assert_eq!(
            client.entity_state::<Account>("bob").await.unwrap(),
            Some(Account { balance: 7 })
        );
    });
    let history = store.history("mover").unwrap();
    let call = history.iter().find_map(|e| match e {
        Event::EntityCalled { seq, entity, .. } => Some((*seq, entity.clone())),
        _ => None,
    });
    assert_eq!(call, Some((1, "@Account@bob".to_string())));
    let releases = history
        .iter()
        .filter(|e| matches!(e, Event::EntityLocksReleased { lock_seq: 0 }))
        .count();
    assert_eq!(releases, 1, "{history:?}");
}

#[test]
fn a_terminated_orchestration_unlocks_what_it_holds_or_waits_for() {
    let (_dir, store) = store();
    with_runtime(runtime(&store), async |client| {
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
        until_queued(&store, "@Account@alice", |e| {
            matches!(e, Event::EntityUnlock { .. })
        })
        .await;
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

/// Continue-as-new from inside a granted section: the signal sent before it runs, and the
/// lock is released (alice ends unlocked, nothing left in the store).
#[test]
fn a_continue_as_new_inside_a_section_sends_the_signal_and_the_unlock() {
    let (_dir, store) = store();
    with_runtime(runtime(&store).entity::<Account>(), async |client| {
        client.start(rounds, "rounds", 0).await.unwrap();
        let output = client.instance(rounds, "rounds").wait(WAIT).await.unwrap();
        assert_eq!(output, 1);
        until_settled(&store, &["@Account@alice", "@Account@bob"]).await;
        assert_eq!(
            client.entity_state::<Account>("bob").await.unwrap(),
            Some(Account { balance: 1 })
        );
    });
}

/// On PostgreSQL with two workers that both have `Account`: the section is granted, the
/// workers restart inside it, the call runs, and after a third restart nothing is left
/// locked or queued.
#[test]
fn on_postgres_a_section_goes_through_two_workers_and_restarts() {
    let database = TestServer::shared().database();
    let worker = |url: &str| {
        postgres_worker(url, Duration::from_secs(5), |store| {
            Runtime::builder(store)
                .orchestrator(locked_withdraw)
                .entity::<Account>()
        })
    };
    let store = PostgresStore::open(database.url()).unwrap();
    let both = |go: bool, until: fn(&Event) -> bool| {
        lifetime(async {
            let a = worker(database.url()).start().await.unwrap();
            let b = worker(database.url()).start().await.unwrap();
            if store.instance("pg-mover").unwrap().is_none() {
                let client = a.client();
                client
                    .signal_entity(Account::deposit, "bob", 12)
                    .await
                    .unwrap();
                client.start(locked_withdraw, "pg-mover", ()).await.unwrap();
            }
            if go {
                b.client().raise_event("pg-mover", "go", &()).await.unwrap();
            }
            until_history(&store, "pg-mover", |e| until(e).then_some(())).await;
            a.shutdown().await;
            b.shutdown().await;
        });
    };
    both(false, |e| matches!(e, Event::EntityLockGranted { seq: 0 }));
    let record = store.instance("pg-mover").unwrap().unwrap();
    let owner = ParentLink {
        instance: "pg-mover".into(),
        incarnation: record.incarnation,
        generation: 0,
        seq: 0,
    };
    for entity in ["@Account@alice", "@Account@bob"] {
        assert_eq!(lock_owner(&store, entity), Some(owner.clone()), "{entity}");
    }
    both(true, |e| matches!(e, Event::Completed { .. }));
    assert!(matches!(
        store.instance("pg-mover").unwrap().unwrap().status,
        durable_core::record::Status::Completed { ref output } if output == b"7"
    ));
    lifetime(async {
        let a = worker(database.url()).start().await.unwrap();
        let b = worker(database.url()).start().await.unwrap();
        until_settled(&store, &["@Account@alice", "@Account@bob"]).await;
        assert_eq!(
            a.client().entity_state::<Account>("bob").await.unwrap(),
            Some(Account { balance: 7 })
        );
        a.shutdown().await;
        b.shutdown().await;
    });
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
        postgres_worker(url, Duration::from_secs(5), |store| {
            Runtime::builder(store)
                .entity::<Account>()
                .orchestrator(tip_and_call)
        })
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
        until_state(&client_a, "dora", |d: &Account| {
            *d == Account { balance: 120 }
        })
        .await;
        a.shutdown().await;
        b.shutdown().await;
    });
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
}
