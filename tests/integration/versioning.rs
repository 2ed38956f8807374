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
        let runtime = builder(store.clone())
            .orchestrator(order_v1)
            .activity(wait_at_gate)
            .state(Gate { open: false })
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
        let runtime = builder(store.clone())
            .orchestrator(order_patched)
            .activity(wait_at_gate)
            .state(Gate { open: true })
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
        let runtime = builder(store.clone())
            .orchestrator(order_v1)
            .activity(wait_at_gate)
            .state(Gate { open: true })
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
