//! Two runtimes on one store are two workers (`durable_store::lease`): each runs the
//! instances it holds, a message for an instance the other holds goes through the store
//! to it, and what a worker held when it left is taken over by the other. On fjall, one
//! handle shared in one process; `postgres.rs` runs workers in separate handles.

use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use durable_store::{FjallStore, Store};

use crate::common::{chain, double, lifetime, store, triple};

const WAIT: Duration = Duration::from_secs(60);

#[activity]
async fn stamp(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n + ctx.state::<Worker>().0)
}

/// Which runtime an activity ran on: 1000 or 2000.
#[derive(Debug)]
struct Worker(u64);

/// Stamps `n` with the worker that runs the activity, waits for `go`, then runs the chain
/// on it as a child.
#[orchestrator]
async fn relay(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let stamped = ctx.call(stamp, n).await?;
    let go = ctx.wait_event::<u64>("go").await;
    let chained = ctx.sub_orchestration(chain, go).await?;
    Ok(stamped * 1_000_000 + chained)
}

fn worker(store: &FjallStore, n: u64) -> durable_core::RuntimeBuilder {
    Runtime::builder(store.clone())
        .orchestrator(relay)
        .orchestrator(chain)
        .activity(stamp)
        .activity(double)
        .activity(triple)
        .state(std::sync::Arc::new(crate::common::Calls::default()))
        .state(Worker(n * 1000))
}

#[test]
fn events_sent_through_another_worker_reach_the_instances_the_first_holds() {
    let (_dir, store) = store();
    lifetime(async {
        let a = worker(&store, 1).start().await.unwrap();
        let b = worker(&store, 2).start().await.unwrap();
        let mut started = Vec::new();
        for i in 0..10 {
            started.push(a.client().start(relay, format!("r{i}"), i).await.unwrap());
        }
        for i in 0..10 {
            // Raised through the runtime that does not hold the instance.
            b.client()
                .raise_event(&format!("r{i}"), "go", &i)
                .await
                .unwrap();
        }
        for (i, instance) in (0..10).zip(&started) {
            // The activity ran on the worker that holds the instance: `a`.
            assert_eq!(
                instance.wait(WAIT).await.unwrap(),
                (i + 1000) * 1_000_000 + i * 6
            );
        }
        b.shutdown().await;
        a.shutdown().await;
    });
}

#[test]
fn what_a_worker_held_when_it_left_is_taken_over_by_the_other() {
    let (_dir, store) = store();
    lifetime(async {
        let a = worker(&store, 1).start().await.unwrap();
        let b = worker(&store, 2).start().await.unwrap();
        for i in 0..10 {
            a.client().start(relay, format!("r{i}"), i).await.unwrap();
        }
        // Each instance has run its activity on `a` and waits for `go`.
        for i in 0..10 {
            let id = format!("r{i}");
            // Started, scheduled, done (not counting the turns' times).
            while (store.history(&id).unwrap().iter())
                .filter(|e| !matches!(e, durable_store::Event::TurnStarted { .. }))
                .count()
                < 3
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        a.shutdown().await;
        let replays = b.replay_count();
        for i in 0..10 {
            b.client()
                .raise_event(&format!("r{i}"), "go", &i)
                .await
                .unwrap();
        }
        for i in 0..10 {
            let instance = b.client().instance(relay, format!("r{i}"));
            assert_eq!(
                instance.wait(WAIT).await.unwrap(),
                (i + 1000) * 1_000_000 + i * 6
            );
        }
        // `b` rebuilt each instance from its history: it had never run them.
        assert!(b.replay_count() >= replays + 10, "{}", b.replay_count());
        b.shutdown().await;
    });
}

#[test]
fn an_id_started_through_two_workers_at_once_is_started_once() {
    let (_dir, store) = store();
    lifetime(async {
        let a = worker(&store, 1).start().await.unwrap();
        let b = worker(&store, 2).start().await.unwrap();
        let (client_a, client_b) = (a.client(), b.client());
        for i in 0..50u64 {
            let id = format!("c{i}");
            let (x, y) = tokio::join!(
                client_a.start(chain, id.clone(), i),
                client_b.start(chain, id.clone(), i)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(x.is_new() != y.is_new(), "{id}: started by both or neither");
            assert_eq!(x.wait(WAIT).await.unwrap(), i * 6);
            let started = store
                .history(&id)
                .unwrap()
                .iter()
                .filter(|e| matches!(e, durable_store::Event::Started { .. }))
                .count();
            assert_eq!(started, 1, "{id}");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Naps `ms` milliseconds.
#[orchestrator]
async fn naps(ctx: OrchestrationContext, ms: u64) -> Result<u64, String> {
    ctx.sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// A timer of an instance terminated before it fires is removed from the store when it
/// fires, as before workers: the worker holding it does not drop it in memory while
/// still holding it in the store (where no other worker may take it, for as long as this
/// one lives).
#[test]
fn the_timer_of_an_instance_terminated_before_it_fires_is_removed_when_it_fires() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(naps)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(naps, "nap", 500).await.unwrap();
        while !(store.work_items().unwrap().iter())
            .any(|(_, item)| matches!(item, durable_store::WorkItem::Timer { .. }))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        instance.terminate("not needed").await.unwrap();
        assert!(instance.wait(WAIT).await.is_err());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !store.work_items().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.work_items().unwrap(), vec![]);
        runtime.shutdown().await;
    });
}

/// Adds up the first two `go` events it gets.
#[orchestrator]
async fn two_events(ctx: OrchestrationContext, _input: ()) -> Result<u64, String> {
    let first = ctx.wait_event::<u64>("go").await;
    let second = ctx.wait_event::<u64>("go").await;
    Ok(first + second)
}

/// A claim whose take-over commit fails for a moment (here: it removes a message for an
/// instance that is gone) still hands out what it took: the worker holds those items in
/// the store, so no later claim returns them while it lives.
#[test]
fn what_a_claim_took_is_handed_out_though_its_take_over_commit_failed_once() {
    let (_dir, store) = store();
    lifetime(async {
        let faulty = durable_store::FaultyStore::new(store.clone());
        let switch = faulty.switch();
        let runtime = Runtime::builder(faulty)
            .orchestrator(two_events)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(two_events, "x", ()).await.unwrap();
        while !store.work_items().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let next = switch.count(durable_store::Call::Commit) + 1;
        switch.fail(durable_store::Call::Commit, next, Some(next + 1));
        // A `go` for `x`, and a message for an instance that is gone (which the
        // take-over removes), left by a commit under no lease.
        let incarnation = store.instance("x").unwrap().unwrap().incarnation;
        let first = store.reserve_work_ids(2).unwrap();
        let message = |instance: &str, name: &str| durable_store::WorkItem::Message {
            instance: instance.into(),
            incarnation,
            generation: None,
            event: durable_store::Event::EventRaised {
                name: name.into(),
                payload: b"1".to_vec(),
            },
        };
        store
            .commit(&[durable_store::Commit {
                enqueued: vec![
                    (first, message("x", "go")),
                    (first + 1, message("gone", "go")),
                ],
                ..durable_store::Commit::default()
            }])
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while switch.injected() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no commit failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime
            .client()
            .raise_event("x", "go", &10u64)
            .await
            .unwrap();
        assert_eq!(instance.wait(Duration::from_secs(10)).await.unwrap(), 11);
        runtime.shutdown().await;
    });
}
