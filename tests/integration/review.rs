//! Adversarial cases found in review of issue 11: each asserts what a user of the runtime
//! would notice.

use std::sync::Arc;
use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Store, activity, orchestrator};
use tokio::sync::watch;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// What the executions of an activity saw: `(call, attempt)`, in order.
type Seen = Log<(u32, u32)>;

/// Logs `(call, attempt)`; call 0 then waits until the test lets it go.
#[activity]
async fn queued(ctx: ActivityContext, call: u32) -> Result<u32, String> {
    ctx.state::<Arc<Seen>>().push((call, ctx.attempt()));
    if call == 0 {
        let mut go = ctx.state::<watch::Receiver<bool>>().clone();
        let _ = go.wait_for(|go| *go).await;
    }
    Ok(ctx.attempt())
}

#[orchestrator]
async fn two_queued(ctx: OrchestrationContext, _: ()) -> Result<(u32, u32), String> {
    let (a, b) = ctx.join2(ctx.call(queued, 0), ctx.call(queued, 1)).await;
    Ok((a?, b?))
}

/// A call that waited for a slot through a graceful shutdown never executed before the
/// next start: its first execution is attempt 1, as `ActivityContext::attempt` promises
/// ("each execution counts once").
#[test]
fn an_activity_that_never_started_before_a_shutdown_runs_as_its_first_attempt() {
    let (_dir, store) = store();
    let seen = Arc::new(Seen::default());
    let (go, wait) = watch::channel(false);
    let runtime = || {
        builder(store.clone())
            .orchestrator(two_queued)
            .activity(queued)
            .activity_concurrency(1)
            .state(seen.clone())
            .state(wait.clone())
    };
    lifetime(async {
        let runtime = runtime().start().await.unwrap();
        runtime.client().start(two_queued, "q", ()).await.unwrap();
        seen.until_len(1).await;
        let stopping = runtime.shutdown();
        tokio::pin!(stopping);
        // Polled once: the runtime stops taking work, then waits for call 0 to end.
        tokio::select! {
            biased;
            () = &mut stopping => panic!("shut down while call 0 still runs"),
            () = std::future::ready(()) => {}
        }
        go.send_replace(true);
        stopping.await;
    });
    assert_eq!(seen.entries(), [(0, 1)], "call 1 waited for the slot");
    let output = lifetime(async {
        let runtime = runtime().start().await.unwrap();
        let instance = runtime.client().instance(two_queued, "q");
        let output = instance.wait(WAIT).await.unwrap();
        runtime.shutdown().await;
        output
    });
    assert_eq!(seen.entries(), [(0, 1), (1, 1)], "the executions");
    assert_eq!(output, (1, 1));
}

/// Fails the first execution of each call, then returns the attempt it read.
#[activity]
async fn fails_once(ctx: ActivityContext, call: u32) -> Result<u32, String> {
    ctx.state::<Arc<Seen>>().push((call, ctx.attempt()));
    if ctx.attempt() == 1 {
        return Err(format!("call {call}: transient"));
    }
    Ok(ctx.attempt())
}

/// Three calls at once, each retried an hour later, each attempt bounded to a day.
#[orchestrator]
async fn three_retried(ctx: OrchestrationContext, _: ()) -> Result<Vec<u32>, String> {
    let policy = durable_core::RetryPolicy::fixed(3, Duration::from_secs(3_600))
        .attempt_timeout(Duration::from_secs(86_400));
    let calls = (0..3)
        .map(|call| Box::pin(ctx.call_with_retry(fails_once, call, policy.clone())))
        .collect();
    let mut out = Vec::new();
    for result in ctx.join_all(calls).await {
        out.push(result?);
    }
    ctx.sleep(Duration::from_secs(7 * 86_400)).await;
    Ok(out)
}

/// A time-skipping clock with one activity slot, retries an hour apart and attempt
/// timeouts of a day: the instance finishes without the test moving the clock, and the
/// clock went through the backoffs and the week's sleep, not the attempt timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_skipping_with_one_slot_retries_and_attempt_timeouts_finishes() {
    let (_dir, store) = store();
    let seen = Arc::new(Seen::default());
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let clock = durable_core::ManualClock::time_skipping(start);
    let runtime = builder(store.clone())
        .orchestrator(three_retried)
        .activity(fails_once)
        .activity_concurrency(1)
        .state(seen.clone())
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(three_retried, "r", ())
        .await
        .unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), vec![2, 2, 2]);
    let mut entries = seen.entries();
    entries.sort();
    assert_eq!(entries, [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]);
    use durable_core::Clock;
    let elapsed = clock.now().duration_since(start).unwrap();
    assert_eq!(elapsed, Duration::from_secs(3_600 + 7 * 86_400));
    runtime.shutdown().await;
}

