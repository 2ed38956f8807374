//! Adversarial review of the client side of entities (issue 14): listing, counts, and
//! cleans around orchestrations whose names or ids look like entities'.

use std::time::{Duration, Instant};

use durable_core::record::{Commit, InstanceRecord};
use durable_core::{
    EntityId, EntityQuery, Error, InstanceQuery, InvalidIdReason, OrchestrationContext, Runtime,
    RuntimeBuilder, Store, entity, orchestrator,
};
use durable_store::{FjallStore, PostgresStore, TestServer};
use serde::{Deserialize, Serialize};

use crate::common::{lifetime, store};
use crate::entity_support::{WAIT, until_state};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Count {
    total: i64,
    applied: u64,
}

#[entity]
impl Count {
    pub fn add(&mut self, n: i64) {
        self.total += n;
        self.applied += 1;
    }
}

#[orchestrator]
async fn plain(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

fn runtime(store: &FjallStore) -> RuntimeBuilder {
    Runtime::builder(store.clone())
        .entity::<Count>()
        .orchestrator(plain)
}

/// A client starting an orchestration under an entity's id (`@Count@zed`) is refused: the
/// id stays the entity's, and a signal to it runs.
#[test]
fn an_orchestration_under_an_entity_id_does_not_swallow_the_entity_signals() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        let started = client.start(plain, "@Count@zed", 3).await;
        assert!(
            matches!(
                &started,
                Err(Error::InvalidInstanceId {
                    reason: InvalidIdReason::EntityForm,
                    ..
                })
            ),
            "{:?}",
            started.map(|_| ())
        );
        client.signal_entity(Count::add, "zed", 1).await.unwrap();
        let state = until_state(&client, "zed", |c: &Count| c.applied == 1).await;
        assert_eq!(state.total, 1);
        runtime.shutdown().await;
    });
}

/// Keys with `@`, unicode, keys that are prefixes of others, and an entity type whose
/// name is a prefix of another's: each page in byte order, no key skipped or repeated,
/// while entities are made between pages.
#[test]
fn pages_neither_skip_nor_repeat_odd_keys_while_entities_are_made() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).entity::<CountTwo>().start().await.unwrap();
        let client = runtime.client();
        let keys = [
            "a", "a@", "a@b", "ab", "é", "日本", "a b", "", "@", "a\u{7f}x",
        ];
        let mut sent = Vec::new();
        for key in keys {
            if client.signal_entity(Count::add, key, 1).await.is_ok() {
                sent.push(key.to_string());
            }
            client.signal_entity(CountTwo::add, key, 1).await.ok();
        }
        for key in &sent {
            until_state(&client, key, |c: &Count| c.applied == 1).await;
        }
        let mut seen = Vec::new();
        let mut query = EntityQuery::new().page_size(1).include_stateless(true);
        let mut made = 0;
        loop {
            let page = client.list_entities::<Count>(&query).await.unwrap();
            seen.extend(page.entities.iter().map(|e| e.key().to_string()));
            // Made behind the cursor and ahead of it.
            made += 1;
            client
                .signal_entity(Count::add, format!("zz{made}"), 1)
                .await
                .unwrap();
            match page.next {
                Some(next) => query = query.after(next),
                None => break,
            }
            assert!(seen.len() < 100);
        }
        let mut want = sent.clone();
        want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let listed: Vec<String> = seen
            .iter()
            .filter(|k| !k.starts_with("zz"))
            .cloned()
            .collect();
        assert_eq!(listed, want, "every key once, in byte order");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        sorted.dedup();
        assert_eq!(seen, sorted, "a key repeated or out of order");
        let prefixed = client
            .list_entities::<Count>(EntityQuery::new().key_prefix("a@"))
            .await
            .unwrap();
        let keys: Vec<&str> = prefixed.entities.iter().map(|e| e.key()).collect();
        assert_eq!(keys, ["a@", "a@b"]);
        runtime.shutdown().await;
    });
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct CountTwo {
    total: i64,
}

#[entity(name = "CountT")]
impl CountTwo {
    pub fn add(&mut self, n: i64) {
        self.total += n;
    }
}

