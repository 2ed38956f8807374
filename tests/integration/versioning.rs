//! Changing code safely: `ctx.patched` keeps old instances on the old path, and replay
//! tests catch a breaking change before it ships.

use std::time::Duration;

use durable_core::record::Event;
use durable_core::replay_test::{self, ReplayError, Replayer, SavedHistory};
use durable_core::{ActivityContext, OrchestrationContext, Store, activity, orchestrator};

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

/// `order` after a version bump: version 2 beside (or instead of) version 1.
#[orchestrator(name = "order", version = 2)]
async fn order_v2(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(triple, n).await?)
}

/// A directory with the saved history of a finished instance of `order` v1.
fn saved_order_v1() -> (tempfile::TempDir, std::path::PathBuf) {
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
    (dir, histories)
}

#[test]
fn a_replay_test_catches_a_breaking_change_and_passes_a_patched_one() {
    let (_dir, histories) = saved_order_v1();

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

#[activity]
async fn reserve(_ctx: ActivityContext, order: u64) -> Result<String, String> {
    Ok(format!("reserved {order}"))
}

#[activity]
async fn fraud_check(_ctx: ActivityContext, order: u64) -> Result<String, String> {
    Ok(format!("checked {order}"))
}

#[activity]
async fn ship(_ctx: ActivityContext, order: u64) -> Result<String, String> {
    Ok(format!("shipped {order}"))
}

/// As first deployed: reserve, wait for `paid`, ship.
#[orchestrator(name = "checkout")]
async fn checkout_v1(ctx: OrchestrationContext, order: u64) -> Result<Vec<String>, String> {
    let mut done = vec![ctx.call(reserve, order).await?];
    let amount: u64 = ctx.wait_event("paid").await;
    done.push(format!("paid {amount}"));
    done.push(ctx.call(ship, order).await?);
    Ok(done)
}

/// The next deploy inserts a fraud check between `reserve` and the wait.
#[orchestrator(name = "checkout")]
async fn checkout_v2(ctx: OrchestrationContext, order: u64) -> Result<Vec<String>, String> {
    let mut done = vec![ctx.call(reserve, order).await?];
    if ctx.patched("fraud-check") {
        done.push(ctx.call(fraud_check, order).await?);
    }
    let amount: u64 = ctx.wait_event("paid").await;
    done.push(format!("paid {amount}"));
    done.push(ctx.call(ship, order).await?);
    Ok(done)
}

fn has_patch_marker(history: &[Event]) -> bool {
    history
        .iter()
        .any(|e| matches!(e, Event::Recorded { what, .. } if what == "patch:fraud-check"))
}

#[test]
fn a_patch_inserted_before_an_event_wait_keeps_a_waiting_instance_on_the_old_path() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(checkout_v1)
            .activity(reserve)
            .activity(ship)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(checkout_v1, "waiting", 1)
            .await
            .unwrap();
        // Reserved, and waiting for `paid`.
        wait_for(&store, "waiting", |h| {
            h.iter()
                .any(|e| matches!(e, Event::ActivityCompleted { seq: 0, .. }))
        })
        .await;
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(checkout_v2)
            .activity(reserve)
            .activity(fraud_check)
            .activity(ship)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let old = client.instance(checkout_v2, "waiting");
        old.raise_event("paid", &30u64).await.unwrap();
        assert_eq!(
            old.wait(WAIT).await.unwrap(),
            ["reserved 1", "paid 30", "shipped 1"],
            "the instance that waited keeps the old path"
        );
        assert!(!has_patch_marker(&store.history("waiting").unwrap()));

        let new = client.start(checkout_v2, "new", 2).await.unwrap();
        wait_for(&store, "new", has_patch_marker).await;
        new.raise_event("paid", &40u64).await.unwrap();
        assert_eq!(
            new.wait(WAIT).await.unwrap(),
            ["reserved 2", "checked 2", "paid 40", "shipped 2"],
            "a new instance takes the new path"
        );
        runtime.shutdown().await;
    });
}

