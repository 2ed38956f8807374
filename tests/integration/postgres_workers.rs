//! Several workers on one PostgreSQL database (each a runtime on its own `PostgresStore`
//! handle, as separate processes would be): they share the instances, start an id once,
//! take over the work of a worker whose lease lapsed, and leave the tasks of an activity
//! one of them lacks to the other. The chaos harness (`.ci/run`) does the same across
//! processes killed with SIGKILL and stopped with SIGSTOP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use durable_store::{Claim, ClaimFilter, Commit, Event, InstanceRecord, Layered, PostgresStore};
use durable_store::{Store, StoreError, StoreLayer, TestDatabase, TestServer, WorkItem, WorkerId};

use crate::common::lifetime;

const WAIT: Duration = Duration::from_secs(60);

/// Counts the activities one worker ran, and says which worker it is.
#[derive(Debug)]
struct Worker {
    n: u64,
    ran: AtomicU32,
}

#[activity]
async fn mark(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let worker = ctx.state::<Arc<Worker>>();
    worker.ran.fetch_add(1, Ordering::SeqCst);
    Ok(x + worker.n)
}

/// Marks `x` with the worker that runs the activity, then waits for `go` and adds it.
#[orchestrator]
async fn marked(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let m = ctx.call(mark, x).await?;
    let go = ctx.wait_event::<u64>("go").await;
    Ok(m + go)
}

fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(database.url()).unwrap()
}

/// A runtime with the orchestrator and (if `with_activity`) the activity, as worker `n`.
fn worker(
    database: &TestDatabase,
    n: u64,
    with_activity: bool,
) -> (durable_core::RuntimeBuilder, Arc<Worker>) {
    let state = Arc::new(Worker {
        n,
        ran: AtomicU32::new(0),
    });
    let mut builder = Runtime::builder(open(database))
        .orchestrator(marked)
        .state(state.clone())
        .lease(Duration::from_secs(2));
    if with_activity {
        builder = builder.activity(mark);
    }
    (builder, state)
}

#[test]
fn two_workers_share_the_instances_and_start_each_id_once() {
    let database = TestServer::shared().database();
    lifetime(async {
        let (a, ran_a) = worker(&database, 1000, true);
        let (b, ran_b) = worker(&database, 2000, true);
        let (a, b) = (a.start().await.unwrap(), b.start().await.unwrap());
        let (client_a, client_b) = (a.client(), b.client());
        let mut new = 0;
        for i in 0..40u64 {
            let id = format!("m{i}");
            // Every id is started through both workers at once: one start creates it.
            let (x, y) = tokio::join!(
                client_a.start(marked, id.clone(), i),
                client_b.start(marked, id.clone(), i)
            );
            new += u32::from(x.unwrap().is_new()) + u32::from(y.unwrap().is_new());
        }
        assert_eq!(new, 40, "each id started once");
        for i in 0..40u64 {
            // Through the worker that did not start it, as often as not.
            let client = if i % 2 == 0 { &client_a } else { &client_b };
            client
                .raise_event(&format!("m{i}"), "go", &1)
                .await
                .unwrap();
        }
        for i in 0..40u64 {
            let output = client_a
                .instance(marked, format!("m{i}"))
                .wait(WAIT)
                .await
                .unwrap();
            assert!(
                output == i + 1001 || output == i + 2001,
                "m{i}: {output}: marked by neither worker"
            );
        }
        let (ran_a, ran_b) = (
            ran_a.ran.load(Ordering::SeqCst),
            ran_b.ran.load(Ordering::SeqCst),
        );
        assert_eq!(ran_a + ran_b, 40, "each activity ran once");
        assert!(
            ran_a > 0 && ran_b > 0,
            "both workers ran work: {ran_a}, {ran_b}"
        );
        a.shutdown().await;
        b.shutdown().await;
    });
    assert_eq!(open(&database).work_items().unwrap(), vec![]);
}

