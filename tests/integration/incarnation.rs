//! Incarnations of an instance id: nothing addressed to one run of an id (a timer, an
//! activity result, a child's completion) reaches another run under the same id, whatever
//! happened in between (terminate, purge, a new start, continue-as-new); and the ids of
//! sub-orchestrations never collide with another run's or with an instance a user created.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::record::{Event, FailureKind};
use durable_core::{
    ActivityContext, Error, InstanceStatus, ManualClock, OrchestrationContext, Store, activity,
    orchestrator,
};
use tokio::sync::watch;

use crate::common::*;
use crate::patterns::wait_for;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Real time to wait for something that must happen at once.
const WAIT: Duration = Duration::from_secs(30);
/// Real time that shows nothing happened: far longer than a turn takes.
const QUIET: Duration = Duration::from_millis(400);

fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn timers(history: &[Event]) -> usize {
    history
        .iter()
        .filter(|e| matches!(e, Event::TimerCreated { .. }))
        .count()
}

fn children(history: &[Event]) -> Vec<String> {
    history
        .iter()
        .filter_map(|e| match e {
            Event::SubOrchestrationScheduled { instance, .. } => Some(instance.clone()),
            _ => None,
        })
        .collect()
}

/// Sleeps `days` days and returns them.
#[orchestrator]
async fn sleeps(ctx: OrchestrationContext, days: u32) -> Result<u32, String> {
    ctx.sleep(DAY * days).await;
    Ok(days)
}

/// FAILS on the code before incarnations: the terminated and purged instance's one-day
/// timer woke the new instance's ten-day sleep after one day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_of_a_purged_instance_does_not_wake_a_new_instance_under_its_id() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(sleeps)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let old = client.start(sleeps, "nap", 1).await.unwrap();
    wait_for(&store, "nap", |h| timers(h) == 1).await;
    old.terminate("changed my mind").await.unwrap();
    assert!(matches!(
        old.wait(WAIT).await,
        Err(Error::Terminated { .. })
    ));
    client.purge("nap").await.unwrap();

    let new = client.start(sleeps, "nap", 10).await.unwrap();
    assert!(new.is_new());
    wait_for(&store, "nap", |h| timers(h) == 1).await;
    clock.advance(DAY);
    assert!(
        matches!(new.wait(QUIET).await, Err(Error::Timeout { .. })),
        "the new instance's ten-day sleep ended after one day"
    );
    clock.advance(9 * DAY);
    assert_eq!(new.wait(WAIT).await.unwrap(), 10);
    runtime.shutdown().await;
}

/// The same across a restart of the process: the old timer, re-armed from the store,
/// fires into nothing.
#[test]
fn a_timer_of_a_purged_instance_does_not_wake_a_new_instance_after_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(sleeps)
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let old = client.start(sleeps, "nap", 1).await.unwrap();
        wait_for(&store, "nap", |h| timers(h) == 1).await;
        old.terminate("changed my mind").await.unwrap();
        assert!(matches!(
            old.wait(WAIT).await,
            Err(Error::Terminated { .. })
        ));
        client.purge("nap").await.unwrap();
        client.start(sleeps, "nap", 10).await.unwrap();
        wait_for(&store, "nap", |h| timers(h) == 1).await;
    });
    lifetime(async {
        let clock = ManualClock::new(start_time() + DAY);
        let runtime = builder(store.clone())
            .orchestrator(sleeps)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let new = runtime.client().instance(sleeps, "nap");
        assert!(
            matches!(new.wait(QUIET).await, Err(Error::Timeout { .. })),
            "the new instance's ten-day sleep ended after one day"
        );
        clock.advance(9 * DAY);
        assert_eq!(new.wait(WAIT).await.unwrap(), 10);
        runtime.shutdown().await;
    });
}

/// Releases `held` activities: each waits until the value is at least its input.
#[derive(Debug)]
struct Release {
    up_to: watch::Sender<u64>,
    started: AtomicU32,
    keys: std::sync::Mutex<Vec<String>>,
}

/// Returns `n` once the test releases it.
#[activity]
async fn held(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    let release = ctx.state::<Arc<Release>>();
    release
        .keys
        .lock()
        .unwrap()
        .push(ctx.idempotency_key().to_string());
    release.started.fetch_add(1, Ordering::SeqCst);
    let mut rx = release.up_to.subscribe();
    rx.wait_for(|up_to| *up_to >= n).await.unwrap();
    Ok(n)
}

#[orchestrator]
async fn fetches(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(held, n).await?)
}

