//! Bad input, as the runtime meets it: damaged store files, payloads and code that changed
//! under running instances, bad ids, panics, and requests that make no sense for an
//! instance's state. Each is answered with a typed error a user can act on, and nothing
//! else is lost. (The store's own view of damaged files is in durable-store's tests.)

use std::path::Path;
use std::time::Duration;

use durable_core::record::{Event, FailureKind, Status, WorkItem};
use durable_core::{
    ActivityContext, Callee, Error, FjallStore, InstanceStatus, OrchestrationContext, RetryPolicy,
    Store, StoreError, Unregistered, UnregisteredCallee, activity, orchestrator,
};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use crate::common::*;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(20);
/// How long a test waits for something that must happen soon (and today may not).
const SOON: Duration = Duration::from_secs(5);

/// Doubles, then waits at the gate: leaves history and a queued task behind.
#[orchestrator]
async fn gated_chain(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

/// Runs `gated_chain` as `id` in a lifetime whose gate is closed, until its second step is
/// queued; the process then "crashes".
fn leave_gated(store: &FjallStore, id: &str) {
    run_to_gate(store, id, false);
}

/// As [`leave_gated`], with the instance suspended before the "crash".
fn leave_gated_suspended(store: &FjallStore, id: &str) {
    run_to_gate(store, id, true);
}

fn run_to_gate(store: &FjallStore, id: &str, suspend: bool) {
    lifetime(async {
        let runtime = gated(store, false)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(gated_chain, id, 4).await.unwrap();
        crate::patterns::wait_for(store, id, |h| {
            h.iter()
                .filter(|e| matches!(e, Event::ActivityScheduled { .. }))
                .count()
                == 2
        })
        .await;
        if suspend {
            instance.suspend("maintenance").await.unwrap();
            until_suspended(&instance).await;
        }
    });
}

/// Overwrites `key` in keyspace `keyspace` of the closed store at `path` with bytes that
/// decode as nothing.
fn damage(path: &Path, keyspace: &str, key: &[u8]) {
    let db = Database::builder(path).open().unwrap();
    let space = db
        .keyspace(keyspace, KeyspaceCreateOptions::default)
        .unwrap();
    assert!(space.contains_key(key).unwrap(), "no such key to damage");
    space.insert(key, [0xff_u8; 5]).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

fn history_key(id: &str, index: u32) -> Vec<u8> {
    let mut key = (id.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[test]
fn a_runtime_on_a_store_with_a_damaged_work_item_does_not_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    let work_id = store.work_items().unwrap()[0].0;
    drop(store);
    damage(dir.path(), "work", &work_id.to_be_bytes());

    let store = FjallStore::open(dir.path()).unwrap();
    let err = lifetime(async { builder(store.clone()).start().await.unwrap_err() });
    let Error::Store(StoreError::Decode { what, .. }) = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert!(
        what.contains(&format!("work item {work_id}")) && what.contains("keyspace `work`"),
        "{what}"
    );
    assert!(
        err.to_string()
            .contains("written by an incompatible version or is damaged"),
        "{err}"
    );
    // Nothing else was touched: the instance and its history read as before.
    assert_eq!(
        store.instance("a").unwrap().unwrap().status,
        Status::Running
    );
    assert_eq!(store.history("a").unwrap().len(), 4);
}

#[test]
fn a_runtime_on_a_store_with_a_damaged_instance_record_does_not_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    drop(store);
    damage(dir.path(), "instances", b"a");

    let store = FjallStore::open(dir.path()).unwrap();
    let err = lifetime(async { builder(store.clone()).start().await.unwrap_err() });
    assert!(
        matches!(&err, Error::Store(StoreError::Decode { what, .. })
            if what.contains("instance record `a`") && what.contains("keyspace `instances`")),
        "{err:?}"
    );
    assert_eq!(store.history("a").unwrap().len(), 4, "the history is kept");
    assert_eq!(store.work_items().unwrap().len(), 1, "the queue is kept");
}

/// The turn that reads the damaged history stalls the instance, naming the event, rather
/// than retrying a read that cannot succeed.
#[test]
fn an_instance_whose_history_is_damaged_stops_with_an_error_naming_it_and_the_rest_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "damaged");
    drop(store);
    damage(dir.path(), "history", &history_key("damaged", 1));

    let store = FjallStore::open(dir.path()).unwrap();
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let healthy = client.start(chain, "healthy", 2).await.unwrap();
        assert_eq!(healthy.wait(WAIT).await.unwrap(), 12, "the others run");
        let damaged = client.instance(gated_chain, "damaged");
        match damaged.wait(SOON).await {
            Err(Error::Stalled { failure, .. } | Error::Failed { failure, .. }) => {
                assert!(
                    failure.message.contains("event #1 of `damaged`"),
                    "{}",
                    failure.message
                );
            }
            other => panic!(
                "the instance with a damaged history should stop with an error naming the \
                 event; got {other:?}"
            ),
        }
    });
    assert!(
        store.history("damaged").is_err(),
        "the damaged event is kept for repair"
    );
}

