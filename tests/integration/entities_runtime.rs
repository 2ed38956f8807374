//! Entities run by the runtime: signals from clients and from other entities, many
//! operations in one turn and one commit, failed operations that change nothing, restarts,
//! and several workers on one PostgreSQL database applying each operation exactly once.

use std::time::{Duration, UNIX_EPOCH};

use durable_core::{
    Client, Error, ManualClock, OrchestrationContext, Runtime, RuntimeBuilder, Store, entity,
    orchestrator,
};
use durable_store::{FjallStore, PostgresStore, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{
    Account, account_runtime, deposit, postgres_worker, until_state, with_runtime,
};

fn fjall_runtime(store: &FjallStore) -> RuntimeBuilder {
    account_runtime(store.clone())
}

/// Sends `n` deposits of 1 to `key` from `client`, all at once.
async fn deposits(client: &Client, key: &str, n: usize) {
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, key) = (client.clone(), key.to_string());
        sends.spawn(async move {
            client
                .signal_entity(Account::deposit, key.as_str(), 1)
                .await
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }
}

#[test]
fn a_thousand_signals_to_one_entity_run_in_few_turns() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = fjall_runtime(&store).start().await.unwrap();
        let client = runtime.client();
        assert_eq!(client.entity_state::<Account>("alice").await.unwrap(), None);
        deposits(&client, "alice", 1_000).await;
        let state = until_state::<Account>(&client, "alice", |a| a.applied >= 1_000).await;
        assert_eq!(
            state,
            Account {
                balance: 1_000,
                applied: 1_000
            }
        );
        // One commit per signal, and the turns: operations queued for one entity share
        // a turn and its commit (3 turns on a quiet machine).
        let turns = runtime.commit_stats().commits - 1_000;
        assert!(turns <= 100, "1,000 signals took {turns} turns");
        runtime.shutdown().await;
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
    // The state is JSON in the entity's record, under its id `@Account@alice`.
    let record = store.instance("@Account@alice").unwrap().unwrap();
    assert_eq!(record.orchestrator, "@Account");
    assert_eq!(record.history_len, 0, "an entity has no history");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&record.input).unwrap(),
        serde_json::json!({"balance": 1000, "applied": 1000})
    );
}

#[test]
fn entities_signal_each_other_and_a_failed_operation_changes_nothing() {
    let (_dir, store) = store();
    with_runtime(fjall_runtime(&store), async |client| {
        deposit(client, "alice", 100).await;
        // Short of funds: refused, nothing moves.
        client
            .signal_entity(Account::transfer, "alice", ("bob".to_string(), 500))
            .await
            .unwrap();
        client
            .signal_entity(Account::explode, "alice", ())
            .await
            .unwrap();
        client
            .signal_entity(Account::withdraw, "alice", 1_000)
            .await
            .unwrap();
        client
            .signal_entity(Account::transfer, "alice", ("bob".to_string(), 30))
            .await
            .unwrap();
        client
            .signal_entity(Account::balance, "alice", ())
            .await
            .unwrap();
        let bob = until_state::<Account>(client, "bob", |b| b.applied == 1).await;
        assert_eq!(bob.balance, 30, "bob was made by alice's signal");
        let alice = until_state::<Account>(client, "alice", |a| a.applied == 2).await;
        assert_eq!(
            alice,
            Account {
                balance: 70,
                applied: 2
            },
            "the failed operations left the state as it was"
        );
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn a_restarted_runtime_keeps_the_state_and_runs_the_queued_operations() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = fjall_runtime(&store).start().await.unwrap();
        let client = runtime.client();
        deposits(&client, "carol", 50).await;
        until_state::<Account>(&client, "carol", |c| c.applied == 50).await;
        // Queued, and the process ends at once: some may not have run.
        deposits(&client, "carol", 25).await;
    });
    with_runtime(fjall_runtime(&store), async |client| {
        let carol = until_state::<Account>(client, "carol", |c| c.applied >= 75).await;
        assert_eq!(
            carol,
            Account {
                balance: 75,
                applied: 75
            }
        );
    });
}

#[test]
fn deleting_an_entity_resets_its_state_after_the_operations_before_it() {
    let (_dir, store) = store();
    with_runtime(fjall_runtime(&store), async |client| {
        assert!(!client.delete_entity::<Account>("dave").await.unwrap());
        deposits(client, "dave", 5).await;
        assert!(client.delete_entity::<Account>("dave").await.unwrap());
        deposit(client, "dave", 7).await;
        let dave = until_state::<Account>(client, "dave", |d| d.balance == 7).await;
        assert_eq!(dave.applied, 1, "the deposits before the delete are gone");
    });
}

