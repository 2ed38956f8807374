//! The runtime and client end to end, on a real fjall store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable_core::record::{Event, FailureKind, WorkItem};
use durable_core::{
    ActivityContext, Error, FjallStore, InstanceStatus, OrchestrationContext, Runtime,
    RuntimeBuilder, Store, activity, orchestrator,
};
use tokio::sync::Semaphore;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_completes_with_its_typed_output() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let client = runtime.client();
    let instance = client.start(chain, "order-1", 5).await.unwrap();
    assert!(instance.is_new());
    assert_eq!(instance.wait(WAIT).await.unwrap(), 30);
    assert_eq!(
        instance.status().await.unwrap(),
        InstanceStatus::Completed(30)
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_existing_id_returns_that_instance() {
    let (_dir, store) = store();
    let (builder, calls) = counting_builder(store);
    let runtime = builder.start().await.unwrap();
    let client = runtime.client();
    let (a, b) = tokio::join!(
        client.start(chain, "same", 1),
        client.start(chain, "same", 1)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.is_new() != b.is_new(),
        "exactly one start creates the instance"
    );
    assert_eq!(a.wait(WAIT).await.unwrap(), 6);
    let again = client.start(chain, "same", 1).await.unwrap();
    assert!(!again.is_new());
    assert_eq!(again.wait(WAIT).await.unwrap(), 6);
    assert_eq!(calls.count(), 2, "double and triple ran once each");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_taken_by_another_orchestrator_is_a_conflict() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let client = runtime.client();
    client.start(chain, "taken", 1).await.unwrap();
    let err = client
        .start(careful, "taken", Risk::Refuse)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InstanceConflict { .. }), "{err:?}");
    assert!(
        err.to_string().contains("choose another instance id"),
        "{err}"
    );
    runtime.shutdown().await;
}

