//! Changing code safely: `ctx.patched` keeps old instances on the old path, and replay
//! tests catch a breaking change before it ships.

use std::time::Duration;

use durable_core::record::Event;
use durable_core::replay_test::{self, ReplayError, SavedHistory};
use durable_core::{OrchestrationContext, orchestrator};

use crate::common::*;
use crate::patterns::wait_for;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(30);

/// Version as first deployed: doubles, then waits at the gate.
#[orchestrator(name = "order")]
async fn order_v1(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

/// The same orchestrator after a change guarded by `patched`: new instances also triple.
#[orchestrator(name = "order")]
async fn order_patched(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let mut a = ctx.call(double, n).await?;
    if ctx.patched("triple-after-double") {
        a = ctx.call(triple, a).await?;
    }
    Ok(ctx.call(wait_at_gate, a).await?)
}

/// The same change made carelessly, without `patched`.
#[orchestrator(name = "order")]
async fn order_broken(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    let a = ctx.call(triple, a).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

#[test]
fn patched_keeps_old_instances_on_the_old_path_and_new_ones_take_the_new() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(order_v1)
            .start()
            .await
            .unwrap();
        runtime.client().start(order_v1, "old", 1).await.unwrap();
        wait_for(&store, "old", |h| {
            h.iter()
                .any(|e| matches!(e, Event::ActivityScheduled { activity, .. } if activity == "wait_at_gate"))
        })
        .await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(order_patched)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        // Old path: 1 doubled, no triple; the gate's redelivery is attempt 2.
        let old = client
            .instance(order_patched, "old")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(old, 2 + 2000);
        // New path: doubled and tripled.
        let new = client
            .start(order_patched, "new", 1)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(new, 6 + 1000);
        runtime.shutdown().await;
    });
}

#[test]
fn a_replay_test_catches_a_breaking_change_and_passes_a_patched_one() {
    let (dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(order_v1)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .start(order_v1, "finished", 5)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
        runtime.shutdown().await;
    });
    let histories = dir.path().join("histories");
    std::fs::create_dir_all(&histories).unwrap();
    let saved = SavedHistory::export(&store, "finished").unwrap();
    saved.save(histories.join("finished.history")).unwrap();
    assert_eq!(
        SavedHistory::load(histories.join("finished.history")).unwrap(),
        saved
    );

    assert_eq!(replay_test::replay_dir(order_v1, &histories).unwrap(), 1);
    assert_eq!(
        replay_test::replay_dir(order_patched, &histories).unwrap(),
        1
    );
    let err = replay_test::replay_dir(order_broken, &histories).unwrap_err();
    assert!(matches!(err, ReplayError::Nondeterminism { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("step 1: history has activity `wait_at_gate`")
            && message.contains("now asks for activity `triple`"),
        "{message}"
    );
}

/// Version 1 of `pricing`: waits at the gate, then doubles.
#[orchestrator(name = "pricing")]
async fn pricing_v1(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok(format!("v1: {}", ctx.call(double, n).await?))
}

/// Version 2 of `pricing`, deployed beside version 1: triples instead.
#[orchestrator(name = "pricing", version = 2)]
async fn pricing_v2(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    ctx.call(wait_at_gate, 0).await?;
    Ok(format!("v2: {}", ctx.call(triple, n).await?))
}

#[test]
fn each_instance_keeps_the_version_it_started_with() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(pricing_v1)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(pricing_v1, "old-price", 5)
            .await
            .unwrap();
        wait_for(&store, "old-price", |h| h.len() >= 2).await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(pricing_v1)
            .orchestrator(pricing_v2)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let new = client.start(pricing_v2, "new-price", 5).await.unwrap();
        assert_eq!(new.wait(WAIT).await.unwrap(), "v2: 15");
        let old = client
            .instance(pricing_v1, "old-price")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(old, "v1: 10", "the old instance stayed on version 1");
        assert_eq!(client.record("old-price").unwrap().unwrap().version, 1);
        assert_eq!(client.record("new-price").unwrap().unwrap().version, 2);
        runtime.shutdown().await;
    });
}

/// Version 1 of an eternal counter: moves to the newest version at each generation.
#[orchestrator(name = "ticker")]
async fn ticker_v1(ctx: OrchestrationContext, n: u32) -> Result<String, String> {
    let _ = &ctx;
    if n < 1 {
        return ctx.continue_as_new_latest(n + 1).await;
    }
    Ok(format!("v1 at {n}"))
}

#[orchestrator(name = "ticker", version = 2)]
async fn ticker_v2(ctx: OrchestrationContext, n: u32) -> Result<String, String> {
    let _ = &ctx;
    Ok(format!("v2 at {n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_latest_moves_an_instance_to_the_newest_version() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(ticker_v1)
        .orchestrator(ticker_v2)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let out = client
        .start(ticker_v1, "tick", 0)
        .await
        .unwrap()
        .wait(WAIT)
        .await;
    // The handle is v1's, but the output type is the same; the instance now runs v2.
    assert_eq!(out.unwrap(), "v2 at 1");
    assert_eq!(client.record("tick").unwrap().unwrap().version, 2);
    runtime.shutdown().await;
}
