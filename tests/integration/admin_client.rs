//! The tools' client ([`Client::open`]) and the admin API over it: reading never acts (no
//! turn, no activity, no recovery, no lease), and what it sends is left in the store for
//! a worker: on fjall, the application's next start; on PostgreSQL, the worker that holds
//! the instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable_core::admin::{Admin, EntityFilter, ListFilter};
use durable_core::record::{Commit, Event, InstanceRecord, Status, WorkItem};
use durable_core::{
    ActivityContext, Client, Error, FjallStore, InstanceStatus, OrchestrationContext, Orchestrator,
    Runtime, StatusKind, Store, activity, orchestrator,
};
use durable_store::{PostgresStore, TestServer};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(30);

/// Counts the executions of [`bump`].
#[derive(Debug, Default)]
struct Bumps(AtomicU32);

#[activity]
async fn bump(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Bumps>>().0.fetch_add(1, Ordering::SeqCst);
    Ok(n + 1)
}

/// Bumps `n`, then waits for `go` and adds it.
#[orchestrator]
async fn tally(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let bumped = ctx.call(bump, n).await?;
    let go: u64 = ctx.wait_event("go").await;
    Ok(bumped + go)
}

/// A runtime with `tally`, and `bump` if `with_bump`, counting in `bumps`.
fn runtime(
    store: &FjallStore,
    bumps: &Arc<Bumps>,
    with_bump: bool,
) -> durable_core::RuntimeBuilder {
    let builder = Runtime::builder(store.clone())
        .orchestrator(tally)
        .state(bumps.clone());
    if with_bump {
        builder.activity(bump)
    } else {
        builder
    }
}

/// Writes instance `id` of `O` as a client's start would, pending with its `Started`
/// message queued, without any runtime: nothing has run it.
fn leave_pending<O: Orchestrator>(
    store: &FjallStore,
    _orchestrator: O,
    id: &str,
    input: &O::Input,
) {
    let input = serde_json::to_vec(input).unwrap();
    let record = InstanceRecord::pending(O::NAME.into(), O::VERSION, input.clone(), 1_000, 7, None);
    let work_id = store.reserve_work_ids(1).unwrap();
    let started = WorkItem::Message {
        instance: id.into(),
        incarnation: 7,
        generation: Some(0),
        event: Event::Started {
            orchestrator: O::NAME.into(),
            input,
        },
    };
    let commit = Commit {
        instances: vec![(id.into(), record)],
        enqueued: vec![(work_id, started)],
        expected: vec![(id.into(), None)],
        ..Commit::default()
    };
    store.commit(&[commit]).unwrap();
}

/// What a store holds of instance `id`: its status, history length, and the work items
/// queued for it.
fn snapshot(store: &FjallStore, id: &str) -> (Status, u32, usize, usize) {
    let record = store.instance(id).unwrap().unwrap();
    let history = store.history(id).unwrap();
    let queued = (store.work_items().unwrap().into_iter())
        .filter(|(_, item)| match item {
            WorkItem::Message { instance, .. } | WorkItem::Timer { instance, .. } => instance == id,
            WorkItem::Activity(task) => task.instance == id,
        })
        .count();
    (record.status, record.history_len, history.len(), queued)
}

/// Reads everything the admin API reads about `ids`, through a tool's client.
async fn read_everything(admin: &Admin, ids: &[&str]) {
    let list = admin.list(&ListFilter::default()).await.unwrap();
    assert_eq!(list.instances.len(), ids.len(), "{list:?}");
    admin.stats().await.unwrap();
    admin.entities(&EntityFilter::default()).await.unwrap();
    for id in ids {
        assert!(admin.instance(id).await.unwrap().is_some());
        assert!(admin.history(id).await.unwrap().is_some());
        assert!(admin.export(id).await.unwrap().is_some());
        let client = admin.client();
        client.position(id).await.unwrap();
        client.record(id).await.unwrap().unwrap();
        client.instance(tally, *id).status().await.unwrap();
        // A wait through a tool polls: it ends with the timeout, having run nothing.
        let waited = client
            .instance(tally, *id)
            .wait(Duration::from_millis(50))
            .await;
        assert!(
            matches!(waited, Err(Error::Timeout { .. } | Error::Stalled { .. })),
            "{waited:?}"
        );
    }
}

