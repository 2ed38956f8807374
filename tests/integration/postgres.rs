//! The runtime on `PostgresStore` (a throwaway server of `durable_store::TestServer`):
//! activities, timers, events, sub-orchestrations and continue-as-new end to end, and an
//! instance that goes on in a second process lifetime from what the database kept.

use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use durable_store::{PostgresStore, Store, TestServer};

use crate::common::lifetime;

const WAIT: Duration = Duration::from_secs(60);

fn store() -> PostgresStore {
    PostgresStore::open(TestServer::shared().database().url()).unwrap()
}

#[activity]
async fn add(_ctx: ActivityContext, (a, b): (u64, u64)) -> Result<u64, String> {
    Ok(a + b)
}

/// Counts to `n` by one generation per step.
#[orchestrator]
async fn count_up(ctx: OrchestrationContext, (i, n): (u64, u64)) -> Result<u64, String> {
    if i < n {
        let next = ctx.call(add, (i, 1)).await?;
        return ctx.continue_as_new((next, n)).await;
    }
    Ok(i)
}

/// Adds in three steps, naps on a durable timer, counts up in a child, then waits for an
/// event.
#[orchestrator]
async fn tour(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let a = ctx.call(add, (x, 1)).await?;
    let b = ctx.call(add, (a, 2)).await?;
    let c = ctx.call(add, (b, 3)).await?;
    ctx.sleep(Duration::from_millis(20)).await;
    let counted = ctx.sub_orchestration(count_up, (0, 3)).await?;
    let bonus = ctx.wait_event::<u64>("bonus").await;
    Ok(c + counted + bonus)
}

fn runtime(store: PostgresStore) -> durable_core::RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(tour)
        .orchestrator(count_up)
        .activity(add)
}

#[test]
fn orchestrations_run_end_to_end_on_postgres() {
    let store = store();
    lifetime(async {
        let runtime = runtime(store.clone()).start().await.unwrap();
        let client = runtime.client();
        let mut instances = Vec::new();
        for i in 0..20 {
            instances.push(client.start(tour, format!("tour-{i}"), i).await.unwrap());
        }
        for (i, instance) in (0..).zip(&instances) {
            instance.raise_event("bonus", &(100 * i)).await.unwrap();
        }
        for (i, instance) in (0..).zip(instances) {
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 6 + 3 + 100 * i);
        }
        runtime.shutdown().await;
    });
    assert_eq!(
        store.work_items().unwrap(),
        vec![],
        "every work item was consumed"
    );
}

#[test]
fn an_instance_goes_on_in_the_next_lifetime_from_the_database() {
    let database = TestServer::shared().database();
    let open = || PostgresStore::open(database.url()).unwrap();
    lifetime(async {
        let runtime = runtime(open()).start().await.unwrap();
        runtime.client().start(tour, "waiting", 1).await.unwrap();
        // It waits for its event once its history holds the wait's turn.
        let store = open();
        let deadline = std::time::Instant::now() + WAIT;
        while !store.history("waiting").unwrap().iter().any(|e| {
            matches!(
                e,
                durable_core::record::Event::SubOrchestrationCompleted { .. }
            )
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never finished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    lifetime(async {
        let runtime = runtime(open()).start().await.unwrap();
        let instance = runtime.client().instance(tour, "waiting");
        instance.raise_event("bonus", &1000).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 1 + 6 + 3 + 1000);
        runtime.shutdown().await;
    });
}
