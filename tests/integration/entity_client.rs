//! The client's side of entities beyond signal, read and delete: listing the entities of a
//! type a page at a time, their absence from the orchestrations' listings and counts, and
//! signals scheduled from a client.

use std::time::{Duration, Instant, UNIX_EPOCH};

use durable_core::record::{Commit, InstanceRecord, Status};
use durable_core::{
    Client, EntityQuery, EntitySummary, InstanceQuery, ManualClock, OrchestrationContext, Runtime,
    RuntimeBuilder, StatusKind, Store, entity, orchestrator,
};
use durable_store::{FjallStore, PostgresStore, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{WAIT, postgres_worker, until_state, with_runtime};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: i64,
    /// How many operations changed the state.
    applied: u64,
}

#[entity]
impl Tally {
    pub fn add(&mut self, n: i64) {
        self.total += n;
        self.applied += 1;
    }
}

#[orchestrator]
async fn quick(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

fn runtime(store: &FjallStore) -> RuntimeBuilder {
    Runtime::builder(store.clone())
        .entity::<Tally>()
        .orchestrator(quick)
}

/// The keys of every page of `query`, each page's cursor passed to the next.
async fn pages(client: &Client, query: EntityQuery) -> Vec<Vec<String>> {
    let mut query = query;
    let mut pages = Vec::new();
    loop {
        let page = client.list_entities::<Tally>(&query).await.unwrap();
        pages.push(page.entities.iter().map(|e| e.key().to_string()).collect());
        match page.next {
            Some(next) => query = query.after(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "pages never end");
    }
}

#[test]
fn entities_are_listed_by_key_a_page_at_a_time_and_not_as_orchestrations() {
    let (_dir, store) = store();
    // An entity whose stored state no longer reads as `Tally`.
    let mut broken = InstanceRecord::pending("@Tally".into(), 0, b"\"old\"".to_vec(), 1, 1, None);
    broken.status = Status::Running;
    store
        .commit(&[Commit {
            instances: vec![("@Tally@broken".into(), broken)],
            ..Commit::default()
        }])
        .unwrap();
    with_runtime(runtime(&store), async |client| {
        let done = client.start(quick, "q-1", 7).await.unwrap();
        assert_eq!(done.wait(WAIT).await.unwrap(), 7);
        for (key, n) in [("c", 3), ("a", 1), ("eu-2", 5), ("b", 2), ("eu-1", 4)] {
            client.signal_entity(Tally::add, key, n).await.unwrap();
        }
        // Made by its signal, no state until the signal runs, far in the future.
        let never = UNIX_EPOCH + Duration::from_secs(1 << 40);
        (client.signal_entity_at(Tally::add, "later", 9, never))
            .await
            .unwrap();
        for key in ["a", "b", "c", "eu-1", "eu-2"] {
            until_state::<Tally>(client, key, |t| t.applied == 1).await;
        }

        let keys = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pages(client, EntityQuery::new().page_size(2)).await,
            [
                keys(&["a", "b"]),
                keys(&["broken", "c"]),
                keys(&["eu-1", "eu-2"])
            ],
            "in key order, entities with a state only"
        );
        assert_eq!(
            pages(
                client,
                EntityQuery::new().page_size(3).include_stateless(true)
            )
            .await,
            [
                keys(&["a", "b", "broken"]),
                keys(&["c", "eu-1", "eu-2"]),
                keys(&["later"])
            ],
        );
        assert_eq!(
            pages(client, EntityQuery::new().key_prefix("eu-")).await,
            [keys(&["eu-1", "eu-2"])],
        );
        let page = client
            .list_entities::<Tally>(EntityQuery::new().include_stateless(true))
            .await
            .unwrap();
        let by_key = |key: &str| -> &EntitySummary<Tally> {
            page.entities.iter().find(|e| e.key() == key).unwrap()
        };
        let c = by_key("c");
        assert_eq!(c.id.to_string(), "@Tally@c");
        assert_eq!(
            c.state,
            Ok(Some(Tally {
                total: 3,
                applied: 1
            }))
        );
        assert_eq!(c.locked_by, None);
        assert!(c.updated_at > UNIX_EPOCH);
        assert_eq!(by_key("later").state, Ok(None));
        let broken = by_key("broken");
        assert!(broken.state.is_err(), "{:?}", broken.state);
        assert_eq!(broken.state_json().unwrap(), Some(serde_json::json!("old")));

        // The orchestrations' views hold the one orchestration, not the seven entities.
        let listed = client.list(&InstanceQuery::new()).await.unwrap();
        let ids: Vec<&str> = listed.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["q-1"]);
        let running = InstanceQuery::new()
            .status(StatusKind::Running)
            .status(StatusKind::Pending);
        assert!(client.list(&running).await.unwrap().instances.is_empty());
        let counts = client.count_by_status().await.unwrap();
        assert_eq!(counts[&StatusKind::Completed], 1);
        assert_eq!(counts[&StatusKind::Running], 0, "{counts:?}");
        assert_eq!(counts[&StatusKind::Pending], 0, "{counts:?}");
    });
}