#[test]
fn a_journal_torn_at_its_end_opens_with_every_acknowledged_turn() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    leave_gated(&store, "a");
    let history = store.history("a").unwrap();
    drop(store);
    // A crash in the middle of writing a batch that was never acknowledged leaves part of
    // it at the end of the journal.
    let journal = journals(dir.path()).pop().expect("a journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let torn = bytes[bytes.len() / 2..].to_vec();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&journal, bytes).unwrap();

    let store = FjallStore::open(dir.path()).expect("a torn tail is not damage");
    assert_eq!(store.history("a").unwrap(), history);
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let output = runtime.client().instance(gated_chain, "a").wait(WAIT).await;
        assert_eq!(output.unwrap(), 8 + 2000);
        runtime.shutdown().await;
    });
}

fn journals(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(journals(&path));
        } else if path.extension().is_some_and(|e| e == "jnl") {
            found.push(path);
        }
    }
    found.sort();
    found
}

// ---- Code and payloads that changed under running instances ----

#[activity(name = "measure")]
async fn measure_v1(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n + 1)
}

/// A later deploy: the same activity now returns a `String`.
#[activity(name = "measure")]
async fn measure_v2(_ctx: ActivityContext, n: u64) -> Result<String, String> {
    Ok(format!("{n}"))
}

#[orchestrator(name = "measured")]
async fn measured_v1(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let m = ctx.call(measure_v1, n).await?;
    Ok(ctx.call(wait_at_gate, m).await?)
}

#[orchestrator(name = "measured")]
async fn measured_v2(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let m = ctx.call(measure_v2, n).await?;
    Ok(ctx.call(wait_at_gate, m.len() as u64).await?)
}

#[test]
fn an_activity_output_whose_type_changed_stalls_that_instance_naming_the_type_until_rolled_back() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(measured_v1)
            .activity(measure_v1)
            .start()
            .await
            .unwrap();
        runtime.client().start(measured_v1, "m", 40).await.unwrap();
        crate::patterns::wait_for(&store, "m", |h| {
            h.iter()
                .any(|e| matches!(e, Event::ActivityCompleted { seq: 0, .. }))
        })
        .await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(measured_v2)
            .activity(measure_v2)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let err = client
            .instance(measured_v2, "m")
            .wait(WAIT)
            .await
            .unwrap_err();
        let Error::Stalled { failure, .. } = &err else {
            panic!("expected a stalled instance, got {err:?}");
        };
        assert!(
            matches!(&failure.kind, FailureKind::Decode { type_name } if type_name.contains("String")),
            "{failure:?}"
        );
        assert!(
            failure.message.contains("was its type changed?"),
            "{}",
            failure.message
        );
        // New instances run the new code.
        let fresh = client.start(measured_v2, "m2", 40).await.unwrap();
        assert_eq!(fresh.wait(WAIT).await.unwrap(), 2 + 1000);
        runtime.shutdown().await;
    });
    // Rolled back: the instance resumes where it stalled, with the gate's result the
    // stalled turn kept (its redelivery, attempt 2).
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(measured_v1)
            .activity(measure_v1)
            .start()
            .await
            .unwrap();
        let output = runtime
            .client()
            .instance(measured_v1, "m")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(output, 41 + 2000);
        runtime.shutdown().await;
    });
}

