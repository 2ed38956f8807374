//! Restarts within the test process: each "lifetime" runs on its own tokio runtime, and
//! ending it cancels every task mid-flight, as a crash would. (The crash test does the
//! same with real processes and SIGKILL.)

use std::time::Duration;

use durable_core::record::{Commit, Event, FailureKind, InstanceRecord, Status, WorkItem};
use durable_core::{
    ActivityContext, Error, InstanceStatus, OrchestrationContext, RetryPolicy, Store, activity,
    orchestrator,
};
use serde::{Deserialize, Serialize};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

/// Finishes only when the gate is open; otherwise waits until the process ends.
#[activity]
pub async fn wait_at_gate(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    if !ctx.state::<Gate>().open {
        std::future::pending::<()>().await;
    }
    Ok(n + ctx.attempt() as u64 * 1000)
}

/// Version 1: doubles, then waits at the gate.
#[orchestrator(name = "flow")]
async fn flow_v1(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

/// A breaking edit of `flow`: its first step calls another activity.
#[orchestrator(name = "flow")]
async fn flow_broken(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(triple, n).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

#[test]
fn unfinished_work_is_redelivered_and_completes_after_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(flow_v1)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(flow_v1, "f", 4).await.unwrap();
        wait_for_step(&store, "f", 4).await;
        assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(flow_v1)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(flow_v1, "f");
        // The gate step was redelivered: its second attempt finished it.
        assert_eq!(instance.wait(WAIT).await.unwrap(), 8 + 2000);
        assert_eq!(runtime.replay_count(), 1, "the instance was replayed once");
        runtime.shutdown().await;
    });
}

#[test]
fn an_instance_stalled_by_a_breaking_change_resumes_once_fixed_code_runs() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(flow_v1)
            .start()
            .await
            .unwrap();
        runtime.client().start(flow_v1, "f", 4).await.unwrap();
        wait_for_step(&store, "f", 4).await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(flow_broken)
            .start()
            .await
            .unwrap();
        let err = runtime
            .client()
            .instance(flow_broken, "f")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert_eq!(failure.kind, FailureKind::Nondeterminism);
        assert!(
            failure
                .message
                .contains("step 0: history has activity `double`")
                && failure.message.contains("now asks for activity `triple`"),
            "{}",
            failure.message
        );
        runtime.shutdown().await;
    });
    let history_len = store.history("f").unwrap().len();
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(flow_v1)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(flow_v1, "f")
            .wait(WAIT)
            .await
            .unwrap();
        assert!(output == 8 + 2000 || output == 8 + 3000, "{output}");
        runtime.shutdown().await;
    });
    assert!(store.history("f").unwrap().len() > history_len);
}

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderV2 {
    id: u64,
    customer: String,
}

#[orchestrator(name = "typed")]
async fn typed_v1(ctx: OrchestrationContext, order: Order) -> Result<u64, String> {
    Ok(ctx.call(wait_at_gate, order.id).await?)
}

#[orchestrator(name = "typed")]
async fn typed_v2(ctx: OrchestrationContext, order: OrderV2) -> Result<u64, String> {
    Ok(ctx
        .call(wait_at_gate, order.id + order.customer.len() as u64)
        .await?)
}

#[test]
fn a_changed_input_type_stalls_that_instance_only() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(typed_v1)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(typed_v1, "old-order", Order { id: 1 })
            .await
            .unwrap();
        wait_for_step(&store, "old-order", 2).await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(typed_v2)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let err = client
            .instance(typed_v2, "old-order")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert!(
            matches!(&failure.kind, FailureKind::Decode { type_name } if type_name.ends_with("OrderV2")),
            "{failure:?}"
        );
        assert!(failure.message.contains("OrderV2"), "{}", failure.message);
        // Other instances keep running.
        let fresh = OrderV2 {
            id: 1,
            customer: "ada".into(),
        };
        let output = client
            .start(typed_v2, "new-order", fresh)
            .await
            .unwrap()
            .wait(WAIT)
            .await;
        assert_eq!(output.unwrap(), 4 + 1000);
        assert_eq!(
            client
                .start(chain, "chain", 1)
                .await
                .unwrap()
                .wait(WAIT)
                .await
                .unwrap(),
            6
        );
        runtime.shutdown().await;
    });
}

/// Processes items 0..10, saving progress after each; stops at item 4 on its first
/// attempt (the process then "crashes"). Returns the items this attempt processed.
#[activity]
async fn resumable(ctx: ActivityContext, items: u64) -> Result<Vec<u64>, String> {
    let start = ctx
        .progress::<u64>()
        .map_err(|e| e.to_string())?
        .map_or(0, |last| last + 1);
    let mut done = Vec::new();
    for item in start..items {
        done.push(item);
        ctx.save_progress(&item).await.map_err(|e| e.to_string())?;
        if item == 4 && ctx.attempt() == 1 {
            std::future::pending::<()>().await;
        }
    }
    Ok(done)
}

#[orchestrator]
async fn resume_flow(ctx: OrchestrationContext, items: u64) -> Result<Vec<u64>, String> {
    Ok(ctx.call(resumable, items).await?)
}

