//! Code no longer registered after a deploy.

use super::changed_code::takes_amount;
use super::*;

#[test]
fn an_orchestrator_no_longer_registered_stalls_its_instances_until_it_is_back() {
    let (_dir, store) = store();
    leave_gated(&store, "retired");
    lifetime(async {
        // The deploy dropped `gated_chain`; its activities are still there.
        let runtime = gated(&store, true).start().await.unwrap();
        let client = runtime.client();
        let err = client
            .instance(gated_chain, "retired")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert_eq!(
            failure.kind,
            FailureKind::Unregistered {
                name: "gated_chain".into()
            }
        );
        assert!(
            failure
                .message
                .contains("register it and restart the runtime to resume"),
            "{}",
            failure.message
        );
        assert!(err.to_string().contains("restart the runtime"), "{err}");
        // The others keep running.
        let other = client.start(chain, "other", 1).await.unwrap();
        assert_eq!(other.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(gated_chain, "retired")
            .wait(WAIT)
            .await
            .unwrap();
        // The activity result that arrived while it was stalled was kept.
        assert!(output == 8 + 2000 || output == 8 + 3000, "{output}");
        runtime.shutdown().await;
    });
}

#[test]
fn an_orchestrator_no_longer_registered_fails_its_instances_when_so_configured() {
    let (_dir, store) = store();
    leave_gated(&store, "retired");
    lifetime(async {
        let runtime = gated(&store, true)
            .on_unregistered(Unregistered::Fail)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let err = client
            .instance(gated_chain, "retired")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Failed { failure, .. } = &err else {
            panic!("expected a failed instance, got {err:?}");
        };
        assert_eq!(
            failure.kind,
            FailureKind::Unregistered {
                name: "gated_chain".into()
            }
        );
        assert!(
            failure.message.contains("RuntimeBuilder::orchestrator"),
            "{}",
            failure.message
        );
        let other = client.start(chain, "other", 1).await.unwrap();
        assert_eq!(other.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
    lifetime(async {
        // Failed is final: bringing the code back does not revive it.
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let err = runtime
            .client()
            .instance(gated_chain, "retired")
            .wait(WAIT)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Failed { .. }), "{err:?}");
        runtime.shutdown().await;
    });
}

#[test]
fn an_activity_no_longer_registered_stalls_its_instances_until_it_is_back() {
    let (_dir, store) = store();
    leave_gated(&store, "queued-task");
    let assert_waits = |err: &Error| {
        let Error::Stalled { failure, .. } = err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert_eq!(
            failure.kind,
            FailureKind::Unregistered {
                name: "wait_at_gate".into()
            }
        );
        assert!(
            failure
                .message
                .contains("activity `wait_at_gate` is not registered")
                && failure
                    .message
                    .contains("register it and restart the runtime to resume"),
            "{}",
            failure.message
        );
    };
    lifetime(async {
        // The deploy dropped `wait_at_gate`: the task queued before it waits in the
        // store, and a new call to it stalls its instance before it is scheduled.
        let runtime = builder(store.clone())
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let queued = client.instance(gated_chain, "queued-task");
        assert_waits(&queued.wait(WAIT).await.unwrap_err());
        let fresh = client.start(gated_chain, "new-call", 5).await.unwrap();
        assert_waits(&fresh.wait(WAIT).await.unwrap_err());
        let other = client.start(chain, "other", 1).await.unwrap();
        assert_eq!(other.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        // The queued task ran once before the deploy (attempt 1) and now again.
        let queued = client.instance(gated_chain, "queued-task");
        assert_eq!(queued.wait(WAIT).await.unwrap(), 8 + 2000);
        let fresh = client.instance(gated_chain, "new-call");
        assert_eq!(fresh.wait(WAIT).await.unwrap(), 10 + 1000);
        runtime.shutdown().await;
    });
    for id in ["queued-task", "new-call"] {
        let history = store.history(id).unwrap();
        assert!(
            !history
                .iter()
                .any(|e| matches!(e, Event::ActivityFailed { .. })),
            "{id}: no call failed while the activity was missing: {history:?}"
        );
    }
}

#[test]
fn a_suspended_instance_waiting_for_a_missing_activity_stalls_when_resumed() {
    let (_dir, store) = store();
    leave_gated_suspended(&store, "suspended");
    lifetime(async {
        // The deploy dropped `wait_at_gate`; the instance stays suspended until resumed.
        let runtime = builder(store.clone())
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(gated_chain, "suspended");
        assert!(matches!(
            instance.status().await.unwrap(),
            InstanceStatus::Suspended(_)
        ));
        instance.resume().await.unwrap();
        let err = instance.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(&err, Error::Stalled { failure, .. }
                if failure.kind == FailureKind::Unregistered { name: "wait_at_gate".into() }),
            "{err:?}"
        );
        runtime.shutdown().await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(gated_chain, "suspended");
        assert_eq!(instance.wait(WAIT).await.unwrap(), 8 + 2000);
        runtime.shutdown().await;
    });
}

#[test]
fn an_id_reused_after_a_purge_does_not_inherit_the_wait_for_missing_code() {
    let (_dir, store) = store();
    leave_gated_suspended(&store, "reused");
    lifetime(async {
        // Without `wait_at_gate`: the suspended instance waits for it. It is terminated
        // and purged, and its id reused by an instance that needs nothing missing.
        let runtime = builder(store.clone())
            .orchestrator(gated_chain)
            .orchestrator(takes_amount)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let old = client.instance(gated_chain, "reused");
        old.terminate("replaced").await.unwrap();
        assert!(matches!(
            old.wait(WAIT).await,
            Err(Error::Terminated { .. })
        ));
        client.purge("reused").await.unwrap();
        let new = client.start(takes_amount, "reused", ()).await.unwrap();
        new.suspend("a pause").await.unwrap();
        until_suspended(&new).await;
        new.resume().await.unwrap();
        new.raise_event("amount", &5_u64).await.unwrap();
        assert_eq!(new.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
}

/// Generation 0 races the gated activity against a timer, loses it to the timer, and
/// continues as new; generation 1 waits for `go`.
#[orchestrator]
async fn outlives_its_race(ctx: OrchestrationContext, generation: u32) -> Result<u32, String> {
    if generation == 0 {
        let slow = ctx.call(wait_at_gate, 1);
        ctx.select2(slow, ctx.sleep(Duration::from_millis(10)))
            .await;
        // Typed by `#[orchestrator]`: a `u32`, not the `i32` the literal would be alone.
        return ctx.continue_as_new(1).await;
    }
    ctx.wait_event::<()>("go").await;
    Ok(generation)
}

#[test]
fn a_missing_activity_of_an_earlier_generation_holds_nothing_up() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(outlives_its_race)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(outlives_its_race, "raced", 0)
            .await
            .unwrap();
        // Generation 1 has started and waits for `go`.
        crate::patterns::wait_for(&store, "raced", |h| {
            !h.is_empty() && store.instance("raced").unwrap().unwrap().generation == 1
        })
        .await;
        // The lost race's task is still queued.
        assert!(store.work_items().unwrap().iter().any(
            |(_, item)| matches!(item, WorkItem::Activity(task) if task.activity == "wait_at_gate")
        ));
    });
    lifetime(async {
        // The deploy dropped `wait_at_gate`, which generation 1 never calls.
        let runtime = builder(store.clone())
            .orchestrator(outlives_its_race)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().instance(outlives_its_race, "raced");
        instance.raise_event("go", &()).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 1);
        runtime.shutdown().await;
    });
}

#[test]
fn an_activity_no_longer_registered_refuses_the_start_when_so_configured() {
    let (_dir, store) = store();
    leave_gated(&store, "uses-gate");
    lifetime(async {
        // The deploy dropped `wait_at_gate`, which `gated_chain` calls: under `Fail` the
        // runtime says so at start, before any instance reaches the call.
        let err = builder(store.clone())
            .orchestrator(gated_chain)
            .on_unregistered(Unregistered::Fail)
            .start()
            .await
            .unwrap_err();
        let Error::UnregisteredCallees(missing) = &err else {
            panic!("expected UnregisteredCallees, got {err:?}");
        };
        assert_eq!(
            missing,
            &[UnregisteredCallee {
                orchestrator: "gated_chain",
                version: 1,
                callee: Callee::CallActivity {
                    name: "wait_at_gate"
                },
            }]
        );
        assert!(
            err.to_string().contains(
                "orchestrator `gated_chain` calls activity `wait_at_gate`, which is not \
                 registered; add it with `RuntimeBuilder::activity`"
            ),
            "{err}"
        );
    });
    lifetime(async {
        // Nothing was touched: with the activity registered, the instance finishes.
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .on_unregistered(Unregistered::Fail)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(gated_chain, "uses-gate")
            .wait(WAIT)
            .await
            .unwrap();
        // 8, plus 1000 × the attempt (how a redelivery is counted is not this test's).
        assert!(output > 8 && (output - 8) % 1000 == 0, "{output}");
        runtime.shutdown().await;
    });
}