#[orchestrator]
async fn signaller(ctx: OrchestrationContext, key: String) -> Result<bool, String> {
    // Refused: the id is an entity's.
    let child = ctx
        .sub_orchestration_with_id(plain, format!("@Count@{key}"), 3)
        .await;
    ctx.signal_entity(Count::add, key, 1)
        .map_err(|e| e.to_string())?;
    Ok(child.is_err())
}

/// An orchestration's sub-orchestration under an entity's id is refused (it fails), and
/// a signal to that entity then runs: the id stays the entity's.
#[test]
fn a_sub_orchestration_under_an_entity_id_is_refused_and_the_entity_keeps_it() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store)
            .orchestrator(signaller)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let sender = client
            .start(signaller, "s-1", "zed".to_string())
            .await
            .unwrap();
        assert!(
            sender.wait(WAIT).await.unwrap(),
            "the child was not refused"
        );
        let state = until_state(&client, "zed", |c: &Count| c.applied == 1).await;
        assert_eq!(state.total, 1);
        runtime.shutdown().await;
    });
}

#[orchestrator]
async fn section(ctx: OrchestrationContext, keys: (String, String)) -> Result<i64, String> {
    let first = EntityId::of::<Count>(keys.0.clone());
    let second = EntityId::of::<Count>(keys.1);
    let held = ctx.lock([first, second]).await.map_err(|e| e.to_string())?;
    held.release();
    ctx.call_entity(Count::add, keys.0, 1)
        .await
        .map_err(|e| e.to_string())?;
    Ok(1)
}

fn postgres_runtime(url: &str) -> RuntimeBuilder {
    Runtime::builder(PostgresStore::open(url).unwrap())
        .entity::<Count>()
        .orchestrator(section)
        .lease(Duration::from_secs(5))
}