#[test]
fn a_scheduled_signal_runs_at_its_time_and_not_before() {
    let (_dir, store) = store();
    lifetime(async {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
        let runtime = fjall_runtime(&store)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .signal_entity(Account::pay_later, "erin", (5, 2_000))
            .await
            .unwrap();
        deposit(&client, "erin", 1).await;
        // The deposit sent after it ran; the scheduled one waits for its time.
        until_state::<Account>(&client, "erin", |e| e.applied == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let erin = client
            .entity_state::<Account>("erin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(erin.balance, 1, "a scheduled signal ran early");
        clock.advance(Duration::from_secs(1_000));
        let erin = until_state::<Account>(&client, "erin", |e| e.applied == 2).await;
        assert_eq!(erin.balance, 6);
        runtime.shutdown().await;
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[orchestrator]
async fn noop(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[test]
fn an_entity_is_not_waited_on_terminated_or_purged_as_an_orchestration() {
    let (_dir, store) = store();
    with_runtime(fjall_runtime(&store).orchestrator(noop), async |client| {
        deposit(client, "frank", 1).await;
        until_state::<Account>(client, "frank", |f| f.applied == 1).await;
        let waited = client
            .instance(noop, "@Account@frank")
            .wait(Duration::from_secs(5))
            .await;
        assert!(
            matches!(&waited, Err(Error::IsAnEntity(id)) if id == "@Account@frank"),
            "{waited:?}"
        );
        let terminated = client.terminate("@Account@frank", "no").await;
        assert!(
            matches!(&terminated, Err(Error::IsAnEntity(_))),
            "{terminated:?}"
        );
        let purged = client.purge("@Account@frank").await;
        assert!(matches!(&purged, Err(Error::IsAnEntity(_))), "{purged:?}");
    });
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Unregistered {
    n: u64,
}

#[entity]
impl Unregistered {
    pub fn bump(&mut self) {
        self.n += 1;
    }
}

#[test]
fn signalling_an_entity_type_the_runtime_does_not_have_is_refused() {
    let (_dir, store) = store();
    with_runtime(fjall_runtime(&store), async |client| {
        let refused = client.signal_entity(Unregistered::bump, "x", ()).await;
        assert!(
            matches!(&refused, Err(Error::UnregisteredEntity(name)) if name == "Unregistered"),
            "{refused:?}"
        );
    });
}

fn postgres_runtime(url: &str) -> RuntimeBuilder {
    postgres_worker(url, Duration::from_secs(5), account_runtime)
}

#[test]
fn on_postgres_signals_run_in_few_turns_and_entities_signal_each_other() {
    let database = TestServer::shared().database();
    lifetime(async {
        let runtime = postgres_runtime(database.url()).start().await.unwrap();
        let client = runtime.client();
        deposits(&client, "alice", 1_000).await;
        let alice = until_state::<Account>(&client, "alice", |a| a.applied >= 1_000).await;
        assert_eq!(alice.balance, 1_000);
        let turns = runtime.commit_stats().commits - 1_000;
        assert!(turns <= 100, "1,000 signals took {turns} turns");
        client
            .signal_entity(Account::transfer, "alice", ("bob".to_string(), 400))
            .await
            .unwrap();
        let bob = until_state::<Account>(&client, "bob", |b| b.applied == 1).await;
        assert_eq!(bob.balance, 400);
        runtime.shutdown().await;
    });
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn on_postgres_two_workers_apply_every_operation_exactly_once() {
    let database = TestServer::shared().database();
    lifetime(async {
        let a = postgres_runtime(database.url()).start().await.unwrap();
        let b = postgres_runtime(database.url()).start().await.unwrap();
        let (client_a, client_b) = (a.client(), b.client());
        tokio::join!(
            deposits(&client_a, "shared", 300),
            deposits(&client_b, "shared", 300)
        );
        let shared = until_state::<Account>(&client_a, "shared", |s| s.applied >= 600).await;
        assert_eq!(
            shared,
            Account {
                balance: 600,
                applied: 600
            }
        );
        a.shutdown().await;
        b.shutdown().await;
    });
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(store.work_items().unwrap(), vec![]);
    let record = store.instance("@Account@shared").unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&record.input).unwrap(),
        serde_json::json!({"balance": 600, "applied": 600})
    );
    // Readable in psql: the state is the `input` column of the entity's row.
    let url = database.url().to_owned();
    let (orchestrator, balance): (String, String) = std::thread::spawn(move || {
        let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let row = sql
            .query_one(
                "SELECT orchestrator, input->>'balance' FROM durable.instances \
                 WHERE convert_from(id, 'UTF8') = '@Account@shared'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    })
    .join()
    .unwrap();
    assert_eq!(
        (orchestrator.as_str(), balance.as_str()),
        ("@Account", "600")
    );
}

#[test]
fn on_postgres_a_worker_without_the_entity_type_leaves_its_entities_to_one_with_it() {
    let database = TestServer::shared().database();
    lifetime(async {
        // A worker without `Account`: it must never take an account.
        let other = Runtime::builder(PostgresStore::open(database.url()).unwrap())
            .orchestrator(noop)
            .lease(Duration::from_secs(5))
            .start()
            .await
            .unwrap();
        let refused = (other.client())
            .signal_entity(Account::deposit, "gina", 1)
            .await;
        assert!(
            matches!(refused, Err(Error::UnregisteredEntity(_))),
            "{refused:?}"
        );
        let first = postgres_runtime(database.url()).start().await.unwrap();
        deposits(&first.client(), "gina", 50).await;
        // Gone with operations possibly queued: they are the other worker's to claim,
        // and it leaves them.
        first.shutdown().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = postgres_runtime(database.url()).start().await.unwrap();
        let gina = until_state::<Account>(&second.client(), "gina", |g| g.applied >= 50).await;
        assert_eq!(gina.balance, 50);
        second.shutdown().await;
        other.shutdown().await;
    });
}