#[test]
fn an_activity_run_again_resumes_from_its_saved_progress() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(resume_flow)
            .activity(resumable)
            .start()
            .await
            .unwrap();
        runtime.client().start(resume_flow, "r", 10).await.unwrap();
        let incarnation = store.instance("r").unwrap().unwrap().incarnation;
        let key = &format!("r/{incarnation:x}.0/0");
        for _ in 0..2000 {
            if store
                .progress(key)
                .unwrap()
                .is_some_and(|p| p == serde_json::to_vec(&4u64).unwrap())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("progress 4 never saved");
    });
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(resume_flow)
            .activity(resumable)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(resume_flow, "r")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(output, vec![5, 6, 7, 8, 9]);
        runtime.shutdown().await;
    });
    let incarnation = store.instance("r").unwrap().unwrap().incarnation;
    assert_eq!(
        store.progress(&format!("r/{incarnation:x}.0/0")).unwrap(),
        None,
        "progress is removed with the result"
    );
}

/// Waits until instance `id` has `events` events in its history.
async fn wait_for_step(store: &durable_core::FjallStore, id: &str, events: usize) {
    for _ in 0..2000 {
        let record = store.instance(id).unwrap();
        if record.is_some_and(|r| r.history_len as usize >= events && r.status == Status::Running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("instance {id} never reached {events} events");
}

/// Takes two `add` events and returns them in the order it got them.
#[orchestrator]
async fn takes_two(ctx: OrchestrationContext, _: ()) -> Result<Vec<u64>, String> {
    let first = ctx.wait_event::<u64>("add").await;
    let second = ctx.wait_event::<u64>("add").await;
    Ok(vec![first, second])
}

#[test]
fn a_recovery_keeps_events_carried_over_ahead_of_a_later_one() {
    // The store as a crash leaves it right after a continue-as-new commit: generation 1
    // not started yet, its start and the event carried over (1) queued, and before them
    // (older work ids) an event a client raised meanwhile (2), with other work between,
    // and in two of the cases a suspend the client sent before or after that event.
    for suspend_at in [None, Some(5), Some(20)] {
        let (_dir, store) = store();
        let message = |generation: Option<u32>, event: Event| WorkItem::Message {
            instance: "carried".into(),
            incarnation: 7,
            generation,
            event,
        };
        let raised = |value: u64| Event::EventRaised {
            name: "add".into(),
            payload: serde_json::to_vec(&value).unwrap(),
        };
        let mut record = InstanceRecord::pending(
            "takes_two".into(),
            1,
            serde_json::to_vec(&()).unwrap(),
            0,
            7,
            None,
        );
        record.generation = 1;
        record.status = Status::Running;
        let mut enqueued = vec![(10, message(None, raised(2)))];
        enqueued.extend((11..40).filter(|id| Some(*id) != suspend_at).map(|id| {
            let other = WorkItem::Message {
                instance: format!("gone-{id}"),
                incarnation: 7,
                generation: None,
                event: Event::ResumeRequested,
            };
            (id, other)
        }));
        if let Some(id) = suspend_at {
            let suspend = Event::SuspendRequested {
                reason: "a pause".into(),
            };
            enqueued.push((id, message(None, suspend)));
        }
        let started = Event::Started {
            orchestrator: "takes_two".into(),
            input: serde_json::to_vec(&()).unwrap(),
        };
        enqueued.push((40, message(Some(1), started)));
        enqueued.push((41, message(Some(1), raised(1))));
        enqueued.sort_by_key(|(id, _)| *id);
        store
            .commit(&[Commit {
                instances: vec![("carried".into(), record)],
                enqueued,
                ..Commit::default()
            }])
            .unwrap();
        lifetime(async {
            let runtime = builder(store.clone())
                .orchestrator(takes_two)
                .start()
                .await
                .unwrap();
            let instance = runtime.client().instance(takes_two, "carried");
            // Suspended or not, depending on where the suspend fell; resumed once if so.
            loop {
                match instance.status().await.unwrap() {
                    InstanceStatus::Suspended(_) => {
                        instance.resume().await.unwrap();
                        break;
                    }
                    InstanceStatus::Completed(_) => break,
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            assert_eq!(
                instance.wait(WAIT).await.unwrap(),
                vec![1, 2],
                "suspended at {suspend_at:?}"
            );
            runtime.shutdown().await;
        });
    }
}

/// Fails its first attempt.
#[activity]
async fn fails_at_first(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    if ctx.attempt() == 1 {
        return Err("not yet".into());
    }
    Ok(n)
}

/// Two retried calls joined, then a wait: each lane takes a failure and issues its retry
/// timer while the other lane's steps come and go.
#[orchestrator]
async fn retrying_lanes(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(1));
    let (a, b) = ctx
        .join2(
            ctx.call_with_retry(fails_at_first, 1, policy.clone()),
            ctx.call_with_retry(fails_at_first, 2, policy),
        )
        .await;
    ctx.wait_event::<()>("go").await;
    Ok(a? + b?)
}

#[test]
fn joined_lanes_of_several_steps_replay_after_a_restart() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(retrying_lanes)
            .activity(fails_at_first)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(retrying_lanes, "lanes", ())
            .await
            .unwrap();
        crate::patterns::wait_for(&store, "lanes", |h| {
            h.iter()
                .filter(|e| matches!(e, Event::ActivityCompleted { .. }))
                .count()
                == 2
        })
        .await;
    });
    lifetime(async {
        let runtime = builder(store.clone())
            .orchestrator(retrying_lanes)
            .activity(fails_at_first)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(retrying_lanes, "lanes");
        instance.raise_event("go", &()).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 3);
        assert_eq!(runtime.replay_count(), 1);
        runtime.shutdown().await;
    });
}
