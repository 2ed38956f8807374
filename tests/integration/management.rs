//! Instance management from the client: terminate, suspend and resume, purge, list,
//! restart; and what each refuses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable_core::{
    ActivityContext, Error, InstanceQuery, InstanceStatus, OrchestrationContext, PurgeFilter,
    StatusKind, Store, activity, orchestrator,
};

use crate::common::*;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(30);

/// Waits for a `go` event and returns its payload.
#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    Ok(ctx.wait_event::<String>("go").await)
}

#[orchestrator]
async fn gated_flow(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    Ok(ctx.call(wait_at_gate, 1).await?)
}

fn expect_invalid(result: Result<(), Error>, action: &str) -> String {
    match result {
        Err(e @ Error::InvalidState { .. }) => {
            assert!(e.to_string().contains(action), "{e}");
            e.to_string()
        }
        other => panic!("expected a refusal to {action}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_running_instance_and_finished_ones_refuse_requests() {
    let (_dir, store) = store();
    let runtime = gated(&store, false)
        .orchestrator(gated_flow)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(gated_flow, "stuck", ()).await.unwrap();
    let message = expect_invalid(client.purge("stuck").await, "purge");
    assert!(message.contains("terminate it first"), "{message}");

    instance.terminate("no longer needed").await.unwrap();
    let err = instance.wait(WAIT).await.unwrap_err();
    assert!(
        matches!(&err, Error::Terminated { reason, .. } if reason == "no longer needed"),
        "{err:?}"
    );
    assert_eq!(
        instance.status().await.unwrap(),
        InstanceStatus::Terminated("no longer needed".into())
    );
    expect_invalid(instance.terminate("again").await, "terminate");
    expect_invalid(
        instance.raise_event("go", &"late").await,
        "raise an event to",
    );
    expect_invalid(instance.suspend("why").await, "suspend");
    let err = client.raise_event("nobody", "go", &1).await.unwrap_err();
    assert!(matches!(err, Error::InstanceNotFound(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_holds_its_events_until_resumed() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(waits_for_go, "paused", ()).await.unwrap();
    expect_invalid(instance.resume().await, "resume");
    instance.suspend("maintenance").await.unwrap();
    wait_status(&instance, InstanceStatus::Suspended("maintenance".into())).await;
    instance.raise_event("go", &"green light").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        instance.status().await.unwrap(),
        InstanceStatus::Suspended("maintenance".into()),
        "a suspended instance does not run"
    );
    instance.resume().await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), "green light");
    runtime.shutdown().await;
}

async fn wait_status(
    instance: &durable_core::Instance<waits_for_go>,
    want: InstanceStatus<String>,
) {
    for _ in 0..400 {
        if instance.status().await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never reached {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_and_purge_removes_finished_instances() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    for i in 0..5 {
        client
            .start(chain, format!("done-{i}"), i)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
    }
    for i in 0..3 {
        client
            .start(waits_for_go, format!("open-{i}"), ())
            .await
            .unwrap();
    }
    let running = client
        .list(
            &InstanceQuery::new()
                .status(StatusKind::Running)
                .status(StatusKind::Pending),
        )
        .await
        .unwrap();
    let ids: Vec<_> = running.instances.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["open-0", "open-1", "open-2"]);

    let mut query = InstanceQuery::new().orchestrator(chain).page_size(2);
    let mut pages = Vec::new();
    loop {
        let page = client.list(&query).await.unwrap();
        pages.push(
            page.instances
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            vec!["done-0", "done-1"],
            vec!["done-2", "done-3"],
            vec!["done-4"]
        ]
    );

    client.purge("done-0").await.unwrap();
    assert!(matches!(
        client.purge("done-0").await,
        Err(Error::InstanceNotFound(_))
    ));
    assert!(
        durable_core::Store::history(&store, "done-0")
            .unwrap()
            .is_empty()
    );
    let purged = client
        .purge_where(&PurgeFilter::new().status(StatusKind::Completed))
        .await
        .unwrap();
    assert_eq!(purged, 4, "the running instances are left alone");
    let left = client.list(&InstanceQuery::new()).await.unwrap();
    assert_eq!(left.instances.len(), 3);
    runtime.shutdown().await;
}

/// Fails the first time it runs (per process), succeeds after.
#[activity]
async fn fails_once(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let _ = &ctx;
    if RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("first run fails".into());
    }
    Ok(n + 1)
}

#[orchestrator]
async fn fragile(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(ctx.call(fails_once, n).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_instance_restarts_from_its_original_input() {
    let (_dir, store) = store();
    let runtime = builder(store)
        .orchestrator(fragile)
        .activity(fails_once)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let instance = client.start(fragile, "fragile", 41).await.unwrap();
    assert!(matches!(
        instance.wait(WAIT).await,
        Err(Error::Failed { .. })
    ));
    client.restart("fragile").await.unwrap();
    assert_eq!(instance.wait(WAIT).await.unwrap(), 42);
    expect_invalid(client.restart("fragile").await, "restart");
    runtime.shutdown().await;
}

/// Continues as new forever.
#[orchestrator]
async fn spinning(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    ctx.continue_as_new(n + 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_an_instance_that_continues_as_new_forever() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(spinning)
        .start()
        .await
        .unwrap();
    let instance = runtime.client().start(spinning, "spin", 0).await.unwrap();
    while store.instance("spin").unwrap().unwrap().generation < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    instance.terminate("runaway").await.unwrap();
    let err = instance.wait(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Terminated { reason, .. } if reason == "runaway"),
        "{err:?}"
    );
    runtime.shutdown().await;
}

/// Purging more finished instances than one batch holds removes them all, batch by batch,
/// and leaves the running ones; the counts by status follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_where_removes_many_instances_in_batches_and_counts_follow() {
    use durable_core::record::{Commit, InstanceRecord, Status};

    let (_dir, store) = store();
    // Written straight to the store, as a runtime that finished them long ago would have.
    let done = |i: u64| {
        let mut record = InstanceRecord::pending("chain".into(), 1, b"1".to_vec(), i, i + 1, None);
        record.status = Status::Completed {
            output: b"2".to_vec(),
        };
        (format!("old-{i:05}"), record)
    };
    let commits: Vec<Commit> = (0..2_500)
        .map(|i| Commit {
            instances: vec![done(i)],
            ..Commit::default()
        })
        .collect();
    store.commit(&commits).unwrap();
    let runtime = builder(store.clone())
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    for i in 0..2 {
        client
            .start(waits_for_go, format!("open-{i}"), ())
            .await
            .unwrap();
    }
    let counts = client.count_by_status().await.unwrap();
    assert_eq!(counts[&StatusKind::Completed], 2_500, "{counts:?}");
    assert_eq!(
        counts[&StatusKind::Pending] + counts[&StatusKind::Running],
        2,
        "{counts:?}"
    );
    let first = client
        .list(
            &InstanceQuery::new()
                .status(StatusKind::Completed)
                .page_size(3),
        )
        .await
        .unwrap();
    let ids: Vec<_> = first.instances.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["old-00000", "old-00001", "old-00002"],
        "creation order"
    );
    let second = client
        .list(
            &InstanceQuery::new()
                .status(StatusKind::Completed)
                .page_size(3)
                .after(first.next.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(second.instances[0].id, "old-00003");

    let purged = client.purge_where(&PurgeFilter::new()).await.unwrap();
    assert_eq!(purged, 2_500);
    let counts = client.count_by_status().await.unwrap();
    assert_eq!(counts[&StatusKind::Completed], 0, "{counts:?}");
    let left = client.list(&InstanceQuery::new()).await.unwrap();
    let ids: Vec<_> = left.instances.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["open-0", "open-1"]);
    runtime.shutdown().await;
}

/// A store written before the indexes (format 2) is migrated when a runtime opens it:
/// listing, counting and recovery find its instances, and a waiting one goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_format_2_is_migrated_on_open_and_its_instances_go_on() {
    use durable_core::FjallStore;
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};

    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        let runtime = builder(store)
            .orchestrator(waits_for_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .start(chain, "done", 1)
            .await
            .unwrap()
            .wait(WAIT)
            .await
            .unwrap();
        let open = client.start(waits_for_go, "open", ()).await.unwrap();
        wait_status(&open, InstanceStatus::Running).await;
        runtime.shutdown().await;
    }
    // What format 2 held: no indexes, no counters, its marker.
    {
        let db = Database::builder(dir.path()).open().unwrap();
        for name in ["by_status", "by_orchestrator"] {
            let keyspace = db.keyspace(name, KeyspaceCreateOptions::default).unwrap();
            db.delete_keyspace(keyspace).unwrap();
        }
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
        let counters: Vec<_> = meta.prefix("count/").map(|g| g.key().unwrap()).collect();
        for key in counters {
            meta.remove(key).unwrap();
        }
        meta.insert("format", "durable-store/2").unwrap();
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    let runtime = builder(store)
        .orchestrator(waits_for_go)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let counts = client.count_by_status().await.unwrap();
    assert_eq!(counts[&StatusKind::Completed], 1, "{counts:?}");
    assert_eq!(counts[&StatusKind::Running], 1, "{counts:?}");
    let running = client
        .list(&InstanceQuery::new().status(StatusKind::Running))
        .await
        .unwrap();
    assert_eq!(running.instances.len(), 1);
    assert_eq!(running.instances[0].id, "open");
    client
        .raise_event("open", "go", &"on".to_string())
        .await
        .unwrap();
    let open = client.instance(waits_for_go, "open");
    assert_eq!(open.wait(WAIT).await.unwrap(), "on");
    runtime.shutdown().await;
}
