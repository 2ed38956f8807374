//! The adversarial review of issue 13's afternoon changes: a worker that reads back
//! nothing it wrote (a start not read first, a wait on an instance running here told by
//! its watch), group commit on two PostgreSQL connections with refused commits set apart
//! by halving, and starts of ids another live worker holds.

use std::time::{Duration, Instant};

use durable_core::{Error, OrchestrationContext, Runtime, orchestrator};
use durable_store::{Layered, PostgresStore, TestDatabase, TestServer};
use tokio::task::JoinSet;

use crate::common::{lifetime, store, until_suspended};

/// What a wait is given: long enough for a loaded machine, far longer than any of these
/// instances takes once it is told to go on.
const WAIT: Duration = Duration::from_secs(30);

/// How long a wait may take once its instance has been told to finish: a wait that hangs
/// until its timeout (the watch not told) is far over it.
const PROMPT: Duration = Duration::from_secs(10);

#[orchestrator]
async fn waits_for_go(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    Ok(x + go)
}

/// Continues as new after each `go` until the sum reaches 3.
#[orchestrator]
async fn sums_goes(ctx: OrchestrationContext, sum: u64) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    if sum + go < 3 {
        return ctx.continue_as_new(sum + go).await;
    }
    Ok(sum + go)
}

/// Fails once told to go on.
#[orchestrator]
async fn fails_on_go(ctx: OrchestrationContext, _: ()) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    Err(format!("told {go}"))
}

/// Another orchestrator, for a start under an id that runs `waits_for_go`.
#[orchestrator]
async fn other(_ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(x)
}

/// Waits for `instance` on a task of its own, so the wait is in progress while the test
/// changes the instance's course; the handle says what it returned and how long it took.
fn waiting<O>(
    instance: durable_core::Instance<O>,
) -> tokio::task::JoinHandle<(Result<O::Output, Error>, Instant)>
where
    O: durable_core::Orchestrator + Send + Sync + 'static,
    O::Output: Send,
{
    tokio::spawn(async move {
        let result = instance.wait(WAIT).await;
        (result, Instant::now())
    })
}

/// Until the wait has read the instance and gone to sleep on its watch.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[test]
fn a_wait_on_an_instance_running_here_ends_however_the_instance_stops() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(waits_for_go)
            .orchestrator(sums_goes)
            .orchestrator(fails_on_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();

        // Terminated while waited on.
        let terminated = client.start(waits_for_go, "t", 1).await.unwrap();
        let wait = waiting(client.instance(waits_for_go, "t"));
        settle().await;
        let told = Instant::now();
        terminated.terminate("enough").await.unwrap();
        let (result, at) = wait.await.unwrap();
        assert!(
            matches!(&result, Err(Error::Terminated { reason, .. }) if reason == "enough"),
            "{result:?}"
        );
        assert!(at - told < PROMPT, "the terminate woke the wait late");

        // Suspended, told to go on while suspended, then resumed.
        let suspended = client.start(waits_for_go, "s", 1).await.unwrap();
        let wait = waiting(client.instance(waits_for_go, "s"));
        settle().await;
        suspended.suspend("a pause").await.unwrap();
        until_suspended(&suspended).await;
        suspended.raise_event("go", &2u64).await.unwrap();
        settle().await;
        let told = Instant::now();
        suspended.resume().await.unwrap();
        let (result, at) = wait.await.unwrap();
        assert_eq!(result.unwrap(), 3);
        assert!(at - told < PROMPT, "the resume woke the wait late");

        // Continued as new twice while waited on.
        let continued = client.start(sums_goes, "c", 0).await.unwrap();
        let wait = waiting(client.instance(sums_goes, "c"));
        for _ in 0..3 {
            settle().await;
            continued.raise_event("go", &1u64).await.unwrap();
        }
        let (result, _) = wait.await.unwrap();
        assert_eq!(result.unwrap(), 3);

        // Restarted after it was terminated: the wait is on the new run.
        client.restart("t").await.unwrap();
        let wait = waiting(client.instance(waits_for_go, "t"));
        settle().await;
        let told = Instant::now();
        terminated.raise_event("go", &5u64).await.unwrap();
        let (result, at) = wait.await.unwrap();
        assert_eq!(result.unwrap(), 6);
        assert!(
            at - told < PROMPT,
            "the new run's finish woke the wait late"
        );

        // Failed, restarted, failed again.
        let failing = client.start(fails_on_go, "f", ()).await.unwrap();
        let wait = waiting(client.instance(fails_on_go, "f"));
        settle().await;
        failing.raise_event("go", &1u64).await.unwrap();
        let (result, _) = wait.await.unwrap();
        assert!(matches!(result, Err(Error::Failed { .. })), "{result:?}");
        client.restart("f").await.unwrap();
        let wait = waiting(client.instance(fails_on_go, "f"));
        settle().await;
        failing.raise_event("go", &2u64).await.unwrap();
        let (result, _) = wait.await.unwrap();
        assert!(
            matches!(&result, Err(Error::Failed { failure, .. }) if failure.message.contains("told 2")),
            "{result:?}"
        );
        runtime.shutdown().await;
    });
}

fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(database.url()).unwrap()
}

/// A worker on `database` with `waits_for_go` and `other`.
async fn pg_worker(database: &TestDatabase) -> Runtime {
    Runtime::builder(open(database))
        .orchestrator(waits_for_go)
        .orchestrator(other)
        .lease(Duration::from_secs(2))
        .start()
        .await
        .unwrap()
}

#[test]
fn a_start_through_another_worker_of_an_id_a_live_worker_holds_finds_the_instance() {
    let database = TestServer::shared().database();
    lifetime(async {
        let (a, b) = (pg_worker(&database).await, pg_worker(&database).await);
        let (client_a, client_b) = (a.client(), b.client());
        let started = client_a.start(waits_for_go, "held", 1).await.unwrap();
        assert!(started.is_new());
        // Turned by `a` (which holds it now), waiting for `go`.
        let store = open(&database);
        for _ in 0..3_000 {
            let record = durable_store::Store::instance(&store, "held")
                .unwrap()
                .unwrap();
            if record.status.kind() == durable_store::StatusKind::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Not read first: `a` holds the row, so `b`'s start is refused as fenced.
        let again = client_b.start(waits_for_go, "held", 2).await.unwrap();
        assert!(!again.is_new());
        let conflict = client_b.start(other, "held", 2).await.unwrap_err();
        assert!(
            matches!(&conflict, Error::InstanceConflict { existing, .. } if existing == "waits_for_go"),
            "{conflict:?}"
        );
        let wait_a = waiting(client_a.instance(waits_for_go, "held"));
        let wait_b = waiting(client_b.instance(waits_for_go, "held"));
        settle().await;
        client_b.raise_event("held", "go", &10u64).await.unwrap();
        assert_eq!(
            wait_a.await.unwrap().0.unwrap(),
            11,
            "the input of the first start"
        );
        assert_eq!(wait_b.await.unwrap().0.unwrap(), 11);
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn starts_of_new_and_existing_ids_at_once_on_two_writer_connections_each_settle_right() {
    let database = TestServer::shared().database();
    lifetime(async {
        let (a, b) = (pg_worker(&database).await, pg_worker(&database).await);
        let (client_a, client_b) = (a.client(), b.client());
        // Every fourth id exists already, held by `a`.
        for i in (0..160u64).step_by(4) {
            client_a
                .start(waits_for_go, format!("i{i}"), i)
                .await
                .unwrap();
        }
        // Through both workers at once, so that batches on both of each worker's
        // connections mix starts that create with starts refused (as existing, or as
        // fenced by the other worker).
        let mut starts = JoinSet::new();
        for i in 0..160u64 {
            for client in [client_a.clone(), client_b.clone()] {
                starts.spawn(async move {
                    let started = client.start(waits_for_go, format!("i{i}"), i).await;
                    (i, started.map(|s| s.is_new()))
                });
            }
        }
        let mut new = vec![0u32; 160];
        while let Some(joined) = starts.join_next().await {
            let (i, is_new) = joined.unwrap();
            new[i as usize] += u32::from(is_new.unwrap_or_else(|e| panic!("i{i}: {e:?}")));
        }
        for (i, created) in new.iter().enumerate() {
            let expected = u32::from(i % 4 != 0);
            assert_eq!(*created, expected, "i{i}: created {created} times");
        }
        for i in 0..160u64 {
            let client = if i % 3 == 0 { &client_a } else { &client_b };
            client
                .raise_event(&format!("i{i}"), "go", &1u64)
                .await
                .unwrap();
        }
        for i in 0..160u64 {
            let client = if i % 2 == 0 { &client_a } else { &client_b };
            let output = client
                .instance(waits_for_go, format!("i{i}"))
                .wait(WAIT)
                .await
                .unwrap();
            assert_eq!(output, i + 1, "i{i}");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn starts_of_new_and_existing_ids_at_once_on_a_local_store_each_settle_right() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(waits_for_go)
            .orchestrator(other)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        // Every fourth id exists already; every eighth runs the other orchestrator.
        for i in (0..120u64).step_by(4) {
            let id = format!("l{i}");
            if i % 8 == 0 {
                client.start(other, id, i).await.unwrap();
            } else {
                client.start(waits_for_go, id, i).await.unwrap();
            }
        }
        // At once, so that batches mix starts that create with starts refused (as
        // existing): each refused one set apart, the others written.
        let mut starts = JoinSet::new();
        for i in 0..120u64 {
            let client = client.clone();
            starts.spawn(async move {
                let started = client.start(waits_for_go, format!("l{i}"), i).await;
                (i, started.map(|s| s.is_new()))
            });
        }
        while let Some(joined) = starts.join_next().await {
            let (i, started) = joined.unwrap();
            match started {
                Ok(is_new) => assert_eq!(is_new, i % 4 != 0, "l{i}"),
                Err(Error::InstanceConflict { existing, .. }) => {
                    assert!(i % 8 == 0 && existing == "other", "l{i}: {existing}");
                }
                Err(e) => panic!("l{i}: {e:?}"),
            }
        }
        for i in (0..120u64).filter(|i| i % 8 != 0) {
            client
                .raise_event(&format!("l{i}"), "go", &1u64)
                .await
                .unwrap();
            let output = client
                .instance(waits_for_go, format!("l{i}"))
                .wait(WAIT)
                .await
                .unwrap();
            assert_eq!(output, i + 1, "l{i}");
        }
        runtime.shutdown().await;
    });
}

/// Makes the next turn of `slow_on_go` that takes `go` take [`SLOW_TURN`] to compute.
static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long that turn computes: past the lease, and past the worker's joining again.
const SLOW_TURN: Duration = Duration::from_secs(3);

/// A turn that computes for long (a heavy orchestrator), once.
fn compute_for_long() {
    if SLOW.swap(false, std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(SLOW_TURN);
    }
}

#[orchestrator]
async fn slow_on_go(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let go = ctx.wait_event::<u64>("go").await;
    compute_for_long();
    Ok(x + go)
}

/// What the test holds up in [`Lapsing`].
#[derive(Debug, Default)]
struct Holds {
    /// Renewals wait while set: the lease lapses.
    renewals: bool,
    /// Commits wait while set, so that those queued meanwhile make one batch.
    commits: bool,
}

/// A memory store other processes might share (so the runtime's lease is the builder's,
/// and lapses), whose renewals and commits the test holds up.
#[derive(Default)]
struct Lapsing {
    inner: durable_store::MemoryStore,
    holds: std::sync::Mutex<Holds>,
}

impl Lapsing {
    fn set(&self, change: impl FnOnce(&mut Holds)) {
        change(&mut self.holds.lock().unwrap());
    }

    fn wait_while(&self, held: impl Fn(&Holds) -> bool) {
        let began = Instant::now();
        while held(&self.holds.lock().unwrap()) && began.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

mod lapsing_store {
    use std::time::Duration;

    use durable_store::{Commit, Store, StoreError, StoreLayer, WorkerId};

    use super::Lapsing;

    impl StoreLayer for Lapsing {
        fn inner(&self) -> &dyn Store {
            &self.inner
        }
        fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
            self.wait_while(|holds| holds.commits);
            self.inner.commit(commits)
        }
        fn is_shared(&self) -> bool {
            true
        }
        fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
            self.wait_while(|holds| holds.renewals);
            self.inner.renew(worker, lease)
        }
    }
}

/// A worker whose lease lapsed while a turn computed joins again; the turn, done, is
/// committed under the old lease, in one batch with a client's start under the new one.
/// The store refuses the old lease's commit; the start is written at once (it waited ten
/// seconds for a rejoin that had already happened, refused with the stale commit).
#[test]
fn a_start_batched_with_a_turn_of_a_lapsed_lease_is_written_at_once() {
    let store = std::sync::Arc::new(Layered(Lapsing::default()));
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(slow_on_go)
            .orchestrator(waits_for_go)
            .lease(Duration::from_millis(600))
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let p = client.start(slow_on_go, "p", 1).await.unwrap();
        settle().await;
        // The turn that takes `go` computes for long; meanwhile the lease lapses.
        let began = Instant::now();
        store.set(|holds| holds.renewals = true);
        SLOW.store(true, std::sync::atomic::Ordering::SeqCst);
        p.raise_event("go", &1u64).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        store.set(|holds| holds.renewals = false);
        while runtime.rejoin_count() == 0 {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "never joined again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            began.elapsed() < SLOW_TURN,
            "joined again after the turn was done"
        );
        // Commits wait: the one in hand holds the commit thread, and the start and the
        // slow turn's commit queue up behind it, one batch.
        store.set(|holds| holds.commits = true);
        let held = tokio::spawn({
            let client = client.clone();
            async move { client.start(waits_for_go, "held", 0).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = tokio::spawn({
            let client = client.clone();
            async move {
                let result = client.start(waits_for_go, "q", 0).await.map(drop);
                (result, Instant::now())
            }
        });
        tokio::time::sleep(SLOW_TURN.saturating_sub(began.elapsed()) + Duration::from_millis(300))
            .await;
        let released = Instant::now();
        store.set(|holds| holds.commits = false);
        held.await.unwrap().unwrap();
        let (result, at) = started.await.unwrap();
        result.unwrap();
        assert!(
            at - released < Duration::from_secs(5),
            "the start took {:?} once the commits went on",
            at - released
        );
        // `p` is taken over under the new lease and finishes.
        assert_eq!(p.wait(WAIT).await.unwrap(), 2);
        runtime.shutdown().await;
    });
}

/// Makes the next turn of `names_child_x` compute for long before it starts its child.
static SLOW_PARENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn parent_computes_for_long() {
    if SLOW_PARENT.swap(false, std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1_000));
    }
}

/// Once told `go`, starts the child `x` (running `waits_for_go`), and returns what the
/// child returned, or that it could not start it.
#[orchestrator]
async fn names_child_x(ctx: OrchestrationContext, _: ()) -> Result<String, String> {
    let _ = ctx.wait_event::<u64>("go").await;
    parent_computes_for_long();
    match ctx.sub_orchestration_with_id(waits_for_go, "x", 100).await {
        Ok(output) => Ok(format!("child {output}")),
        Err(e) => Ok(format!("no child: {e}")),
    }
}

/// A client starts `x` while a parent's turn that starts a child `x` is computing: the
/// start is written first, then the turn. One of the two must find the other's `x`: the
/// turn may not write its child over the instance the start created and reported new.
#[test]
fn a_child_started_under_the_id_a_client_just_started_does_not_replace_it() {
    let store = std::sync::Arc::new(Layered(Lapsing::default()));
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(names_child_x)
            .orchestrator(waits_for_go)
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let parent = client.start(names_child_x, "parent", ()).await.unwrap();
        settle().await;
        SLOW_PARENT.store(true, std::sync::atomic::Ordering::SeqCst);
        parent.raise_event("go", &1u64).await.unwrap();
        // The parent's turn computes; the start's commit waits until it has read that
        // there is no `x` and queued its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.set(|holds| holds.commits = true);
        let started = tokio::spawn({
            let client = client.clone();
            async move { client.start(waits_for_go, "x", 1).await.map(|x| x.is_new()) }
        });
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        store.set(|holds| holds.commits = false);
        let is_new = started.await.unwrap().unwrap();
        let record = client.record("x").await.unwrap().unwrap();
        if is_new {
            // The client's instance: its input, no parent.
            assert!(
                record.parent.is_none(),
                "the start reported `x` new, and the parent's child replaced it: {record:?}"
            );
            // The parent's turn, refused, runs again and finds `x` running.
            let output = parent.wait(WAIT).await.unwrap();
            assert!(output.starts_with("no child"), "{output}");
            client.raise_event("x", "go", &1u64).await.unwrap();
            let x = client.instance(waits_for_go, "x");
            assert_eq!(x.wait(WAIT).await.unwrap(), 2);
        } else {
            assert!(record.parent.is_some(), "{record:?}");
        }
        runtime.shutdown().await;
    });
}