/// Waits for `go` and returns its payload.
#[orchestrator]
async fn go_child(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

/// Generation 0 starts a child and continues as new without awaiting it; generation 1
/// starts one at the same step and returns its output.
#[orchestrator]
async fn leaves_a_child_behind(
    ctx: OrchestrationContext,
    generation: u32,
) -> Result<String, String> {
    let child = ctx.sub_orchestration(go_child, ());
    if generation == 0 {
        // Polled once so the child starts, then left behind.
        let _ = ctx.select2(child, ctx.sleep(Duration::ZERO)).await;
        return ctx.continue_as_new(1).await;
    }
    Ok(child.await?)
}

/// The child the first generation left running completes while the second generation
/// awaits its own child at the same step: the second gets its own child's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_left_running_by_continue_as_new_does_not_complete_the_next_generation() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(leaves_a_child_behind)
        .orchestrator(go_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let parent = client.start(leaves_a_child_behind, "p", 0).await.unwrap();
    let children = || -> Vec<(u32, String)> {
        let mut found: Vec<(u32, String)> = store
            .instances()
            .unwrap()
            .into_iter()
            .filter_map(|(id, record)| Some((record.parent?.generation, id)))
            .collect();
        found.sort();
        found
    };
    for _ in 0..4_000 {
        if children().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let found = children();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_ne!(found[0].1, found[1].1);
    client
        .raise_event(&found[0].1, "go", &"old".to_string())
        .await
        .unwrap();
    client
        .instance(go_child, &found[0].1)
        .wait(WAIT)
        .await
        .unwrap();
    client
        .raise_event(&found[1].1, "go", &"new".to_string())
        .await
        .unwrap();
    assert_eq!(parent.wait(WAIT).await.unwrap(), "new");
    runtime.shutdown().await;
}

/// Starts child `c` without waiting for it, then, on event `again`, starts `c` again and
/// returns that run's output.
#[orchestrator]
async fn starts_c_twice(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let first = ctx.sub_orchestration_with_id(go_child, "c", ());
    let _ = ctx.select2(first, ctx.sleep(Duration::ZERO)).await;
    ctx.wait_event::<()>("again").await;
    Ok(ctx.sub_orchestration_with_id(go_child, "c", ()).await?)
}

/// The first run of child `c` completes (its completion queued for a step the parent
/// gave up on); the parent starts `c` again: the new run is a fresh instance, and the
/// parent gets the new run's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_replaced_under_its_id_answers_with_the_new_run() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(starts_c_twice)
        .orchestrator(go_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let parent = client.start(starts_c_twice, "p", ()).await.unwrap();
    let c = client.instance(go_child, "c");
    for _ in 0..4_000 {
        if store.instance("c").unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
        .raise_event("c", "go", &"old".to_string())
        .await
        .unwrap();
    assert_eq!(c.wait(WAIT).await.unwrap(), "old");
    let old = store.instance("c").unwrap().unwrap().incarnation;
    client.raise_event("p", "again", &()).await.unwrap();
    for _ in 0..4_000 {
        if store.instance("c").unwrap().unwrap().incarnation != old {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
        .raise_event("c", "go", &"new".to_string())
        .await
        .unwrap();
    assert_eq!(parent.wait(WAIT).await.unwrap(), "new");
    assert_eq!(c.wait(WAIT).await.unwrap(), "new");
    let started = store
        .history("c")
        .unwrap()
        .iter()
        .filter(|e| matches!(e, durable_core::record::Event::Started { .. }))
        .count();
    assert_eq!(started, 1, "the new run's history holds only its own start");
    runtime.shutdown().await;
}

/// Returns once the test lets it go.
#[activity]
async fn holds(ctx: ActivityContext, _: ()) -> Result<(), String> {
    let mut go = ctx.state::<watch::Receiver<bool>>().clone();
    let _ = go.wait_for(|go| *go).await;
    Ok(())
}

#[orchestrator]
async fn holder(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    Ok(ctx.call(holds, ()).await?)
}

/// Waits ten days for `go`.
#[orchestrator]
async fn ten_days_for_go(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(
        match ctx.timeout(10 * DAY, ctx.wait_event::<String>("go")).await {
            Ok(go) => go,
            Err(_) => "timed out".into(),
        },
    )
}

const DAY: Duration = Duration::from_secs(86_400);

/// A suspended instance on a time-skipping clock: its timer fires while it is suspended
/// (the clock does not wait for it), it stays suspended, and once resumed it sees the
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_on_a_time_skipping_clock_takes_its_timer_when_resumed() {
    use durable_core::Clock;
    let (_dir, store) = store();
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let clock = durable_core::ManualClock::time_skipping(start);
    let (go, wait) = watch::channel(false);
    let runtime = builder(store.clone())
        .orchestrator(holder)
        .orchestrator(ten_days_for_go)
        .activity(holds)
        .state(wait)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    // The held activity keeps the clock still meanwhile.
    let held = client.start(holder, "holder", ()).await.unwrap();
    let waiting = client.start(ten_days_for_go, "w", ()).await.unwrap();
    crate::patterns::wait_for(&store, "w", |h| {
        h.iter()
            .any(|e| matches!(e, durable_core::record::Event::TimerCreated { .. }))
    })
    .await;
    waiting.suspend("hold on").await.unwrap();
    until_suspended(&waiting).await;
    assert_eq!(clock.now(), start, "the clock moved while an activity ran");
    go.send_replace(true);
    held.wait(WAIT).await.unwrap();
    for _ in 0..4_000 {
        if clock.now() >= start + 10 * DAY {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(clock.now(), start + 10 * DAY);
    until_suspended(&waiting).await;
    waiting.resume().await.unwrap();
    assert_eq!(waiting.wait(WAIT).await.unwrap(), "timed out");
    runtime.shutdown().await;
}

/// Returns its input, doubled.
#[orchestrator]
async fn leaf(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(2 * n)
}

/// Starts `leaf` under an id derived from its own, as Durable Functions' docs suggest
/// for deterministic child ids.
#[orchestrator]
async fn names_its_child(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let id = format!("{}-leaf", ctx.instance_id());
    Ok(ctx.sub_orchestration_with_id(leaf, id, n).await?)
}

#[orchestrator]
async fn calls_without_id(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.sub_orchestration(names_its_child, n).await?)
}

/// A child started without an id (so its id is a generated one, starting with `~`)
/// names its own child after itself: the grandchild starts, under that id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_child_can_name_its_own_child_after_itself() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(calls_without_id)
        .orchestrator(names_its_child)
        .orchestrator(leaf)
        .start()
        .await
        .unwrap();
    let parent = runtime
        .client()
        .start(calls_without_id, "order-1", 21)
        .await
        .unwrap();
    assert_eq!(parent.wait(WAIT).await.unwrap(), 42);
    let grandchildren: Vec<String> = store
        .instances()
        .unwrap()
        .into_iter()
        .filter(|(_, record)| record.orchestrator == "leaf")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(grandchildren.len(), 1);
    assert!(
        grandchildren[0].starts_with("~order-1~"),
        "{grandchildren:?}"
    );
    assert!(grandchildren[0].ends_with("-leaf"), "{grandchildren:?}");
    runtime.shutdown().await;
}

/// Logs its input; returns it once the test lets it go.
#[activity]
async fn logged_hold(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Seen>>().push((n as u32, ctx.attempt()));
    let mut go = ctx.state::<watch::Receiver<bool>>().clone();
    let _ = go.wait_for(|go| *go).await;
    Ok(n)
}

/// An activity and a day's timer at once.
#[orchestrator]
async fn fetch_and_nap(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let (fetched, ()) = ctx.join2(ctx.call(logged_hold, n), ctx.sleep(DAY)).await;
    Ok(fetched?)
}

/// Terminate, purge and start again under the same id while the first run's activity runs
/// and its timer waits, then a crash with both runs' activities in flight: after the
/// restart only the new run's activity runs again, and the new run gets its own output
/// once its own timer fires.
#[test]
fn terminate_purge_start_again_then_a_crash_leaves_only_the_new_run() {
    let (_dir, store) = store();
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let timers = |h: &[durable_core::record::Event]| {
        h.iter()
            .any(|e| matches!(e, durable_core::record::Event::TimerCreated { .. }))
    };
    let seen = Arc::new(Seen::default());
    // Held past the crash: dropping it would let both activities return (`wait_for`
    // ends with an error once the sender is gone) and commit before the runtime dies.
    let (_held, wait) = watch::channel(false);
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(fetch_and_nap)
            .activity(logged_hold)
            .state(seen.clone())
            .state(wait)
            .clock(durable_core::ManualClock::new(start))
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let old = client.start(fetch_and_nap, "x", 1).await.unwrap();
        crate::patterns::wait_for(&store, "x", timers).await;
        seen.until_len(1).await;
        old.terminate("replaced").await.unwrap();
        assert!(old.wait(WAIT).await.is_err());
        client.purge("x").await.unwrap();
        client.start(fetch_and_nap, "x", 2).await.unwrap();
        crate::patterns::wait_for(&store, "x", timers).await;
        seen.until_len(2).await;
        // The crash: both activities still run.
    });
    assert_eq!(seen.entries(), [(1, 1), (2, 1)]);
    assert!(
        !store
            .history("x")
            .unwrap()
            .iter()
            .any(|e| matches!(e, durable_core::record::Event::ActivityCompleted { .. })),
        "the new run's activity ended before the crash"
    );
    let output = lifetime(async {
        let (_go, wait) = watch::channel(true);
        let clock = durable_core::ManualClock::new(start);
        let runtime = builder(store.clone())
            .orchestrator(fetch_and_nap)
            .activity(logged_hold)
            .state(seen.clone())
            .state(wait)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let x = runtime.client().instance(fetch_and_nap, "x");
        seen.until_len(3).await;
        assert!(
            matches!(
                x.wait(Duration::from_millis(300)).await,
                Err(durable_core::Error::Timeout { .. })
            ),
            "finished before its timer fired"
        );
        clock.advance(DAY);
        let output = x.wait(WAIT).await.unwrap();
        runtime.shutdown().await;
        output
    });
    assert_eq!(output, 2);
    assert_eq!(seen.entries(), [(1, 1), (2, 1), (2, 2)], "what ran");
    assert_eq!(store.work_items().unwrap(), vec![]);
}
