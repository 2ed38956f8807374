//! The runtime and client end to end, on a real fjall store.

use std::time::Duration;

use durable_core::record::FailureKind;
use durable_core::{Error, InstanceStatus, OrchestrationContext, orchestrator};

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
    let runtime = builder(store)
        .orchestrator(slow)
        .activity(crate::restart::wait_at_gate)
        .state(Gate { open: false })
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
    // 200 starts + 200 × (3 turns + 2 activity results) = 1,200 commits.
    assert!(stats.commits >= 1200, "{stats:?}");
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
    let (builder, calls) = counting_builder(store);
    let runtime = builder.cache_capacity(1).start().await.unwrap();
    let client = runtime.client();
    let mut instances = Vec::new();
    for i in 0..20u64 {
        instances.push(
            client
                .start(chain, format!("evicted-{i}"), i)
                .await
                .unwrap(),
        );
    }
    for (i, instance) in instances.iter().enumerate() {
        assert_eq!(instance.wait(WAIT).await.unwrap(), i as u64 * 6);
    }
    assert!(runtime.replay_count() > 0, "a cache of one must evict");
    assert_eq!(calls.count(), 40, "replays ran no activity again");
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
