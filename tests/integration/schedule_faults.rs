//! Schedules under the cases an adversarial review of issue 16 tried: a tick whose
//! run's id another orchestrator holds, and an action that carries start options.

use std::time::Duration;

use durable_core::record::{Event, FailureKind, Status};
use durable_core::schedule::{OverlapPolicy, run_id};
use durable_core::{
    ManualClock, OrchestrationContext, Runtime, StartOptions, StatusKind, Store, orchestrator,
};

use crate::common::store;
use crate::schedules::{describe, every_minute, exists, job, start_time, status, tick, until};

/// Holds an id the schedule would give a run.
#[orchestrator(name = "squatter")]
async fn squatter(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    ctx.wait_event::<()>("never").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_whose_run_id_another_orchestrator_holds_is_skipped_not_retried_forever() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = Runtime::builder(store)
        .schedules()
        .orchestrator(job)
        .orchestrator(squatter)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let schedule = client
        .create_schedule("s", every_minute(OverlapPolicy::AllowAll))
        .await
        .unwrap();
    let taken = run_id("s", tick(1));
    client.start(squatter, taken.clone(), ()).await.unwrap();
    clock.set(tick(1));
    until("tick 1 was handled", || async {
        describe(&schedule).await.skipped == 1
    })
    .await;
    clock.set(tick(2));
    let run = run_id("s", tick(2));
    // Its start kept in the schedule's state, not only made.
    until("tick 2 ran", || async {
        exists(&client, &run).await && describe(&schedule).await.started == 1
    })
    .await;
    let d = describe(&schedule).await;
    assert_eq!((d.started, d.skipped), (1, 1));
    assert_eq!(
        d.recent_runs.len(),
        1,
        "the squatter is not the schedule's run"
    );
    assert_eq!(d.recent_runs[0].instance_id, run);
    assert_eq!(status(&client, &taken).await, Some(StatusKind::Running));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_s_execution_timeout_bounds_each_run_and_a_timeout_pauses_on_failure() {
    let (_dir, store) = store();
    let clock = ManualClock::new(start_time());
    let runtime = Runtime::builder(store.clone())
        .schedules()
        .orchestrator(job)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let mut schedule = every_minute(OverlapPolicy::Skip).pause_on_failure(true);
    let options = StartOptions::new().execution_timeout(Duration::from_secs(30));
    schedule.action = schedule.action.options(options);
    let handle = client.create_schedule("s", schedule).await.unwrap();
    clock.set(tick(1));
    let run = run_id("s", tick(1));
    // Its start kept in the schedule's state: the generation after it waits on its poll.
    until("tick 1 ran", || async {
        exists(&client, &run).await && describe(&handle).await.started == 1
    })
    .await;
    clock.set(tick(1) + Duration::from_secs(30));
    until("the run timed out", || async {
        status(&client, &run).await == Some(StatusKind::Failed)
    })
    .await;
    match client.record(&run).await.unwrap().unwrap().status {
        Status::Failed { failure } => assert_eq!(failure.kind, FailureKind::TimedOut),
        other => panic!("{other:?}"),
    }
    // The schedule reads its run's status each second (status_poll): one more poll, from
    // whenever its generation began on a loaded machine.
    let mut at = tick(1) + Duration::from_secs(30);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while describe(&handle).await.paused.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule never paused"
        );
        at += Duration::from_secs(1);
        clock.set(at);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = describe(&handle).await;
    assert!(d.paused.unwrap().contains(&run));
    assert_eq!(*d.schedule.action.start_options(), options);
    // Each wake records what it computed: a replay does not compute ticks again. (The
    // generation after the pause records its wake in its first turn.)
    until("the wake recorded", || async {
        let history = store.history("schedule:s").unwrap();
        (history.iter()).any(|e| matches!(e, Event::Recorded { what, .. } if what == "side_effect"))
    })
    .await;
    runtime.shutdown().await;
}