/// On PostgreSQL with two workers cleaning all the while: critical sections over empty
/// entities no worker holds (lock requests passed on, unlocks), calls and their answers,
/// and scheduled signals waiting in the store each happen once; then a worker that held
/// entities leaves, the other removes them, and a signal makes one again.
#[test]
fn on_postgres_sections_calls_and_scheduled_signals_survive_cleans() {
    const KEYS: usize = 16;
    let database = TestServer::shared().database();
    let store = PostgresStore::open(database.url()).unwrap();
    let empty = InstanceRecord::pending("@Count".into(), 0, Vec::new(), 1, 1, None);
    let instances = (0..KEYS)
        .map(|k| (format!("@Count@k{k}"), empty.clone()))
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
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut cleaners = tokio::task::JoinSet::new();
        for client in [one.client(), two.client()] {
            let stop = stop.clone();
            cleaners.spawn(async move {
                let mut removed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    removed += client.clean_entity_storage().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                removed
            });
        }
        let soon = std::time::SystemTime::now() + Duration::from_millis(700);
        let mut sections = Vec::new();
        for k in 0..KEYS {
            let client = if k % 2 == 0 {
                one.client()
            } else {
                two.client()
            };
            client
                .signal_entity_at(Count::add, format!("k{k}"), 10, soon)
                .await
                .unwrap();
            let keys = (format!("k{k}"), format!("k{}", (k + 1) % KEYS));
            sections.push(client.start(section, format!("s-{k}"), keys).await.unwrap());
        }
        for instance in sections {
            assert_eq!(instance.wait(WAIT).await.unwrap(), 1);
        }
        let client = one.client();
        for k in 0..KEYS {
            let key = format!("k{k}");
            let count = until_state(&client, &key, |c: &Count| c.applied >= 2).await;
            assert_eq!((count.applied, count.total), (2, 11), "`{key}`");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(done) = cleaners.join_next().await {
            done.unwrap();
        }
        let all = client
            .list_entities::<Count>(EntityQuery::new().include_stateless(true))
            .await
            .unwrap();
        assert_eq!(all.entities.len(), KEYS);
        assert!(all.entities.iter().all(|e| e.locked_by.is_none()));
        // Emptied, held by the workers that ran them.
        for k in 0..KEYS {
            assert!(
                client
                    .delete_entity::<Count>(format!("k{k}"))
                    .await
                    .unwrap()
            );
        }
        let start = Instant::now();
        while client.entity_state::<Count>("k0").await.unwrap().is_some()
            || client.entity_state::<Count>("k1").await.unwrap().is_some()
        {
            assert!(start.elapsed() < WAIT, "the deletes never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        one.shutdown().await;
        // `two` removes what `one` held once it left, not what it holds itself.
        let client = two.client();
        let removed = client.clean_entity_storage().await.unwrap();
        assert!(removed > 0 && removed < KEYS, "removed {removed}");
        client.signal_entity(Count::add, "k0", 5).await.unwrap();
        client.signal_entity(Count::add, "k1", 5).await.unwrap();
        for key in ["k0", "k1"] {
            let count = until_state(&client, key, |c: &Count| c.applied >= 1).await;
            assert_eq!((count.applied, count.total), (1, 5), "`{key}`");
        }
        two.shutdown().await;
    });
}

/// A database of schema version 3 holding entities and orchestrations, opened by this
/// build: migrated to version 4 in place; the listings and counts hold the orchestrations
/// only, and the entities list and run as before.
#[test]
fn a_postgres_database_of_version_3_with_entities_is_migrated() {
    let database = TestServer::shared().database();
    lifetime(async {
        let runtime = postgres_runtime(database.url())
            .orchestrator(plain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let done = client.start(plain, "p-1", 2).await.unwrap();
        assert_eq!(done.wait(WAIT).await.unwrap(), 2);
        client.signal_entity(Count::add, "old", 4).await.unwrap();
        until_state(&client, "old", |c: &Count| c.applied == 1).await;
        runtime.shutdown().await;
    });
    // Back to version 3: the indexes whole, no statistics.
    let url = database.url().to_string();
    std::thread::spawn(move || {
        let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        sql.batch_execute(
            "DROP INDEX durable.instances_by_status;
             DROP INDEX durable.instances_by_created;
             DROP STATISTICS durable.instances_kind;
             CREATE INDEX instances_by_status ON durable.instances (status, created_ms);
             CREATE INDEX instances_by_created ON durable.instances (created_ms);
             UPDATE durable.meta SET value = '3' WHERE key = 'schema_version';",
        )
        .unwrap();
    })
    .join()
    .unwrap();
    lifetime(async {
        let runtime = postgres_runtime(database.url())
            .orchestrator(plain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let listed = client.list(&InstanceQuery::new()).await.unwrap();
        let ids: Vec<&str> = listed.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["p-1"]);
        let counts = client.count_by_status().await.unwrap();
        assert_eq!(counts.values().sum::<u64>(), 1, "{counts:?}");
        let page = client
            .list_entities::<Count>(EntityQuery::new())
            .await
            .unwrap();
        let keys: Vec<&str> = page.entities.iter().map(|e| e.key()).collect();
        assert_eq!(keys, ["old"]);
        client.signal_entity(Count::add, "old", 1).await.unwrap();
        let count = until_state(&client, "old", |c: &Count| c.applied == 2).await;
        assert_eq!(count.total, 5);
        runtime.shutdown().await;
    });
    let url = database.url().to_string();
    let (version, partial) = std::thread::spawn(move || {
        let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let version: String = sql
            .query_one(
                "SELECT value FROM durable.meta WHERE key = 'schema_version'",
                &[],
            )
            .unwrap()
            .get(0);
        let partial: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'durable' \
                 AND indexname IN ('instances_by_status', 'instances_by_created') \
                 AND indexdef LIKE '%WHERE%'",
                &[],
            )
            .unwrap()
            .get(0);
        (version, partial)
    })
    .join()
    .unwrap();
    assert_eq!((version.as_str(), partial), ("5", 2));
}

/// `page_size(usize::MAX)`, "everything in one page", lists every entity in one page.
#[test]
fn the_largest_page_size_lists_every_entity_in_one_page() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = runtime(&store).start().await.unwrap();
        let client = runtime.client();
        for key in ["a", "b", "c"] {
            client.signal_entity(Count::add, key, 1).await.unwrap();
        }
        for key in ["a", "b", "c"] {
            until_state(&client, key, |c: &Count| c.applied == 1).await;
        }
        let page = client
            .list_entities::<Count>(EntityQuery::new().page_size(usize::MAX))
            .await
            .unwrap();
        let keys: Vec<&str> = page.entities.iter().map(|e| e.key()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(page.next, None);
        runtime.shutdown().await;
    });
}
