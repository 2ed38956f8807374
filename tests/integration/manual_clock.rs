//! A runtime on a `ManualClock`: workflows that wait for weeks run in a test at once, their
//! timers firing when the test moves the clock past them, never before, across restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::record::Event;
use durable_core::{
    ActivityContext, Clock, Either, Error, InstanceQuery, ManualClock, OrchestrationContext,
    RetryPolicy, activity, orchestrator,
};

use crate::common::*;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Real time to wait for something that must happen at once.
const WAIT: Duration = Duration::from_secs(20);
/// Real time that shows a timer did not fire: far longer than a turn takes.
const QUIET: Duration = Duration::from_millis(300);

fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Waits up to thirty days for an approval; escalates without one. Returns what happened
/// and how many days passed by `ctx.now()`.
#[orchestrator]
async fn approval(ctx: OrchestrationContext, _: ()) -> Result<(String, u64), String> {
    let asked = ctx.now();
    let outcome = match ctx
        .select2(ctx.wait_event::<String>("approval"), ctx.sleep(30 * DAY))
        .await
    {
        Either::Left(by) => format!("approved by {by}"),
        Either::Right(()) => "escalated".to_string(),
    };
    let days = ctx.now().duration_since(asked).unwrap().as_secs() / DAY.as_secs();
    Ok((outcome, days))
}

#[activity]
async fn fails_first(ctx: ActivityContext, _: ()) -> Result<u32, String> {
    if ctx.attempt() < 3 {
        return Err(format!("attempt {} failed", ctx.attempt()));
    }
    Ok(ctx.attempt())
}

/// Retries with hour-long waits between attempts.
#[orchestrator]
async fn patient(ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
    let policy = RetryPolicy::fixed(5, Duration::from_secs(60 * 60));
    Ok(ctx.call_with_retry(fails_first, (), policy).await?)
}

fn timers(history: &[Event]) -> usize {
    history
        .iter()
        .filter(|e| matches!(e, Event::TimerCreated { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_day_timeout_fires_when_the_clock_passes_it_and_not_before() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(approval)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(approval, "expense-1", ())
        .await
        .unwrap();
    crate::patterns::wait_for(&store, "expense-1", |h| timers(h) == 1).await;

    clock.advance(30 * DAY - Duration::from_millis(1));
    assert!(
        matches!(instance.wait(QUIET).await, Err(Error::Timeout { .. })),
        "fired a millisecond early"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        instance.wait(WAIT).await.unwrap(),
        ("escalated".to_string(), 30)
    );
    // The instance's timestamps are the clock's too.
    let listed = runtime.client().list(&InstanceQuery::new()).await.unwrap();
    let summary = &listed.instances[0];
    assert_eq!(summary.created_at, start_time());
    assert_eq!(
        summary
            .updated_at
            .duration_since(summary.created_at)
            .unwrap(),
        30 * DAY
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_before_the_timeout_wins_and_the_clock_reads_when_it_came() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(approval)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(approval, "expense-2", ())
        .await
        .unwrap();
    crate::patterns::wait_for(&store, "expense-2", |h| timers(h) == 1).await;
    clock.advance(12 * DAY);
    instance
        .raise_event("approval", &"ana".to_string())
        .await
        .unwrap();
    assert_eq!(
        instance.wait(WAIT).await.unwrap(),
        ("approved by ana".to_string(), 12)
    );
    runtime.shutdown().await;
}

#[test]
fn a_timer_waits_for_the_clock_across_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(approval)
            .clock(ManualClock::new(start_time()))
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(approval, "expense-3", ())
            .await
            .unwrap();
        crate::patterns::wait_for(&store, "expense-3", |h| timers(h) == 1).await;
    });
    lifetime(async {
        // The next process starts 29 days later: the timer is re-armed, not fired.
        let clock = ManualClock::new(start_time() + 29 * DAY);
        let runtime = builder(store.clone())
            .orchestrator(approval)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(approval, "expense-3");
        assert!(matches!(
            instance.wait(QUIET).await,
            Err(Error::Timeout { .. })
        ));
        clock.advance(DAY);
        assert_eq!(
            instance.wait(WAIT).await.unwrap(),
            ("escalated".to_string(), 30)
        );
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_backoff_waits_on_the_clock() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = builder(store.clone())
        .orchestrator(patient)
        .activity(fails_first)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(patient, "patient", ())
        .await
        .unwrap();
    for waits in 1..=2 {
        crate::patterns::wait_for(&store, "patient", |h| timers(h) == waits).await;
        assert!(matches!(
            instance.wait(QUIET).await,
            Err(Error::Timeout { .. })
        ));
        clock.advance(Duration::from_secs(60 * 60));
    }
    assert_eq!(instance.wait(WAIT).await.unwrap(), 3);
    assert_eq!(clock.now(), start_time() + Duration::from_secs(2 * 60 * 60));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_skipping_clock_runs_retries_with_backoff_without_the_test_moving_it() {
    let (_dir, store) = store();
    let clock = ManualClock::time_skipping(start_time());
    let runtime = builder(store.clone())
        .orchestrator(patient)
        .activity(fails_first)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(patient, "skip", ()).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 3);
    assert_eq!(
        clock.now(),
        start_time() + Duration::from_secs(2 * 60 * 60),
        "two hour-long waits, skipped"
    );
    runtime.shutdown().await;
}

/// Tells the test it runs, and finishes once the test opens its gate.
#[derive(Debug)]
struct Held {
    running: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
    clock: ManualClock,
}

/// Runs until the test lets it go; returns the clock's time then.
#[activity]
async fn held(ctx: ActivityContext, _: ()) -> Result<SystemTime, String> {
    let signals = ctx.state::<std::sync::Arc<Held>>();
    signals.running.notify_one();
    let _ = signals.gate.acquire().await.map_err(|e| e.to_string())?;
    Ok(signals.clock.now())
}

/// Runs `held` and waits a day, side by side; returns when `held` finished by the clock,
/// and the time at the end.
#[orchestrator]
async fn held_and_a_day(
    ctx: OrchestrationContext,
    _: (),
) -> Result<(SystemTime, SystemTime), String> {
    let (finished, ()) = ctx.join2(ctx.call(held, ()), ctx.sleep(DAY)).await;
    Ok((finished?, ctx.now()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_skipping_clock_holds_still_while_an_activity_runs() {
    let (_dir, store) = store();
    let clock = ManualClock::time_skipping(start_time());
    let signals = std::sync::Arc::new(Held {
        running: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
        clock: clock.clone(),
    });
    let runtime = builder(store.clone())
        .orchestrator(held_and_a_day)
        .activity(held)
        .state(signals.clone())
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(held_and_a_day, "held", ())
        .await
        .unwrap();
    signals.running.notified().await;
    // Time enough for a skip to happen, were the clock to skip while the activity runs.
    tokio::time::sleep(QUIET).await;
    assert_eq!(clock.now(), start_time(), "skipped while an activity ran");
    signals.gate.add_permits(1);
    let (finished, end) = instance.wait(WAIT).await.unwrap();
    assert_eq!(finished, start_time(), "the activity ran at the start time");
    assert_eq!(end, start_time() + DAY, "then the day was skipped");
    runtime.shutdown().await;
}