#[test]
fn the_instances_of_a_worker_whose_lease_lapsed_are_taken_over() {
    let database = TestServer::shared().database();
    lifetime(async {
        let (a, _) = worker(&database, 1000, true);
        let a = a.start().await.unwrap();
        for i in 0..10u64 {
            a.client().start(marked, format!("m{i}"), i).await.unwrap();
        }
        let store = open(&database);
        for i in 0..10u64 {
            // Marked, and waiting for `go`.
            // Started, scheduled, done (not counting the turns' times).
            while (store.history(&format!("m{i}")).unwrap().iter())
                .filter(|e| !matches!(e, Event::TurnStarted { .. }))
                .count()
                < 3
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Worker `a` dies without leaving: its runtime's tasks end with this tokio
        // runtime, and nothing ends its lease.
        std::mem::forget(a);
    });
    lifetime(async {
        let (b, _) = worker(&database, 2000, true);
        let b = b.start().await.unwrap();
        for i in 0..10u64 {
            b.client()
                .raise_event(&format!("m{i}"), "go", &1)
                .await
                .unwrap();
        }
        for i in 0..10u64 {
            let instance = b.client().instance(marked, format!("m{i}"));
            // Marked by `a` before it died; finished by `b` once `a`'s lease lapsed.
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 1001);
        }
        assert!(b.replay_count() >= 10, "b rebuilt what it took over");
        b.shutdown().await;
    });
}

#[test]
fn a_worker_leaves_the_tasks_of_an_activity_it_lacks_to_one_that_has_it() {
    let database = TestServer::shared().database();
    lifetime(async {
        // `old` lacks the activity (a rolling deploy half done); `new` has it.
        let (old, ran_old) = worker(&database, 1000, false);
        let (new, ran_new) = worker(&database, 2000, true);
        let (old, new) = (old.start().await.unwrap(), new.start().await.unwrap());
        for i in 0..10u64 {
            old.client()
                .start(marked, format!("m{i}"), i)
                .await
                .unwrap();
        }
        for i in 0..10u64 {
            old.client()
                .raise_event(&format!("m{i}"), "go", &1)
                .await
                .unwrap();
        }
        for i in 0..10u64 {
            let instance = old.client().instance(marked, format!("m{i}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 2001);
        }
        assert_eq!(ran_old.ran.load(Ordering::SeqCst), 0);
        assert_eq!(ran_new.ran.load(Ordering::SeqCst), 10);
        old.shutdown().await;
        new.shutdown().await;
    });
}

/// A store whose claims take 400 ms each (a database under load).
#[derive(Clone)]
struct SlowClaims(PostgresStore);

impl StoreLayer for SlowClaims {
    fn inner(&self) -> &dyn Store {
        &self.0
    }
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        let claim = self.0.claim(worker, filter);
        std::thread::sleep(Duration::from_millis(400));
        claim
    }
}

/// Waits for `stop`.
#[orchestrator]
async fn until_stopped(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let stop = ctx.wait_event::<u64>("stop").await;
    Ok(n + stop)
}

/// Work that keeps arriving for a worker's instances keeps every claim busy: its lease
/// is renewed all the same, rather than lapsing while its claim loop takes one batch
/// after another (which made the worker drop what it held and join again).
#[test]
fn a_worker_whose_claims_never_run_dry_keeps_its_lease() {
    let database = TestServer::shared().database();
    lifetime(async {
        let a = Runtime::builder(Layered(SlowClaims(open(&database))))
            .orchestrator(until_stopped)
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let instance = a.client().start(until_stopped, "busy", 1).await.unwrap();
        let store = open(&database);
        let incarnation = store.instance("busy").unwrap().unwrap().incarnation;
        let first = store.reserve_work_ids(1_000).unwrap();
        // An event no worker holds every 100 ms for 3 s, longer than the lease: each claim
        // finds some.
        for n in 0..30 {
            let event = Event::EventRaised {
                name: "noise".into(),
                payload: b"0".to_vec(),
            };
            let message = WorkItem::Message {
                instance: "busy".into(),
                incarnation,
                generation: None,
                event,
            };
            store
                .commit(&[Commit {
                    enqueued: vec![(first + n, message)],
                    ..Commit::default()
                }])
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(a.halted().is_none(), "{:?}", a.halted());
        assert_eq!(a.rejoin_count(), 0, "the lease lapsed");
        a.client().raise_event("busy", "stop", &1).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 2);
        a.shutdown().await;
    });
}

/// Marks `x` with the worker that runs it: a child of [`parent_of_marked`].
#[orchestrator]
async fn child_marked(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(mark, x).await?)
}

/// Runs `child_marked` as a sub-orchestration and adds one.
#[orchestrator]
async fn parent_of_marked(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.sub_orchestration(child_marked, x).await? + 1)
}