/// Waits for an `amount` event and adds one.
#[orchestrator]
async fn takes_amount(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.wait_event::<u64>("amount").await + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_payload_of_the_wrong_type_is_set_aside_naming_the_type() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(takes_amount)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(takes_amount, "amount", ()).await.unwrap();
    instance
        .raise_event("amount", &"twelve".to_string())
        .await
        .unwrap();
    crate::patterns::wait_for(&store, "amount", |h| {
        h.iter().any(|e| matches!(e, Event::EventSetAside { .. }))
    })
    .await;
    assert_eq!(instance.status().await.unwrap(), InstanceStatus::Running);
    let set_aside = instance.set_aside_events().unwrap();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(set_aside[0].name, "amount");
    assert_eq!(set_aside[0].payload_json().unwrap(), "twelve");
    assert!(set_aside[0].reason.contains("`u64`"), "{:?}", set_aside[0]);
    // The wait takes the next event of the right type.
    instance.raise_event("amount", &12_u64).await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 13);
    runtime.shutdown().await;
}

// ---- Code no longer registered after a deploy ----

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

// ---- Instance ids ----

#[test]
fn starting_an_existing_id_after_a_restart_returns_it_and_ignores_the_new_input() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone()).start().await.unwrap();
        let first = runtime.client().start(chain, "once", 1).await.unwrap();
        assert_eq!(first.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
    lifetime(async {
        let (builder, calls) = counting_builder(store.clone());
        let runtime = builder.start().await.unwrap();
        let again = runtime.client().start(chain, "once", 100).await.unwrap();
        assert!(!again.is_new());
        assert_eq!(again.wait(WAIT).await.unwrap(), 6, "the first run's output");
        assert_eq!(calls.count(), 0, "nothing ran again");
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_measured_in_bytes_and_control_characters_are_refused() {
    let (_dir, store) = store();
    let runtime = builder(store.clone()).start().await.unwrap();
    let client = runtime.client();
    let accepted = [
        "x".repeat(256),
        "é".repeat(128),
        "order 7/ü:ß".to_string(),
        "zero\u{200b}width".to_string(),
    ];
    for id in &accepted {
        let instance = client.start(chain, id.clone(), 1).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 6, "{id:?}");
    }
    let refused = [
        "x".repeat(257),
        "é".repeat(129),
        "tab\there".to_string(),
        "nul\0".to_string(),
        "del\u{7f}".to_string(),
        "csi\u{9b}".to_string(),
    ];
    for id in &refused {
        let err = client.start(chain, id.clone(), 1).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInstanceId { id: given, .. } if given == id),
            "{id:?}: {err:?}"
        );
    }
    assert_eq!(store.instances().unwrap().len(), accepted.len());
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_bad_ids_find_no_instance_and_write_nothing() {
    let (_dir, store) = store();
    let runtime = builder(store.clone()).start().await.unwrap();
    let client = runtime.client();
    for id in [String::new(), "a\nb".to_string(), "x".repeat(70_000)] {
        let results = [
            client.raise_event(&id, "go", &1).await,
            client.terminate(&id, "why").await,
            client.suspend(&id, "why").await,
            client.resume(&id).await,
            client.purge(&id).await,
            client.restart(&id).await,
        ];
        for result in results {
            assert!(
                matches!(result, Err(Error::InstanceNotFound(_))),
                "{:?}: {result:?}",
                short(&id)
            );
        }
        let status = client.instance(chain, id.clone()).status().await;
        assert!(
            matches!(status, Err(Error::InstanceNotFound(_))),
            "{status:?}"
        );
    }
    assert_eq!(store.instances().unwrap(), vec![]);
    assert_eq!(store.work_items().unwrap(), vec![]);
    runtime.shutdown().await;
}

/// The start of a long id, for messages.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Starts `chain` as a child under the id it is given; reports how the call ended.
#[orchestrator]
async fn names_its_child(ctx: OrchestrationContext, id: String) -> Result<String, String> {
    match ctx.sub_orchestration_with_id(chain, id, 1).await {
        Ok(output) => Ok(format!("ran: {output}")),
        Err(e) => Ok(format!("{:?}: {}", e.failure().kind, e.message())),
    }
}

/// FAILS today. An empty child id (or one over the store's key limit) makes the parent's
/// turn commit fail, and the runtime retries that turn forever: the parent hangs. A
/// control-character or over-long id, which `Client::start` refuses, is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_orchestration_id_the_client_would_refuse_is_refused_to_the_parent() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(names_its_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let mut wrong = Vec::new();
    // `~` starts the ids the runtime generates: no explicit id may take one.
    for (n, child) in ["", "a\nb", &"x".repeat(300), "~p~1.0.0"]
        .into_iter()
        .enumerate()
    {
        let parent = client
            .start(names_its_child, format!("parent-{n}"), child.to_string())
            .await
            .unwrap();
        match parent.wait(SOON).await {
            Ok(out) if out.starts_with("Rejected: ") && out.contains("invalid instance id") => {}
            other => wrong.push(format!("child id {:?}: {other:?}", short(child))),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    runtime.shutdown().await;
}

// ---- Panics ----

#[orchestrator]
async fn panics_after_a_step(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    if a == 4 {
        panic!("orchestrator gave up on {a}");
    }
    Ok(a)
}

#[orchestrator]
async fn parent_of_a_panic(ctx: OrchestrationContext, n: u64) -> Result<String, String> {
    match ctx.sub_orchestration(panics_after_a_step, n).await {
        Ok(v) => Ok(format!("ok {v}")),
        Err(e) => Ok(format!(
            "{} panicked={}: {}",
            e.instance_id(),
            e.failure().kind == FailureKind::Panicked,
            e.message()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_orchestrator_fails_its_instance_and_its_parent_is_told() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(panics_after_a_step)
        .orchestrator(parent_of_a_panic)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let err = client
        .start(panics_after_a_step, "p", 2)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    let Error::Failed { failure, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failure.kind, FailureKind::Panicked);
    assert_eq!(
        failure.message,
        "orchestrator `panics_after_a_step` panicked: orchestrator gave up on 4"
    );
    let told = client
        .start(parent_of_a_panic, "pp", 2)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let incarnation = client.record("pp").unwrap().unwrap().incarnation;
    assert_eq!(
        told,
        format!(
            "~pp~{incarnation:x}.0.0 panicked=true: orchestrator `panics_after_a_step` panicked: orchestrator gave up on 4"
        )
    );
    // The runtime goes on.
    let ok = client.start(panics_after_a_step, "fine", 3).await.unwrap();
    assert_eq!(ok.wait(WAIT).await.unwrap(), 6);
    runtime.shutdown().await;
}

/// Panics only when it replays, as code that reads something outside the history would.
#[orchestrator]
async fn panics_on_replay(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    if ctx.is_replaying() {
        panic!("cannot replay");
    }
    Ok(ctx.call(wait_at_gate, n).await?)
}

#[test]
fn an_orchestrator_that_panics_when_replayed_after_a_restart_fails_with_its_message() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = gated(&store, false)
            .orchestrator(panics_on_replay)
            .start()
            .await
            .unwrap();
        runtime
            .client()
            .start(panics_on_replay, "r", 1)
            .await
            .unwrap();
        crate::patterns::wait_for(&store, "r", |h| h.len() == 2).await;
    });
    lifetime(async {
        let runtime = gated(&store, true)
            .orchestrator(panics_on_replay)
            .start()
            .await
            .unwrap();
        let err = runtime
            .client()
            .instance(panics_on_replay, "r")
            .wait(WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Failed { failure, .. }
                if failure.kind == FailureKind::Panicked && failure.message.ends_with("cannot replay")),
            "{err:?}"
        );
        runtime.shutdown().await;
    });
}

#[activity]
async fn panics_with_a_number(_ctx: ActivityContext, _: ()) -> Result<u64, String> {
    std::panic::panic_any(42_u32);
}

#[orchestrator]
async fn retries_a_panic(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let policy = RetryPolicy::fixed(3, Duration::from_millis(10));
    match ctx.call_with_retry(panics_with_a_number, (), policy).await {
        Ok(v) => Ok(v),
        Err(e) => Err(format!(
            "attempt {} panic={}: {}",
            e.attempt(),
            e.is_panic(),
            e.message()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_that_always_panics_is_retried_then_reported_even_without_a_message() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(retries_a_panic)
        .activity(panics_with_a_number)
        .start()
        .await
        .unwrap();
    let err = runtime
        .client()
        .start(retries_a_panic, "n", ())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { failure, .. }
            if failure.message == "attempt 3 panic=true: panic with a non-string payload"),
        "{err:?}"
    );
    runtime.shutdown().await;
}

// ---- Requests that make no sense for the instance's state ----

#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

fn assert_refused(result: Result<(), Error>, action: &str, status: &str) {
    match result {
        Err(Error::InvalidState {
            action: a,
            status: s,
            ..
        }) if a == action && s == status => {}
        other => panic!("expected a refusal to {action} a {status} instance, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_terminations_for_finished_instances_are_refused_and_change_nothing() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let done = client.start(chain, "done", 1).await.unwrap();
    assert_eq!(done.wait(WAIT).await.unwrap(), 6);
    let failed = client
        .start(careful, "failed", Risk::Uncaught)
        .await
        .unwrap();
    assert!(failed.wait(WAIT).await.is_err());
    let before: Vec<_> = ["done", "failed"]
        .iter()
        .map(|id| (store.instance(id).unwrap(), store.history(id).unwrap()))
        .collect();

    for (id, status) in [("done", "completed"), ("failed", "failed")] {
        assert_refused(
            client.raise_event(id, "go", &"late").await,
            "raise an event to",
            status,
        );
        assert_refused(client.terminate(id, "too late").await, "terminate", status);
        assert_refused(client.suspend(id, "too late").await, "suspend", status);
    }
    let after: Vec<_> = ["done", "failed"]
        .iter()
        .map(|id| (store.instance(id).unwrap(), store.history(id).unwrap()))
        .collect();
    assert_eq!(before, after, "refused requests write nothing");
    assert_eq!(done.status().await.unwrap(), InstanceStatus::Completed(6));

    // An event no one waits for is kept in the history and harms nothing.
    let waiting = client.start(waits_for_go, "waiting", ()).await.unwrap();
    waiting.raise_event("unrelated", &1).await.unwrap();
    waiting.raise_event("go", &"now".to_string()).await.unwrap();
    assert_eq!(waiting.wait(WAIT).await.unwrap(), "now");
    // A purged instance is not found.
    client.purge("done").await.unwrap();
    let err = client.raise_event("done", "go", &"x").await.unwrap_err();
    assert!(matches!(err, Error::InstanceNotFound(_)), "{err:?}");
    runtime.shutdown().await;
}

#[test]
fn a_stalled_instance_can_be_terminated_but_not_purged_before() {
    let (_dir, store) = store();
    leave_gated(&store, "stuck");
    lifetime(async {
        let runtime = gated(&store, true).start().await.unwrap();
        let client = runtime.client();
        let instance = client.instance(gated_chain, "stuck");
        assert!(matches!(
            instance.wait(WAIT).await,
            Err(Error::Stalled { .. })
        ));
        assert_refused(client.purge("stuck").await, "purge", "stalled");
        instance.terminate("retired for good").await.unwrap();
        // `wait` returns at once on a stalled instance: watch the status change instead.
        let terminated = InstanceStatus::Terminated("retired for good".into());
        for _ in 0..2000 {
            if instance.status().await.unwrap() == terminated {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(instance.status().await.unwrap(), terminated);
        client.purge("stuck").await.unwrap();
        assert_eq!(store.instance("stuck").unwrap(), None);
        assert_eq!(store.history("stuck").unwrap(), vec![]);
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_pending_or_suspended_instance_is_refused_and_it_still_finishes() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(waits_for_go, "paused", ()).await.unwrap();
    instance.suspend("maintenance").await.unwrap();
    until_suspended(&instance).await;
    assert_refused(client.purge("paused").await, "purge", "suspended");
    let purged = client
        .purge_where(&durable_core::PurgeFilter::default())
        .await
        .unwrap();
    assert_eq!(purged, 0, "purge_where leaves unfinished instances alone");
    instance
        .raise_event("go", &"resumed".to_string())
        .await
        .unwrap();
    instance.resume().await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), "resumed");
    runtime.shutdown().await;
}
