//! Delayed starts and execution timeouts in the cases an adversarial review of issue 16
//! tried: a delayed instance terminated or suspended before its time, a timeout shorter
//! than the delay, a start time in the past, and a delayed start across continue-as-new.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::record::{Event, FailureKind};
use durable_core::{
    Error, InstanceStatus, ManualClock, OrchestrationContext, StartOptions, StatusKind, Store,
    orchestrator,
};

use crate::common::*;

const HOUR: Duration = Duration::from_secs(60 * 60);
const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Returns when its first turn ran, in seconds since the Unix epoch.
#[orchestrator(name = "review-report-start")]
async fn report_start(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.now().duration_since(UNIX_EPOCH).unwrap().as_secs())
}

/// Continues as new once, then waits for an event that never comes.
#[orchestrator(name = "review-renewing")]
async fn renewing(ctx: OrchestrationContext, n: u32) -> Result<(), String> {
    if n == 0 {
        return ctx.continue_as_new(1).await;
    }
    ctx.wait_event::<()>("never").await;
    Ok(())
}

async fn status_kind(client: &durable_core::Client, id: &str) -> StatusKind {
    client.record(id).await.unwrap().unwrap().status.kind()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_instance_terminated_before_its_time_never_runs() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(report_start)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().start_delay(HOUR);
    let instance = (client.start_with(report_start, "cancelled", (), options))
        .await
        .unwrap();
    client.terminate("cancelled", "not needed").await.unwrap();
    assert!(matches!(
        instance.wait(WAIT).await,
        Err(Error::Terminated { .. })
    ));
    clock.advance(2 * HOUR);
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        status_kind(&client, "cancelled").await,
        StatusKind::Terminated
    );
    let history = store.history("cancelled").unwrap();
    assert!(
        !history.iter().any(|e| matches!(e, Event::Started { .. })),
        "{history:?}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_instance_suspended_past_its_time_starts_once_resumed() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(report_start)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().start_delay(HOUR);
    let instance = (client.start_with(report_start, "held", (), options))
        .await
        .unwrap();
    client.suspend("held", "hold on").await.unwrap();
    until_suspended(&instance).await;
    clock.advance(2 * HOUR);
    assert!(matches!(
        instance.wait(QUIET).await,
        Err(Error::Timeout { .. })
    ));
    assert_eq!(status_kind(&client, "held").await, StatusKind::Suspended);
    client.resume("held").await.unwrap();
    let started = UNIX_EPOCH + Duration::from_secs(instance.wait(WAIT).await.unwrap());
    assert!(started >= start_time() + HOUR, "started before its time");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_shorter_than_the_delay_counts_from_the_start_time() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(renewing)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new()
        .start_delay(2 * HOUR)
        .execution_timeout(HOUR);
    let instance = (client.start_with(renewing, "short", 0, options))
        .await
        .unwrap();
    clock.advance(2 * HOUR);
    // Ran, continued as new, and waits: not timed out at its start.
    for _ in 0..4000 {
        if client.record("short").await.unwrap().unwrap().generation == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.record("short").await.unwrap().unwrap().generation, 1);
    assert!(matches!(
        instance.wait(QUIET).await,
        Err(Error::Timeout { .. })
    ));
    clock.advance(HOUR);
    assert!(matches!(
        instance.wait(WAIT).await,
        Err(Error::Failed { .. })
    ));
    match instance.status().await.unwrap() {
        InstanceStatus::Failed(failure) => assert_eq!(failure.kind, FailureKind::TimedOut),
        other => panic!("expected a timed-out failure, got {other:?}"),
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_time_in_the_past_starts_at_once() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(report_start)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().start_at(start_time() - HOUR);
    let instance = (client.start_with(report_start, "past", (), options))
        .await
        .unwrap();
    let started = UNIX_EPOCH + Duration::from_secs(instance.wait(WAIT).await.unwrap());
    assert_eq!(started, start_time());
    runtime.shutdown().await;
}

/// At most one instance runs at once; waits for `go`, then returns when its first turn
/// ran.
#[orchestrator(name = "review-one-at-a-time", max_running = 1)]
async fn one_at_a_time(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let started = ctx.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    ctx.wait_event::<()>("go").await;
    Ok(started)
}

/// Temporal and DBOS do not count a run that has not started against a limit: neither
/// does `max_running`. And the delayed one starts at its time (its timer, fired on a
/// worker that does not hold it, used to stay in the store for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_start_holds_no_slot_of_max_running_while_it_waits() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(one_at_a_time)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().start_delay(HOUR);
    let later = (client.start_with(one_at_a_time, "later", (), options))
        .await
        .unwrap();
    let now = client.start(one_at_a_time, "now", ()).await.unwrap();
    for _ in 0..4000 {
        if status_kind(&client, "now").await == StatusKind::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        status_kind(&client, "now").await,
        StatusKind::Running,
        "waited for the slot the delayed one held"
    );
    assert_eq!(status_kind(&client, "later").await, StatusKind::Pending);
    now.raise_event("go", &()).await.unwrap();
    now.wait(WAIT).await.unwrap();
    clock.advance(HOUR);
    later.raise_event("go", &()).await.unwrap();
    let started = UNIX_EPOCH + Duration::from_secs(later.wait(WAIT).await.unwrap());
    assert_eq!(started, start_time() + HOUR);
    runtime.shutdown().await;
}
