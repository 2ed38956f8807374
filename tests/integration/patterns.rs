//! The orchestration patterns end to end on fjall, across restarts where it matters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::record::{Event, FailureKind};
use durable_core::{
    ActivityContext, Durability, Error, FjallStore, InstanceStatus, OrchestrationContext,
    RetryPolicy, Store, Unregistered, activity, orchestrator,
};

use crate::common::*;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(60);

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[activity]
async fn wall_clock(_ctx: ActivityContext, _: ()) -> Result<u64, String> {
    Ok(ms(SystemTime::now()))
}

/// Sleeps `millis` on a durable timer; returns (time slept by the wall clock, recorded start).
#[orchestrator]
async fn nap(ctx: OrchestrationContext, millis: u64) -> Result<(u64, u64), String> {
    let start = ms(ctx.now());
    ctx.sleep(Duration::from_millis(millis)).await;
    let end = ctx.call(wall_clock, ()).await?;
    Ok((end - start, start))
}

#[test]
fn a_timer_pending_across_a_restart_fires_at_its_time_never_early() {
    let (_dir, store) = store();
    let started = ms(SystemTime::now());
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(nap)
            .activity(wall_clock)
            .start()
            .await
            .unwrap();
        runtime.client().start(nap, "nap", 1500).await.unwrap();
        wait_for(&store, "nap", |h| {
            h.iter().any(|e| matches!(e, Event::TimerCreated { .. }))
        })
        .await;
    });
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(nap)
            .activity(wall_clock)
            .start()
            .await
            .unwrap();
        let (slept, start) = runtime
            .client()
            .instance(nap, "nap")
            .wait(WAIT)
            .await
            .unwrap();
        assert!(start >= started, "ctx.now() is the time of the first run");
        assert!(slept >= 1500, "the timer fired early: after {slept} ms");
        assert!(
            slept < 15_000,
            "the timer fired far too late: after {slept} ms"
        );
        runtime.shutdown().await;
    });
}

/// Waits at the gate, then collects two `item` events.
#[orchestrator]
async fn collector(ctx: OrchestrationContext, _: ()) -> Result<Vec<String>, String> {
    ctx.call(wait_at_gate, 0).await?;
    let first = ctx.wait_event::<String>("item").await;
    let second = ctx.wait_event::<String>("item").await;
    Ok(vec![first, second])
}

#[test]
fn events_raised_before_the_wait_are_kept_across_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(collector)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(collector, "c", ()).await.unwrap();
        instance.raise_event("item", &"first").await.unwrap();
        instance.raise_event("item", &"second").await.unwrap();
        wait_for(&store, "c", |h| {
            h.iter()
                .filter(|e| matches!(e, Event::EventRaised { .. }))
                .count()
                == 2
        })
        .await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(collector)
            .start()
            .await
            .unwrap();
        let items = runtime
            .client()
            .instance(collector, "c")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(items, ["first", "second"]);
        runtime.shutdown().await;
    });
}

