//! Attempts of an activity call: each execution counts once, whether a retry or a
//! redelivery after a crash; an attempt's timeout bounds its execution only (start to
//! close), and an attempt given up on is cancelled before its retry starts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_core::{ActivityContext, OrchestrationContext, RetryPolicy, activity, orchestrator};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

/// What the executions of an activity saw, in the order they happened.
type Log = crate::common::Log<String>;

/// Logs the attempt it reads. Its first execution never ends (the process then
/// "crashes"), the second fails, the third succeeds with the attempt it read.
#[activity]
async fn lost_then_flaky(ctx: ActivityContext, _: ()) -> Result<u32, String> {
    let executions = ctx.state::<Arc<Log>>().push(ctx.attempt().to_string());
    match executions {
        1 => std::future::pending().await,
        2 => Err("transient".into()),
        _ => Ok(ctx.attempt()),
    }
}

#[orchestrator]
async fn retried_across_a_crash(ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
    let policy = RetryPolicy::fixed(5, Duration::from_millis(1));
    Ok(ctx.call_with_retry(lost_then_flaky, (), policy).await?)
}

#[test]
fn an_execution_lost_in_a_crash_counts_as_an_attempt() {
    let (_dir, store) = store();
    let log = Arc::new(Log::default());
    let runtime = || {
        builder(store.clone())
            .orchestrator(retried_across_a_crash)
            .activity(lost_then_flaky)
            .state(log.clone())
    };
    lifetime(async {
        let runtime = runtime().start().await.unwrap();
        let client = runtime.client();
        client.start(retried_across_a_crash, "a", ()).await.unwrap();
        log.until_len(1).await;
    });
    let output = lifetime(async {
        let runtime = runtime().start().await.unwrap();
        let instance = runtime.client().instance(retried_across_a_crash, "a");
        let output = instance.wait(WAIT).await.unwrap();
        runtime.shutdown().await;
        output
    });
    assert_eq!(
        log.entries(),
        ["1", "2", "3"],
        "the attempts each execution read"
    );
    assert_eq!(output, 3, "the attempt that succeeded");
}

/// One execution: which call, which attempt, when it started and ended.
#[derive(Debug)]
struct Run {
    call: u32,
    attempt: u32,
    started: Instant,
    ended: Instant,
}

#[derive(Debug, Default)]
struct Runs(Mutex<Vec<Run>>);

/// Takes 300 ms; returns the attempt it was.
#[activity]
async fn takes_300ms(ctx: ActivityContext, call: u32) -> Result<u32, String> {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.state::<Arc<Runs>>().0.lock().unwrap().push(Run {
        call,
        attempt: ctx.attempt(),
        started,
        ended: Instant::now(),
    });
    Ok(ctx.attempt())
}

/// Four calls at once, each with up to three attempts of at most 500 ms.
#[orchestrator]
async fn four_at_once(ctx: OrchestrationContext, _: ()) -> Result<Vec<u32>, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(10))
        .attempt_timeout(Duration::from_millis(500));
    let calls = (0..4)
        .map(|call| Box::pin(ctx.call_with_retry(takes_300ms, call, policy.clone())))
        .collect();
    let mut attempts = Vec::new();
    for result in ctx.join_all(calls).await {
        attempts.push(result?);
    }
    Ok(attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_slot_does_not_count_against_the_attempt_timeout() {
    let (_dir, store) = store();
    let runs = Arc::new(Runs::default());
    let runtime = builder(store.clone())
        .orchestrator(four_at_once)
        .activity(takes_300ms)
        .activity_concurrency(1)
        .state(runs.clone())
        .start()
        .await
        .unwrap();
    let instance = runtime
        .client()
        .start(four_at_once, "four", ())
        .await
        .unwrap();
    let attempts = instance.wait(WAIT).await.unwrap();
    runtime.shutdown().await;
    assert_eq!(
        attempts,
        [1, 1, 1, 1],
        "every call succeeded on its first attempt"
    );
    let runs = runs.0.lock().unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.call, r.attempt)).collect::<Vec<_>>(),
        [(0, 1), (1, 1), (2, 1), (3, 1)],
        "one execution per call, in call order"
    );
    for pair in runs.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "two executions overlapped in the only slot: {pair:?}"
        );
    }
}

/// Logs `cancelled 1` when dropped before the first attempt's wait is over: the attempt was
/// cancelled.
struct CancelledUnlessDone {
    log: Arc<Log>,
    done: bool,
}

impl Drop for CancelledUnlessDone {
    fn drop(&mut self) {
        if !self.done {
            self.log.push("cancelled 1");
        }
    }
}

/// How long the first attempt of `slow_first` takes before its effect.
const SLOW: Duration = Duration::from_millis(1500);

/// The first attempt takes `SLOW` before writing its effect; later ones are quick.
#[activity]
async fn slow_first(ctx: ActivityContext, _: ()) -> Result<u32, String> {
    let log = ctx.state::<Arc<Log>>().clone();
    log.push(format!("start {}", ctx.attempt()));
    if ctx.attempt() == 1 {
        let mut guard = CancelledUnlessDone {
            log: log.clone(),
            done: false,
        };
        tokio::time::sleep(SLOW).await;
        guard.done = true;
        log.push("effect 1");
    }
    log.push(format!("end {}", ctx.attempt()));
    Ok(ctx.attempt())
}

#[orchestrator]
async fn bounded(ctx: OrchestrationContext, _: ()) -> Result<u32, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(10))
        .attempt_timeout(Duration::from_millis(200));
    Ok(ctx.call_with_retry(slow_first, (), policy).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_cancelled_before_its_retry_starts() {
    let (_dir, store) = store();
    let log = Arc::new(Log::default());
    let runtime = builder(store.clone())
        .orchestrator(bounded)
        .activity(slow_first)
        .state(log.clone())
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let instance = runtime.client().start(bounded, "b", ()).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 2);
    // Past the moment the first attempt would have written its effect, had it gone on.
    tokio::time::sleep((started + SLOW + Duration::from_millis(500)) - Instant::now()).await;
    assert_eq!(
        log.entries(),
        ["start 1", "cancelled 1", "start 2", "end 2"],
        "the first attempt stopped at its timeout, before its retry began"
    );
    runtime.shutdown().await;
}

/// Never finishes.
#[activity]
async fn hangs(_ctx: ActivityContext, _: ()) -> Result<u32, String> {
    std::future::pending().await
}

/// One attempt of at most 100 ms; says how it ended.
#[orchestrator]
async fn gives_up(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let policy =
        RetryPolicy::fixed(1, Duration::from_millis(1)).attempt_timeout(Duration::from_millis(100));
    match ctx.call_with_retry(hangs, (), policy).await {
        Ok(_) => Ok("finished".into()),
        Err(e) => Ok(format!("timeout: {}; {e}", e.is_timeout())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_past_its_timeout_fails_the_call_as_timed_out() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(gives_up)
        .activity(hangs)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(gives_up, "g", ()).await.unwrap();
    assert_eq!(
        instance.wait(WAIT).await.unwrap(),
        "timeout: true; activity `hangs` failed on attempt 1: timed out after 100ms"
    );
    // The attempt was cancelled: shutting down does not wait for it.
    tokio::time::timeout(WAIT, runtime.shutdown())
        .await
        .expect("shutdown waited for the attempt that timed out");
}