#[test]
fn reading_through_a_tools_client_leaves_stalled_and_pending_instances_as_they_were() {
    let (_dir, store) = store();
    let bumps = Arc::new(Bumps::default());
    // A deploy without `bump`: the instance stalls at its call.
    lifetime(async {
        let runtime = runtime(&store, &bumps, false).start().await.unwrap();
        let stalled = runtime.client().start(tally, "stalled", 1).await.unwrap();
        let err = stalled.wait(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
        runtime.shutdown().await;
    });
    leave_pending(&store, tally, "pending", &2);
    let before = [snapshot(&store, "stalled"), snapshot(&store, "pending")];
    assert!(matches!(before[0].0, Status::Stalled { .. }));
    assert_eq!(before[1].0, Status::Pending);
    lifetime(async {
        let client = Client::open(store.clone()).await.unwrap();
        let admin = Admin::new(client);
        read_everything(&admin, &["stalled", "pending"]).await;
        // Let anything a read might have set off have its chance.
        tokio::time::sleep(Duration::from_millis(300)).await;
        read_everything(&admin, &["stalled", "pending"]).await;
        let counts = admin.list(&ListFilter::default()).await.unwrap().counts;
        assert_eq!((counts["stalled"], counts["pending"]), (1, 1));
    });
    assert_eq!(
        [snapshot(&store, "stalled"), snapshot(&store, "pending")],
        before,
        "nothing moved"
    );
    assert_eq!(bumps.0.load(Ordering::SeqCst), 0, "no activity ran");
}

#[test]
fn requests_sent_through_a_tools_client_run_when_the_application_next_starts() {
    let (_dir, store) = store();
    let bumps = Arc::new(Bumps::default());
    lifetime(async {
        let runtime = runtime(&store, &bumps, true).start().await.unwrap();
        let client = runtime.client();
        client.start(tally, "raised", 1).await.unwrap();
        client.start(tally, "stopped", 2).await.unwrap();
        // Both bumped, and waiting for `go`.
        let bumped = |id| {
            (store.history(id).unwrap().iter())
                .any(|e| matches!(e, Event::ActivityCompleted { .. }))
        };
        while !bumped("raised") || !bumped("stopped") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime.shutdown().await;
    });
    let before = [snapshot(&store, "raised"), snapshot(&store, "stopped")];
    lifetime(async {
        let admin = Admin::new(Client::open(store.clone()).await.unwrap());
        admin
            .raise_event("raised", "go", serde_json::json!(40))
            .await
            .unwrap();
        admin.terminate("stopped", "by an operator").await.unwrap();
        // Neither moves here: the requests wait in the store for the application.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let list = admin
            .list(&ListFilter {
                status: Some("running".into()),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(list.instances.len(), 2, "{list:?}");
    });
    let after = [snapshot(&store, "raised"), snapshot(&store, "stopped")];
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before.0, after.0, "status unchanged");
        assert_eq!(
            (before.1, before.2),
            (after.1, after.2),
            "history unchanged"
        );
        assert_eq!(after.3, before.3 + 1, "one request queued");
    }
    lifetime(async {
        let runtime = runtime(&store, &bumps, true).start().await.unwrap();
        let client = runtime.client();
        assert_eq!(
            client.instance(tally, "raised").wait(WAIT).await.unwrap(),
            42
        );
        let stopped = client
            .instance(tally, "stopped")
            .wait(WAIT)
            .await
            .unwrap_err();
        assert!(matches!(stopped, Error::Terminated { .. }), "{stopped:?}");
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 2, "each activity ran once");
}

#[test]
fn a_tools_client_cannot_start_instances() {
    let (_dir, store) = store();
    lifetime(async {
        let client = Client::open(store.clone()).await.unwrap();
        let err = client.start(tally, "t", 1).await.unwrap_err();
        assert!(matches!(err, Error::UnregisteredOrchestrator(_)), "{err:?}");
        assert_eq!(store.instance("t").unwrap(), None);
        let status = client.instance(tally, "t").status().await;
        assert!(
            matches!(status, Err(Error::InstanceNotFound(_))),
            "{status:?}"
        );
    });
}

#[test]
fn on_postgres_a_raise_from_a_tools_client_reaches_the_worker_holding_the_instance() {
    let database = TestServer::shared().database();
    let bumps = Arc::new(Bumps::default());
    lifetime(async {
        let runtime = Runtime::builder(PostgresStore::open(database.url()).unwrap())
            .orchestrator(tally)
            .activity(bump)
            .state(bumps.clone())
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(tally, "held", 1).await.unwrap();
        let tool = Client::open(PostgresStore::open(database.url()).unwrap())
            .await
            .unwrap();
        let admin = Admin::new(tool);
        // Bumped, and waiting for `go`.
        loop {
            let history = admin.history("held").await.unwrap().unwrap();
            if history.iter().any(|row| row.kind == "ActivityCompleted") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let detail = admin.instance("held").await.unwrap().unwrap();
        assert_eq!(detail.summary.status, "running");
        admin
            .raise_event("held", "go", serde_json::json!(10))
            .await
            .unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 12);
        assert!(matches!(
            admin
                .client()
                .instance(tally, "held")
                .status()
                .await
                .unwrap(),
            InstanceStatus::Completed(12)
        ));
        let counts = admin.list(&ListFilter::default()).await.unwrap().counts;
        assert_eq!(counts[StatusKind::Completed.as_str()], 1);
        runtime.shutdown().await;
    });
    assert_eq!(bumps.0.load(Ordering::SeqCst), 1);
}