/// Fans out `n` doublings and sums them.
#[orchestrator]
async fn fan_out(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let calls = (0..n).map(|i| ctx.call(double, i)).collect();
    let results = ctx.join_all(calls).await;
    let mut sum = 0;
    for (i, result) in results.into_iter().enumerate() {
        let value = result?;
        assert_eq!(value, i as u64 * 2, "results come in input order");
        sum += value;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parallel_activities_complete() {
    let (_dir, store) = store();
    let (builder, calls) = counting_builder(store);
    let runtime = builder.orchestrator(fan_out).start().await.unwrap();
    let n = 10_000;
    let output = runtime
        .client()
        .start(fan_out, "wide", n)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(output, n * (n - 1));
    assert_eq!(calls.count() as u64, n);
    runtime.shutdown().await;
}

/// Runs `careful` as a child, then `chain` under a chosen id.
#[orchestrator]
async fn family(ctx: OrchestrationContext, risk: Risk) -> Result<String, String> {
    let child = ctx.sub_orchestration(careful, risk);
    let child_id = child.instance_id().to_string();
    match child.await {
        Ok(out) => Ok(format!("{child_id}: {out}")),
        Err(e) => {
            let named = ctx
                .sub_orchestration_with_id(chain, format!("{}-fallback", ctx.instance_id()), 1)
                .await?;
            Ok(format!(
                "{} ({}) failed: {}; fallback {named}",
                e.orchestrator(),
                e.instance_id(),
                e.message()
            ))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_orchestrations_return_outputs_and_typed_failures() {
    let (_dir, store) = store();
    let runtime = builder(store).orchestrator(family).start().await.unwrap();
    let client = runtime.client();
    let ok = client
        .start(family, "fam-ok", Risk::Refuse)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let run = async |id: &str| client.record(id).await.unwrap().unwrap().incarnation;
    let child = format!("~fam-ok~{:x}.0.0", run("fam-ok").await);
    assert!(
        ok.starts_with(&format!("{child}: compensated `refuse`")),
        "{ok}"
    );
    let failed = client
        .start(family, "fam-bad", Risk::Uncaught)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(
        failed,
        format!(
            "careful (~fam-bad~{:x}.0.0) failed: gave up: activity `refuse` failed on attempt 1: too big: limit is 6; fallback 6",
            run("fam-bad").await
        )
    );
    // The children are instances of their own, with their own status.
    let child = client.record("fam-bad-fallback").await.unwrap().unwrap();
    assert_eq!(child.status.name(), "completed");
    // A child id taken by a finished instance is replaced (a running one is refused:
    // `incarnation.rs`).
    client
        .start(chain, "taken-fallback", 1)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let out = client
        .start(family, "taken", Risk::Uncaught)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert!(out.ends_with("fallback 6"), "{out}");
    let replaced = client.record("taken-fallback").await.unwrap().unwrap();
    assert_eq!(
        replaced.parent.map(|p| p.instance).as_deref(),
        Some("taken")
    );
    runtime.shutdown().await;
}

/// Fails until its third attempt; a message containing "fatal" when `n` is 0.
#[activity]
async fn flaky(ctx: ActivityContext, n: u64) -> Result<String, String> {
    if n == 0 {
        return Err("fatal: bad input".into());
    }
    if ctx.attempt() < 3 {
        return Err(format!("transient on attempt {}", ctx.attempt()));
    }
    Ok(format!(
        "ok on attempt {} with key {}",
        ctx.attempt(),
        ctx.idempotency_key()
    ))
}

#[orchestrator]
async fn retrying(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    let policy = RetryPolicy::exponential(4, Duration::from_millis(20))
        .max_interval(Duration::from_millis(50))
        .retry_if(|e| !e.message().contains("fatal"));
    Ok(ctx.call_with_retry(flaky, n, policy).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_policy_retries_on_durable_timers_with_one_idempotency_key() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(retrying)
        .activity(flaky)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let out = client
        .start(retrying, "retry", 1)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let incarnation = store.instance("retry").unwrap().unwrap().incarnation;
    assert_eq!(
        out,
        format!("ok on attempt 3 with key retry/{incarnation:x}.0/0")
    );
    let history = store.history("retry").unwrap();
    let timers = history
        .iter()
        .filter(|e| matches!(e, Event::TimerCreated { .. }))
        .count();
    assert_eq!(timers, 2, "two waits between three attempts");

    let err = client
        .start(retrying, "no-retry", 0)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    let Error::Failed { failure, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        failure.message,
        "activity `flaky` failed on attempt 1: fatal: bad input"
    );
    runtime.shutdown().await;
}

/// Counts up to its input's second number by continuing as new.
#[orchestrator]
async fn eternal(ctx: OrchestrationContext, (n, until): (u32, u32)) -> Result<u32, String> {
    ctx.set_custom_status(&n);
    if n < until {
        return ctx.continue_as_new((n + 1, until)).await;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_generations_keep_one_generation_of_history() {
    let dir = tempfile::tempdir().unwrap();
    // Buffered: this test is about what the store holds, not about fsync.
    let store = FjallStore::open_with(dir.path(), Durability::Buffered).unwrap();
    let runtime = builder(store.clone())
        .orchestrator(eternal)
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(eternal, "forever", (0, 10_000))
        .await
        .unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 10_000);
    assert_eq!(instance.custom_status::<u32>().await.unwrap(), Some(10_000));
    let record = store.instance("forever").unwrap().unwrap();
    assert_eq!(record.generation, 10_000);
    let history = store.history("forever").unwrap();
    // Not counting the times of its turns (`TurnStarted`).
    let events = (history.iter())
        .filter(|e| !matches!(e, Event::TurnStarted { .. }))
        .count();
    assert!(
        events <= 3,
        "one generation of history, got {events} events"
    );
    assert_eq!(record.history_len as usize, history.len());
    runtime.shutdown().await;
}

/// Takes one `add` event per generation, keeping them in order, until it has ten.
#[orchestrator]
async fn collecting(ctx: OrchestrationContext, taken: Vec<u64>) -> Result<Vec<u64>, String> {
    if taken.len() == 10 {
        return Ok(taken);
    }
    let n = ctx.wait_event::<u64>("add").await;
    let mut taken = taken;
    taken.push(n);
    ctx.continue_as_new(taken).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_generation_did_not_take_reach_the_next_ones_in_order() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(collecting)
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(collecting, "collecting", Vec::new())
        .await
        .unwrap();
    wait_for(&store, "collecting", |h| !h.is_empty()).await;
    // While suspended, the events queue up: the next turn takes the first five at once,
    // its generation one of them, and the rest are carried over generation by
    // generation, while five more arrive as the generations turn over.
    instance.suspend("batching").await.unwrap();
    for n in 1..=5_u64 {
        instance.raise_event("add", &n).await.unwrap();
    }
    instance.resume().await.unwrap();
    for n in 6..=10_u64 {
        instance.raise_event("add", &n).await.unwrap();
    }
    assert_eq!(
        instance.wait(WAIT).await.unwrap(),
        (1..=10).collect::<Vec<u64>>()
    );
    assert_eq!(
        store.instance("collecting").unwrap().unwrap().generation,
        10
    );
    assert_eq!(store.work_items().unwrap(), vec![]);
    runtime.shutdown().await;
}

/// Reports progress while it waits at the gate.
#[orchestrator]
async fn reporting(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.set_custom_status(&"waiting at the gate");
    ctx.call(wait_at_gate, 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_the_custom_status_while_it_runs() {
    let (_dir, store) = store();
    let runtime = gated(&store, false)
        .orchestrator(reporting)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(reporting, "r", ()).await.unwrap();
    for _ in 0..400 {
        if let Some(status) = instance.custom_status::<String>().await.unwrap() {
            assert_eq!(status, "waiting at the gate");
            assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no custom status");
}

/// Calls an orchestrator nobody registers. The handle is held in a variable, so the call
/// is not one `#[orchestrator]` lists for the runtime's check at start (under
/// `Unregistered::Fail` the runtime would refuse to start): it is found when reached.
#[orchestrator]
async fn unknown_child_failure(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let child = crate::runtime::never_registered;
    match ctx.sub_orchestration(child, 1).await {
        Ok(_) => Ok("ran".into()),
        Err(e) => Ok(format!(
            "{:?}: {}",
            e.failure().kind
                == FailureKind::Unregistered {
                    name: "never_registered".into()
                },
            e.message()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_sub_orchestration_stalls_the_parent() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(unknown_child_failure)
        .start()
        .await
        .unwrap();
    let err = runtime
        .client()
        .start(unknown_child_failure, "u", ())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Stalled { failure, .. }
            if failure.kind == FailureKind::Unregistered { name: "never_registered".into() }),
        "{err:?}"
    );
    assert!(
        store.instances().unwrap().iter().all(|(id, _)| id == "u")
            && store.history("u").unwrap().is_empty(),
        "nothing of the call was written"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_sub_orchestration_fails_the_call_when_so_configured() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(unknown_child_failure)
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap();
    let out = runtime
        .client()
        .start(unknown_child_failure, "u", ())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(
        out,
        "true: orchestrator `never_registered` is not registered with this runtime; \
         add it with `RuntimeBuilder::orchestrator`"
    );
    runtime.shutdown().await;
}

/// Calls an activity nobody registers, through a handle held in a variable, as
/// `unknown_child_failure` does.
#[orchestrator]
async fn unknown_activity_failure(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let gate = wait_at_gate;
    match ctx.call(gate, 1).await {
        Ok(_) => Ok("ran".into()),
        Err(e) => Ok(e.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_activity_fails_the_call_when_so_configured() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(unknown_activity_failure)
        .on_unregistered(Unregistered::Fail)
        .start()
        .await
        .unwrap();
    let out = runtime
        .client()
        .start(unknown_activity_failure, "u", ())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(
        out,
        "activity `wait_at_gate` is not registered with this runtime; \
         add it with `RuntimeBuilder::activity`"
    );
    runtime.shutdown().await;
}

/// Waits until the history of `id` satisfies `done`.
pub async fn wait_for(store: &FjallStore, id: &str, done: impl Fn(&[Event]) -> bool) {
    for _ in 0..4000 {
        if done(&store.history(id).unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "instance {id} never got there: {:?}",
        store.history(id).unwrap()
    );
}
