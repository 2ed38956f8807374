//! `Client::start_with`: a delayed start runs its first turn at its time by the runtime's
//! clock (a `ManualClock` here), not before, across a restart; an execution timeout fails
//! the instance as timed out whatever it waits on, across a restart and across
//! continue-as-new.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::admin::Admin;
use durable_core::record::{Event, FailureKind};
use durable_core::{
    Error, InstanceStatus, ManualClock, OrchestrationContext, StartOptions, StatusKind, Store,
    orchestrator,
};

use crate::common::*;

const HOUR: Duration = Duration::from_secs(60 * 60);
/// Real time to wait for something that must happen at once.
const WAIT: Duration = Duration::from_secs(20);
/// Real time that shows nothing ran: far longer than a turn takes.
const QUIET: Duration = Duration::from_millis(300);

fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Returns when its first turn ran, by the clock, in seconds since the Unix epoch.
#[orchestrator]
async fn report_start(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.now().duration_since(UNIX_EPOCH).unwrap().as_secs())
}

/// Waits for an event that never comes.
#[orchestrator]
async fn wait_forever(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.wait_event::<()>("never").await;
    Ok(())
}

/// Takes one `next` event per generation, forever.
#[orchestrator]
async fn one_per_generation(ctx: OrchestrationContext, n: u32) -> Result<u32, String> {
    ctx.wait_event::<()>("next").await;
    ctx.continue_as_new(n + 1).await
}

async fn status_kind(client: &durable_core::Client, id: &str) -> StatusKind {
    client.record(id).await.unwrap().unwrap().status.kind()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_start_is_pending_until_its_time_and_then_runs() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(report_start)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().start_at(start_time() + HOUR);
    let instance = client
        .start_with(report_start, "later", (), options)
        .await
        .unwrap();
    assert!(instance.is_new());
    // Recorded at once: listed as pending, its id taken.
    assert_eq!(status_kind(&client, "later").await, StatusKind::Pending);
    let again = client.start(report_start, "later", ()).await.unwrap();
    assert!(!again.is_new(), "a second start of the id returns it");
    // `durable show` and the dashboard say when it starts.
    let admin = Admin::new(client.clone());
    let detail = admin.instance("later").await.unwrap().unwrap();
    let hour_ms = (start_time() + HOUR).duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(detail.starts_at_ms, Some(hour_ms.as_millis() as u64));
    assert_eq!(detail.summary.status, "pending");

    clock.advance(HOUR - Duration::from_millis(1));
    assert!(
        matches!(instance.wait(QUIET).await, Err(Error::Timeout { .. })),
        "started a millisecond early"
    );
    assert_eq!(status_kind(&client, "later").await, StatusKind::Pending);
    assert!(store.history("later").unwrap().is_empty());
    clock.advance(Duration::from_millis(1));
    let started = UNIX_EPOCH + Duration::from_secs(instance.wait(WAIT).await.unwrap());
    assert_eq!(started, start_time() + HOUR);
    let detail = admin.instance("later").await.unwrap().unwrap();
    assert_eq!(detail.starts_at_ms, None);
    runtime.shutdown().await;
}

#[test]
fn a_delayed_start_waits_for_its_time_across_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(report_start)
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        let options = StartOptions::new().start_delay(2 * HOUR);
        (runtime.client())
            .start_with(report_start, "after-restart", (), options)
            .await
            .unwrap();
    });
    lifetime(async {
        // The next process starts an hour later: the start is armed again, not run.
        let clock = ManualClock::new(start_time() + HOUR);
        let runtime = builder(store.clone())
            .orchestrator(report_start)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let instance = client.instance(report_start, "after-restart");
        assert!(matches!(
            instance.wait(QUIET).await,
            Err(Error::Timeout { .. })
        ));
        assert_eq!(
            status_kind(&client, "after-restart").await,
            StatusKind::Pending
        );
        clock.advance(HOUR);
        let started = UNIX_EPOCH + Duration::from_secs(instance.wait(WAIT).await.unwrap());
        assert_eq!(started, start_time() + 2 * HOUR);
        runtime.shutdown().await;
    });
}

fn timed_out(status: InstanceStatus<impl std::fmt::Debug>) {
    match status {
        InstanceStatus::Failed(failure) => assert_eq!(failure.kind, FailureKind::TimedOut),
        other => panic!("expected a timed-out failure, got {other:?}"),
    }
}

#[test]
fn an_execution_timeout_fails_an_instance_waiting_for_an_event_across_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(wait_forever)
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        let options = StartOptions::new().execution_timeout(3 * HOUR);
        (runtime.client())
            .start_with(wait_forever, "bounded", (), options)
            .await
            .unwrap();
        crate::patterns::wait_for(&store, "bounded", |h| {
            h.iter().any(|e| matches!(e, Event::EventAwaited { .. }))
        })
        .await;
    });
    lifetime(async {
        let clock = ManualClock::new(start_time() + 2 * HOUR);
        let runtime = builder(store.clone())
            .orchestrator(wait_forever)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let instance = client.instance(wait_forever, "bounded");
        assert!(matches!(
            instance.wait(QUIET).await,
            Err(Error::Timeout { .. })
        ));
        clock.advance(HOUR - Duration::from_millis(1));
        assert!(
            matches!(instance.wait(QUIET).await, Err(Error::Timeout { .. })),
            "timed out a millisecond early"
        );
        clock.advance(Duration::from_millis(1));
        assert!(matches!(
            instance.wait(WAIT).await,
            Err(Error::Failed { .. })
        ));
        timed_out(instance.status().await.unwrap());
        let history = store.history("bounded").unwrap();
        assert!(
            history
                .iter()
                .any(|e| matches!(e, Event::ExecutionTimedOut)),
            "{history:?}"
        );
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_timeout_spans_continue_as_new() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(one_per_generation)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let options = StartOptions::new().execution_timeout(3 * HOUR);
    let instance = client
        .start_with(one_per_generation, "chain", 0, options)
        .await
        .unwrap();
    let deadline_ms = (start_time() + 3 * HOUR)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for generation in 1..=3 {
        clock.advance(HOUR / 2);
        instance.raise_event("next", &()).await.unwrap();
        for _ in 0..4000 {
            if client.record("chain").await.unwrap().unwrap().generation == generation {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            client.record("chain").await.unwrap().unwrap().generation,
            generation
        );
        // Each generation's history records the chain's deadline again.
        crate::patterns::wait_for(&store, "chain", |h| {
            h.iter()
                .any(|e| matches!(e, Event::ExecutionDeadline { at_ms } if *at_ms == deadline_ms))
        })
        .await;
    }
    let detail = Admin::new(client.clone()).instance("chain").await.unwrap();
    assert_eq!(detail.unwrap().deadline_ms, Some(deadline_ms));
    clock.advance(HOUR + HOUR / 2 - Duration::from_millis(1));
    assert!(matches!(
        instance.wait(QUIET).await,
        Err(Error::Timeout { .. })
    ));
    clock.advance(Duration::from_millis(1));
    assert!(matches!(
        instance.wait(WAIT).await,
        Err(Error::Failed { .. })
    ));
    timed_out(instance.status().await.unwrap());
    runtime.shutdown().await;
}