#[test]
fn a_worker_leaves_a_child_it_lacks_the_code_of_to_one_that_has_it() {
    let database = TestServer::shared().database();
    lifetime(async {
        // `old` has the parent only (a rolling deploy half done); `new` has the child.
        let state = |n| {
            Arc::new(Worker {
                n,
                ran: AtomicU32::new(0),
            })
        };
        let old = Runtime::builder(open(&database))
            .orchestrator(parent_of_marked)
            .state(state(1000))
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let new = Runtime::builder(open(&database))
            .orchestrator(child_marked)
            .activity(mark)
            .state(state(2000))
            .lease(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        for i in 0..10u64 {
            let parent = old
                .client()
                .start(parent_of_marked, format!("p{i}"), i)
                .await
                .unwrap();
            // The child ran on `new`, and the parent went on on `old`, never stalled.
            assert_eq!(parent.wait(WAIT).await.unwrap(), i + 2001);
        }
        old.shutdown().await;
        new.shutdown().await;
    });
}

/// Version 1 of `order`: waits for `go`, then marks `x` with the worker that runs it.
#[orchestrator(name = "order")]
async fn order_v1(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    Ok(ctx.call(mark, x + go).await?)
}

/// Version 2 of `order`: the same, plus 100,000, so an output tells the version that ran.
#[orchestrator(name = "order", version = 2)]
async fn order_v2(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    Ok(ctx.call(mark, x + go).await? + 100_000)
}

#[test]
fn each_instance_runs_on_a_worker_with_its_version_of_the_orchestrator() {
    let database = TestServer::shared().database();
    let state = |n| {
        Arc::new(Worker {
            n,
            ran: AtomicU32::new(0),
        })
    };
    lifetime(async {
        // Instances of both versions, waiting for `go`; their worker then leaves, so they
        // are held by none.
        let first = Runtime::builder(open(&database))
            .orchestrator(order_v1)
            .orchestrator(order_v2)
            .activity(mark)
            .state(state(0))
            .start()
            .await
            .unwrap();
        for i in 0..10u64 {
            first
                .client()
                .start(order_v1, format!("v1-{i}"), i)
                .await
                .unwrap();
            first
                .client()
                .start(order_v2, format!("v2-{i}"), i)
                .await
                .unwrap();
        }
        let store = open(&database);
        for i in 0..10u64 {
            for id in [format!("v1-{i}"), format!("v2-{i}")] {
                let running = |record: Option<InstanceRecord>| {
                    record.is_some_and(|r| matches!(r.status, durable_store::Status::Running))
                };
                while !running(store.instance(&id).unwrap()) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        first.shutdown().await;
    });
    lifetime(async {
        // A rolling deploy half done: `old` has version 1 only, `new` version 2 only.
        let worker = |version_2: bool, n| {
            let builder = Runtime::builder(open(&database))
                .activity(mark)
                .state(state(n))
                .lease(Duration::from_secs(2));
            if version_2 {
                builder.orchestrator(order_v2)
            } else {
                builder.orchestrator(order_v1)
            }
        };
        let old = worker(false, 1000).start().await.unwrap();
        let new = worker(true, 2000).start().await.unwrap();
        // Through either worker: the message is left in the store for a claim.
        for i in 0..10u64 {
            old.client()
                .raise_event(&format!("v1-{i}"), "go", &1)
                .await
                .unwrap();
            old.client()
                .raise_event(&format!("v2-{i}"), "go", &1)
                .await
                .unwrap();
        }
        for i in 0..10u64 {
            // Each ran its turns, and so its activity, on the worker with its version.
            let v1 = old.client().instance(order_v1, format!("v1-{i}"));
            assert_eq!(v1.wait(WAIT).await.unwrap(), i + 1 + 1000, "v1-{i}");
            let v2 = old.client().instance(order_v2, format!("v2-{i}"));
            assert_eq!(
                v2.wait(WAIT).await.unwrap(),
                i + 1 + 2000 + 100_000,
                "v2-{i}"
            );
        }
        old.shutdown().await;
        new.shutdown().await;
    });
    let store = open(&database);
    let stalled = (store.instances().unwrap().into_iter())
        .filter(|(_, record)| !record.status.is_terminal())
        .count();
    assert_eq!(stalled, 0, "every instance finished");
}