async fn until_started(release: &Release, n: u32) {
    for _ in 0..4000 {
        if release.started.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{n} activities never started");
}

/// FAILS on the code before incarnations: the new instance returned the purged one's
/// activity output, and both ran under one idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_of_a_purged_instance_does_not_complete_a_new_instance_under_its_id() {
    let (_dir, store) = store();
    let release = Arc::new(Release {
        up_to: watch::Sender::new(0),
        started: AtomicU32::new(0),
        keys: Default::default(),
    });
    let runtime = builder(store.clone())
        .orchestrator(fetches)
        .activity(held)
        .state(release.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let old = client.start(fetches, "fetch", 1).await.unwrap();
    until_started(&release, 1).await;
    old.terminate("replaced").await.unwrap();
    assert!(matches!(
        old.wait(WAIT).await,
        Err(Error::Terminated { .. })
    ));
    client.purge("fetch").await.unwrap();

    let new = client.start(fetches, "fetch", 2).await.unwrap();
    until_started(&release, 2).await;
    // The old activity finishes now: its output is for an instance that is gone.
    release.up_to.send_replace(1);
    assert!(
        matches!(new.wait(QUIET).await, Err(Error::Timeout { .. })),
        "the new instance took the old activity's output"
    );
    release.up_to.send_replace(2);
    assert_eq!(new.wait(WAIT).await.unwrap(), 2);
    let keys = release.keys.lock().unwrap().clone();
    assert_ne!(
        keys[0], keys[1],
        "two incarnations' calls share an idempotency key"
    );
    runtime.shutdown().await;
    // Nothing of the old run is left behind.
    assert_eq!(store.work_items().unwrap(), vec![]);
}

/// Waits for `go` and returns its payload.
#[orchestrator]
async fn waits_for_go_child(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

/// Runs `waits_for_go_child` as the child with the id it is given.
#[orchestrator]
async fn parent_of(ctx: OrchestrationContext, child: String) -> Result<String, String> {
    Ok(ctx
        .sub_orchestration_with_id(waits_for_go_child, child, ())
        .await?)
}

/// FAILS on the code before incarnations: the purged parent's child completed the new
/// parent under its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_of_a_purged_parent_does_not_complete_a_new_parent_under_its_id() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(parent_of)
        .orchestrator(waits_for_go_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let old = client
        .start(parent_of, "parent", "first-child".to_string())
        .await
        .unwrap();
    wait_for(&store, "first-child", |h| !h.is_empty()).await;
    old.terminate("replaced").await.unwrap();
    assert!(matches!(
        old.wait(WAIT).await,
        Err(Error::Terminated { .. })
    ));
    client.purge("parent").await.unwrap();

    let new = client
        .start(parent_of, "parent", "second-child".to_string())
        .await
        .unwrap();
    wait_for(&store, "second-child", |h| !h.is_empty()).await;
    // The old parent's child finishes and reports to a parent that is gone.
    let first = client.instance(waits_for_go_child, "first-child");
    first.raise_event("go", &"from the first").await.unwrap();
    assert_eq!(first.wait(WAIT).await.unwrap(), "from the first");
    assert!(
        matches!(new.wait(QUIET).await, Err(Error::Timeout { .. })),
        "the new parent took the old parent's child's output"
    );
    client
        .raise_event("second-child", "go", &"from the second")
        .await
        .unwrap();
    assert_eq!(new.wait(WAIT).await.unwrap(), "from the second");
    runtime.shutdown().await;
}

/// Calls `chain` as a generated child in each of three generations.
#[orchestrator]
async fn rounds(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let out = ctx.sub_orchestration(chain, n).await?;
    if n < 3 {
        return ctx.continue_as_new(n + 1).await;
    }
    Ok(out)
}

/// FAILS on the code before incarnations: the second generation's child got the first's
/// id and was refused as "already exists"; a parent whose id is at the length limit could
/// not call a child at all; a user's instance `{parent}:0` took the child's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_child_ids_are_unique_per_generation_valid_and_apart_from_user_ids() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(rounds)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    // A user's instance under the id the old scheme generated for the parent's child.
    client.start(chain, "r:0", 5).await.unwrap();
    let long = "L".repeat(durable_core::MAX_INSTANCE_ID_LEN);
    for id in ["r", long.as_str()] {
        let instance = client.start(rounds, id, 1).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 3 * 6, "parent {id:.12}");
    }
    let mut ids: Vec<String> = Vec::new();
    for (id, record) in store.instances().unwrap() {
        if record.orchestrator == "chain" && id != "r:0" {
            assert!(
                id.len() <= durable_core::MAX_INSTANCE_ID_LEN,
                "{id} is too long"
            );
            assert!(matches!(
                record.status,
                durable_core::record::Status::Completed { .. }
            ));
            ids.push(id);
        }
    }
    assert_eq!(
        ids.len(),
        6,
        "one child per generation of each parent: {ids:?}"
    );
    // The user's instance is untouched.
    assert_eq!(client.instance(chain, "r:0").wait(WAIT).await.unwrap(), 30);
    // A user cannot take an id of the kind the runtime generates.
    let generated = children(&store.history("r").unwrap()).pop().unwrap();
    let err = client.start(chain, generated.clone(), 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInstanceId { .. }),
        "{generated}: {err:?}"
    );
    runtime.shutdown().await;
}