#[test]
fn a_replay_test_that_replays_nothing_fails() {
    let (_dir, histories) = saved_order_v1();
    // After a version bump, the test of version 2 alone finds version 1's history and
    // cannot replay it: it fails, naming the version and the file.
    let err = replay_test::replay_dir(order_v2, &histories).unwrap_err();
    assert!(
        matches!(&err, ReplayError::VersionNotReplayed { orchestrator, version: 1, count: 1, .. } if orchestrator == "order"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("finished.history") && message.contains("only version(s) 2"),
        "{message}"
    );
    // With both versions, each history replays against the version it ran.
    let both = Replayer::new()
        .orchestrator(order_v1)
        .orchestrator(order_v2);
    assert_eq!(both.replay_dir(&histories).unwrap(), 1);
    // A directory without a history of the orchestrator under test.
    let err = replay_test::replay_dir(checkout_v1, &histories).unwrap_err();
    assert!(
        matches!(&err, ReplayError::NoHistories { orchestrators, .. } if orchestrators == "checkout v1"),
        "{err:?}"
    );
}

/// An expense as first deployed: validated, then paid (the gate holds the payment).
#[orchestrator(name = "expense")]
async fn expense_v1(ctx: OrchestrationContext, amount: u64) -> Result<u64, String> {
    ctx.set_custom_status(&"Validating");
    let amount = ctx.call(double, amount).await?;
    ctx.set_custom_status(&"Paying");
    Ok(ctx.call(wait_at_gate, amount).await?)
}

/// The input as the next deploy has it: a field added without a default, so a stored
/// input of version 1 no longer decodes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Expense {
    amount: u64,
    approver: String,
}

#[orchestrator(name = "expense")]
async fn expense_v2(ctx: OrchestrationContext, expense: Expense) -> Result<u64, String> {
    ctx.set_custom_status(&"Validating");
    let amount = ctx.call(double, expense.amount).await?;
    ctx.set_custom_status(&"Paying");
    Ok(ctx.call(wait_at_gate, amount).await?)
}

#[test]
fn the_custom_status_stays_the_last_committed_after_a_turn_that_stops() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(expense_v1)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(expense_v1, "e", 5).await.unwrap();
        wait_for(&store, "e", |h| {
            h.iter().any(
                |e| matches!(e, Event::ActivityScheduled { activity, .. } if activity == "wait_at_gate"),
            )
        })
        .await;
        assert_eq!(
            instance.custom_status::<String>().await.unwrap().as_deref(),
            Some("Paying")
        );
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(expense_v2)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(expense_v2, "e");
        // The replay stops at the first turn: the stored input no longer decodes.
        let err = instance.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(
                err,
                durable_core::Error::Failed { .. } | durable_core::Error::Stalled { .. }
            ),
            "{err:?}"
        );
        assert_eq!(
            instance.custom_status::<String>().await.unwrap().as_deref(),
            Some("Paying"),
            "the status the instance last committed, not the one of the turn the replay stopped at"
        );
        // Where it stopped: the payment, with its step number and await site.
        let position = instance.position().await.unwrap();
        let [awaiting] = position.awaiting.as_slice() else {
            panic!("{position:?}");
        };
        assert_eq!(
            (awaiting.step, awaiting.operation.as_str()),
            (1, "activity `wait_at_gate`")
        );
        assert!(
            awaiting.site.file.ends_with("versioning.rs") && awaiting.site.function == "expense",
            "{:?}",
            awaiting.site
        );
        assert_eq!(position.last.as_ref(), Some(awaiting));
        assert!(
            position.to_string().starts_with(
                "awaiting step 1, activity `wait_at_gate` (tests/integration/versioning.rs:"
            ),
            "{position}"
        );
        runtime.shutdown().await;
    });
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
        assert_eq!(
            client.record("old-price").await.unwrap().unwrap().version,
            1
        );
        assert_eq!(
            client.record("new-price").await.unwrap().unwrap().version,
            2
        );
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
    assert_eq!(client.record("tick").await.unwrap().unwrap().version, 2);
    runtime.shutdown().await;
}