#[test]
fn a_signal_scheduled_by_a_client_runs_at_its_time_across_a_restart() {
    let (_dir, store) = store();
    let start = UNIX_EPOCH + Duration::from_secs(1_000);
    let at = UNIX_EPOCH + Duration::from_secs(2_000);
    lifetime(async {
        let clock = ManualClock::new(start);
        let runtime = runtime(&store).clock(clock.clone()).start().await.unwrap();
        let client = runtime.client();
        client
            .signal_entity_at(Tally::add, "erin", 5, at)
            .await
            .unwrap();
        client.signal_entity(Tally::add, "erin", 1).await.unwrap();
        // The signal sent after it ran; the scheduled one waits for its time.
        until_state::<Tally>(&client, "erin", |t| t.applied == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock.advance(Duration::from_secs(999));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let erin = client.entity_state::<Tally>("erin").await.unwrap().unwrap();
        assert_eq!(erin.total, 1, "a scheduled signal ran early");
        runtime.shutdown().await;
    });
    // Durable: a new process finds it in the store, and runs it at its time.
    lifetime(async {
        let clock = ManualClock::new(start + Duration::from_secs(999));
        let runtime = runtime(&store).clock(clock.clone()).start().await.unwrap();
        let client = runtime.client();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let erin = client.entity_state::<Tally>("erin").await.unwrap().unwrap();
        assert_eq!(
            erin.total, 1,
            "a scheduled signal ran early after a restart"
        );
        clock.advance(Duration::from_secs(1));
        let erin = until_state::<Tally>(&client, "erin", |t| t.applied == 2).await;
        assert_eq!(erin.total, 6);
        // A time already past runs at once.
        client
            .signal_entity_at(Tally::add, "erin", 10, start)
            .await
            .unwrap();
        let erin = until_state::<Tally>(&client, "erin", |t| t.applied == 3).await;
        assert_eq!(erin.total, 16);
        runtime.shutdown().await;
    });
    assert_eq!(store.work_items().unwrap(), vec![]);
}

#[test]
fn cleaning_removes_empty_entities_no_worker_holds_and_keeps_every_operation() {
    let (_dir, store) = store();
    let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
    with_runtime(runtime(&store), async |client| {
        client.signal_entity(Tally::add, "kept", 1).await.unwrap();
        client.signal_entity(Tally::add, "gone", 2).await.unwrap();
        assert!(client.delete_entity::<Tally>("gone").await.unwrap());
        (client.signal_entity_at(Tally::add, "later", 3, far))
            .await
            .unwrap();
        until_state::<Tally>(client, "kept", |t| t.applied == 1).await;
        let start = Instant::now();
        while client
            .entity_state::<Tally>("gone")
            .await
            .unwrap()
            .is_some()
        {
            assert!(start.elapsed() < WAIT, "the delete never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // This worker holds the entities it ran: none is removed while it runs.
        assert_eq!(client.clean_entity_storage().await.unwrap(), 0);
    });
    with_runtime(runtime(&store), async |client| {
        // `gone`: no state, no message; `later` has none but a scheduled signal waits.
        assert_eq!(client.clean_entity_storage().await.unwrap(), 1);
        assert_eq!(client.clean_entity_storage().await.unwrap(), 0);
        assert_eq!(store.instance("@Tally@gone").unwrap(), None);
        let all = EntityQuery::new().include_stateless(true);
        let page = client.list_entities::<Tally>(&all).await.unwrap();
        let keys: Vec<&str> = page.entities.iter().map(|e| e.key()).collect();
        assert_eq!(keys, ["kept", "later"]);
        // Operated on again, it is made again, from nothing.
        client.signal_entity(Tally::add, "gone", 5).await.unwrap();
        let gone = until_state::<Tally>(client, "gone", |t| t.applied == 1).await;
        assert_eq!(gone.total, 5);
    });
}

/// Signals to an empty entity no worker holds, sent while cleans run: whether a clean
/// removes the entity before a signal's commit (which then makes it again) or after
/// (when the signal's message keeps it), every signal runs once.
#[test]
fn signals_sent_while_cleans_run_are_never_lost() {
    let (_dir, store) = store();
    with_runtime(runtime(&store), async |client| {
        for key in ["x", "y"] {
            client.signal_entity(Tally::add, key, 1).await.unwrap();
            assert!(client.delete_entity::<Tally>(key).await.unwrap());
        }
        let start = Instant::now();
        for key in ["x", "y"] {
            while !(store
                .instance(&format!("@Tally@{key}"))
                .unwrap()
                .unwrap()
                .input)
                .is_empty()
            {
                assert!(start.elapsed() < WAIT, "the delete never ran");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        const SIGNALS: u64 = 200;
        let cleaner = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut removed = 0;
                for _ in 0..50 {
                    removed += client.clean_entity_storage().await.unwrap();
                    tokio::task::yield_now().await;
                }
                removed
            })
        };
        let mut sends = tokio::task::JoinSet::new();
        for n in 0..SIGNALS {
            let client = client.clone();
            let key = if n % 2 == 0 { "x" } else { "y" };
            sends.spawn(async move { client.signal_entity(Tally::add, key, 1).await });
        }
        while let Some(sent) = sends.join_next().await {
            sent.unwrap().unwrap();
        }
        // How many cleans removed an entity between two signals (most runs: 1 or 2).
        let _removed: usize = cleaner.await.unwrap();
        for key in ["x", "y"] {
            let tally = until_state::<Tally>(&client, key, |t| t.applied >= SIGNALS / 2).await;
            assert_eq!(tally.applied, SIGNALS / 2, "`{key}` ran a signal twice");
        }
        runtime.shutdown().await;
    });
}

fn postgres_runtime(url: &str) -> RuntimeBuilder {
    postgres_worker(url, Duration::from_secs(5), |store| {
        Runtime::builder(store).entity::<Tally>()
    })
}

/// On PostgreSQL, two workers signal empty entities no worker holds, and clean, at once:
/// the row locks of the clean and of the senders' expectations order them, and every
/// signal runs once.
#[test]
fn on_postgres_signals_from_two_workers_survive_cleans_from_both() {
    const KEYS: usize = 40;
    const EACH: u64 = 2;
    let database = TestServer::shared().database();
    // Empty entities, as a delete leaves them, that no worker holds.
    let store = PostgresStore::open(database.url()).unwrap();
    let empty = InstanceRecord::pending("@Tally".into(), 0, Vec::new(), 1, 1, None);
    let instances = (0..KEYS)
        .map(|k| (format!("@Tally@k{k}"), empty.clone()))
        .collect();
    store
        .commit(&[Commit {
            instances,
            ..Commit::default()
        }])
        .unwrap();
    lifetime(async {
        let one = postgres_runtime(database.url()).start().await.unwrap();
        let two = postgres_runtime(database.url()).start().await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for client in [one.client(), two.client()] {
            let cleaner = client.clone();
            tasks.spawn(async move {
                for _ in 0..20 {
                    cleaner.clean_entity_storage().await.unwrap();
                }
            });
            for k in 0..KEYS {
                for _ in 0..EACH {
                    let client = client.clone();
                    let key = format!("k{k}");
                    tasks.spawn(async move {
                        client.signal_entity(Tally::add, key, 1).await.unwrap();
                    });
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let client = one.client();
        for k in 0..KEYS {
            let key = format!("k{k}");
            let tally = until_state::<Tally>(&client, &key, |t| t.applied >= 2 * EACH).await;
            assert_eq!(tally.applied, 2 * EACH, "`{key}` ran a signal twice");
        }
        one.shutdown().await;
        two.shutdown().await;
    });
}