#[orchestrator]
pub async fn never_registered(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_unregistered_orchestrator_is_a_typed_error() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let err = runtime
        .client()
        .start(never_registered, "x", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnregisteredOrchestrator(name) if name == "never_registered"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("RuntimeBuilder::orchestrator"),
        "{err}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_instance_ids_are_refused() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let client = runtime.client();
    for id in [String::new(), "a\nb".to_string(), "x".repeat(300)] {
        let err = client.start(chain, id.clone(), 1).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInstanceId { .. }),
            "{id:?}: {err:?}"
        );
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_activity_reaches_the_orchestrator_and_the_worker_goes_on() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let client = runtime.client();
    let output = client
        .start(careful, "panics", Risk::Panic)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(
        output,
        "compensated `explode` attempt 1 panic=true error=None: exploded on 7"
    );
    // The same workers still run other instances.
    assert_eq!(
        client
            .start(chain, "after", 2)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap(),
        12
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_error_arrives_typed() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let output = runtime
        .client()
        .start(careful, "refuses", Risk::Refuse)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(
        output,
        "compensated `refuse` attempt 1 panic=false error=Some(TooBig { limit: 6 }): too big: limit is 6"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_error_fails_the_instance_with_its_message() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let instance = runtime
        .client()
        .start(careful, "gives-up", Risk::Uncaught)
        .await
        .unwrap();
    let err = instance.wait(WAIT).await.unwrap_err();
    let Error::Failed { id, failure } = &err else {
        panic!("expected a failed instance, got {err:?}");
    };
    assert_eq!(id, "gives-up");
    assert_eq!(
        failure.message,
        "gave up: activity `refuse` failed on attempt 1: too big: limit is 6"
    );
    assert!(matches!(failure.kind, FailureKind::Returned { .. }));
    assert!(matches!(
        instance.status().await.unwrap(),
        InstanceStatus::Failed(_)
    ));
    runtime.shutdown().await;
}

#[orchestrator]
async fn slow(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(crate::restart::wait_at_gate, n).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_the_timeout_is_a_typed_error() {
    let (_dir, store) = store();
    let runtime = gated(&store, false)
        .orchestrator(slow)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(slow, "slow", 1).await.unwrap();
    let err = instance.wait(Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_turns_share_fsyncs() {
    let (_dir, store) = store();
    let runtime = builder(store).start().await.unwrap();
    let client = runtime.client();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let client = client.clone();
        starts.spawn(async move {
            let instance = client.start(chain, format!("many-{i}"), i).await.unwrap();
            assert_eq!(instance.wait(WAIT).await.unwrap(), i * 6);
        });
    }
    while let Some(done) = starts.join_next().await {
        done.unwrap();
    }
    let stats = runtime.commit_stats();
    // 200 starts + 200 × 3 turns = 800 commits (an activity result is recorded by the
    // turn that takes it, not by a commit of its own).
    assert!(stats.commits >= 800, "{stats:?}");
    assert!(
        stats.writes < stats.commits / 2,
        "group commit shares fsyncs: {stats:?}"
    );
    // Every instance stayed in the cache between its turns: nothing was replayed.
    assert_eq!(runtime.replay_count(), 0);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_instances_are_replayed_and_finish() {
    let (_dir, store) = store();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let runtime = held_builder(store.clone(), &gate, &runs)
        .cache_capacity(1)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let mut instances = Vec::new();
    for i in 0..20u64 {
        let id = format!("evicted-{i}");
        instances.push(client.start(held_flow, &id, i).await.unwrap());
    }
    // Every instance has turned once and waits for its activity: a cache of one holds
    // one of them, so the others' next turns replay.
    for i in 0..20 {
        wait_until_scheduled(&store, &format!("evicted-{i}")).await;
    }
    gate.add_permits(20);
    for (i, instance) in instances.iter().enumerate() {
        assert_eq!(instance.wait(WAIT).await.unwrap(), i as u64 + 1);
    }
    assert!(runtime.replay_count() > 0, "a cache of one must evict");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "replays ran no activity again"
    );
    runtime.shutdown().await;
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a store").unwrap();
    let err = durable_core::FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, durable_core::StoreError::NotAStore { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("is not a durable store"), "{err}");
}

// ---- Activity results held in memory ----
//
// An activity's result is recorded by the turn that takes it, in the commit that removes
// the activity's task. Until then it is held in memory; when no turn will take it soon
// (a shutdown, a suspended instance), it is stored as a message instead, so that the
// activity does not run again.

/// Runs once the test lets it (a permit of the gate per run), and counts its runs.
#[activity]
async fn held_step(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    let gate = ctx.state::<Arc<Semaphore>>();
    gate.acquire().await.map_err(|e| e.to_string())?.forget();
    ctx.state::<Arc<AtomicU32>>().fetch_add(1, Ordering::SeqCst);
    Ok(n + 1)
}

#[orchestrator]
async fn held_flow(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(held_step, n).await?)
}

fn held_builder(store: FjallStore, gate: &Arc<Semaphore>, runs: &Arc<AtomicU32>) -> RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(held_flow)
        .activity(held_step)
        .state(gate.clone())
        .state(runs.clone())
}

async fn wait_until_scheduled(store: &FjallStore, id: &str) {
    while !store
        .history(id)
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::ActivityScheduled { .. }))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The work items of `store` that are stored activity results.
fn stored_results(store: &FjallStore) -> usize {
    store
        .work_items()
        .unwrap()
        .iter()
        .filter(|(_, item)| {
            matches!(
                item,
                WorkItem::Message {
                    event: Event::ActivityCompleted { .. },
                    ..
                }
            )
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_that_finishes_during_shutdown_is_recorded_not_run_again() {
    let (_dir, store) = store();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let runtime = held_builder(store.clone(), &gate, &runs)
        .start()
        .await
        .unwrap();
    runtime.client().start(held_flow, "held", 1).await.unwrap();
    wait_until_scheduled(&store, "held").await;
    // `join!` polls the shutdown first: it has begun when the activity finishes.
    tokio::join!(runtime.shutdown(), async { gate.add_permits(1) });
    assert_eq!(stored_results(&store), 1, "the result is stored, not lost");
    assert!(
        !store
            .work_items()
            .unwrap()
            .iter()
            .any(|(_, item)| matches!(item, WorkItem::Activity(_))),
        "the activity's task is gone with it"
    );

    let runtime = held_builder(store.clone(), &gate, &runs)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().instance(held_flow, "held");
    assert_eq!(instance.wait(WAIT).await.unwrap(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the activity ran once");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_of_an_activity_of_a_suspended_instance_is_stored_until_it_resumes() {
    let (_dir, store) = store();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let runtime = held_builder(store.clone(), &gate, &runs)
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(held_flow, "paused", 1)
        .await
        .unwrap();
    wait_until_scheduled(&store, "paused").await;
    instance.suspend("maintenance").await.unwrap();
    until_suspended(&instance).await;
    gate.add_permits(1);
    while stored_results(&store) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A restart while it is suspended finds the result in the store.
    runtime.shutdown().await;
    let runtime = held_builder(store.clone(), &gate, &runs)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().instance(held_flow, "paused");
    instance.resume().await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the activity ran once");
    runtime.shutdown().await;
}