/// Fails for `attempt` 1, succeeds after.
#[orchestrator]
async fn flaky_child(_ctx: OrchestrationContext, attempt: u32) -> Result<u32, String> {
    if attempt == 1 {
        return Err("first attempt fails".into());
    }
    Ok(attempt)
}

/// Starts `flaky_child` under one explicit id until it succeeds, at most three times.
#[orchestrator]
async fn retries_child(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let mut seen = Vec::new();
    for attempt in 1..=3 {
        match ctx
            .sub_orchestration_with_id(flaky_child, "the-child", attempt)
            .await
        {
            Ok(out) => return Ok(format!("{seen:?} then ok {out}")),
            Err(e) => seen.push(match e.failure().kind {
                FailureKind::Returned { .. } => "returned",
                FailureKind::Rejected => "rejected",
                _ => "other",
            }),
        }
    }
    Err(format!("gave up: {seen:?}"))
}

/// Starts `waits_for_go_child` under the id `busy` and reports how the call ended.
#[orchestrator]
async fn starts_busy(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    match ctx
        .sub_orchestration_with_id(waits_for_go_child, "busy", ())
        .await
    {
        Ok(out) => Ok(format!("ran: {out}")),
        Err(e) => Ok(format!("{:?}: {}", e.failure().kind, e.message())),
    }
}

/// FAILS on the code before this change: the retry under the same id was refused as
/// "already exists" though the first child had finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_can_be_started_again_under_its_id_but_not_a_running_one() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(retries_child)
        .orchestrator(flaky_child)
        .orchestrator(starts_busy)
        .orchestrator(waits_for_go_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let parent = client.start(retries_child, "retrier", ()).await.unwrap();
    assert_eq!(parent.wait(WAIT).await.unwrap(), "[\"returned\"] then ok 2");
    assert_eq!(
        client
            .instance(flaky_child, "the-child")
            .wait(WAIT)
            .await
            .unwrap(),
        2
    );

    // While the child runs, another start under its id is refused.
    let first = client.start(starts_busy, "first", ()).await.unwrap();
    wait_for(&store, "busy", |h| !h.is_empty()).await;
    let second = client.start(starts_busy, "second", ()).await.unwrap();
    let refused = second.wait(WAIT).await.unwrap();
    assert!(
        refused.starts_with("Rejected: ") && refused.contains("busy"),
        "{refused}"
    );
    client.raise_event("busy", "go", &"done").await.unwrap();
    assert_eq!(first.wait(WAIT).await.unwrap(), "ran: done");
    assert!(matches!(
        client
            .instance(starts_busy, "second")
            .status()
            .await
            .unwrap(),
        InstanceStatus::Completed(_)
    ));
    runtime.shutdown().await;
}

fn release() -> Arc<Release> {
    Arc::new(Release {
        up_to: watch::Sender::new(0),
        started: AtomicU32::new(0),
        keys: Default::default(),
    })
}

/// FAILS on the code before this change: after a restart the purged instance's activity
/// ran again, and the terminated instance's timer waited in the store for its day.
#[test]
fn a_restart_removes_the_work_of_terminated_and_purged_instances() {
    let (_dir, store) = store();
    lifetime(async {
        let held_back = release();
        let runtime = builder(store.clone())
            .orchestrator(fetches)
            .orchestrator(sleeps)
            .activity(held)
            .state(held_back.clone())
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let fetch = client.start(fetches, "fetch", 1).await.unwrap();
        until_started(&held_back, 1).await;
        fetch.terminate("not needed").await.unwrap();
        assert!(matches!(
            fetch.wait(WAIT).await,
            Err(Error::Terminated { .. })
        ));
        client.purge("fetch").await.unwrap();
        let nap = client.start(sleeps, "nap", 1).await.unwrap();
        wait_for(&store, "nap", |h| timers(h) == 1).await;
        nap.terminate("not needed").await.unwrap();
        assert!(matches!(
            nap.wait(WAIT).await,
            Err(Error::Terminated { .. })
        ));
        // The activity still runs and the timer still waits: both are in the store.
        assert_eq!(store.work_items().unwrap().len(), 2);
    });
    lifetime(async {
        let held_back = release();
        held_back.up_to.send_replace(u64::MAX);
        let runtime = builder(store.clone())
            .orchestrator(fetches)
            .orchestrator(sleeps)
            .activity(held)
            .state(held_back.clone())
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        assert_eq!(store.work_items().unwrap(), vec![]);
        assert!(store.instance("fetch").unwrap().is_none());
        runtime.shutdown().await;
        assert_eq!(
            held_back.started.load(Ordering::SeqCst),
            0,
            "the purged instance's activity ran again"
        );
    });
}
