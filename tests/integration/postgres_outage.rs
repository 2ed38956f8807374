//! Workers whose lease lapsed while they lived on (`durable_core`'s `runtime/lease.rs`):
//! one frozen past its lease while a turn's commit was on its way, and a fleet cut off
//! from a database that was stopped for longer than the lease. Each rejoins the database
//! as a new worker and goes on working, without a restart; nothing computed under the
//! lapsed lease is written once another worker took over, and no turn is recorded twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use durable_core::{ActivityContext, OrchestrationContext, Runtime, activity, orchestrator};
use durable_store::{Claim, ClaimFilter, Commit, Event, Layered, PostgresStore, Store};
use durable_store::{StoreError, StoreLayer, TestServer, WorkerId};

use crate::common::lifetime;

const WAIT: Duration = Duration::from_secs(60);

/// The lease of the workers: short, so that a lapse takes little time, and well above
/// the scheduling noise of a loaded machine.
const LEASE: Duration = Duration::from_millis(1_500);

/// The effects of the activities, by instance and input, counted at every execution; and
/// which worker ran them.
#[derive(Debug, Default)]
struct Effects {
    runs: Mutex<BTreeMap<(String, u64), u32>>,
}

/// Which worker a runtime is, for the outputs.
#[derive(Debug)]
struct Worker(u64);

/// Adds the worker's number to `x`, and counts the effect.
#[activity]
async fn step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let key = (ctx.instance_id().to_owned(), x);
    *ctx.state::<Arc<Effects>>()
        .runs
        .lock()
        .unwrap()
        .entry(key)
        .or_default() += 1;
    Ok(x + ctx.state::<Worker>().0)
}

/// A step, then waits for `go`, then a step on the first one's output.
#[orchestrator]
async fn two_steps(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let first = ctx.call(step, x).await?;
    let go = ctx.wait_event::<u64>("go").await;
    Ok(ctx.call(step, first * 10 + go).await?)
}

fn worker(store: impl Store, n: u64, effects: &Arc<Effects>) -> durable_core::RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(two_steps)
        .activity(step)
        .state(effects.clone())
        .state(Worker(n))
        .lease(LEASE)
}

/// Waits until instance `id` waits for `go`: started, its first step scheduled and done.
async fn until_waiting(store: &PostgresStore, id: &str) {
    for _ in 0..6_000 {
        // Not counting the turns' times.
        let events = (store.history(id).unwrap().into_iter())
            .filter(|e| !matches!(e, Event::TurnStarted { .. }))
            .count();
        if events >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never got to wait for `go`: {:?}", store.history(id));
}

/// Checks that the history of `id` records each step once and the instance's end once:
/// no turn was written twice.
fn assert_each_turn_once(store: &PostgresStore, id: &str) {
    let history = store.history(id).unwrap();
    let mut seen = HashSet::new();
    for event in &history {
        let key = match event {
            Event::Started { .. } => "started".to_owned(),
            Event::ActivityScheduled { seq, .. } => format!("scheduled {seq}"),
            Event::ActivityCompleted { seq, .. } => format!("completed {seq}"),
            Event::ActivityFailed { .. } => panic!("{id}: a step failed: {history:?}"),
            Event::EventRaised { name, .. } => format!("event {name}"),
            Event::Completed { .. } => "completed".to_owned(),
            _ => continue,
        };
        assert!(seen.insert(key.clone()), "{id}: {key} twice: {history:?}");
    }
    assert!(
        seen.contains("completed"),
        "{id} not completed: {history:?}"
    );
}

/// What a [`Freezable`] store does with calls that write.
#[derive(Debug, Default)]
struct Frost {
    /// Commits wait while set: the process froze while a commit was on its way.
    commits: bool,
    /// Renewals and claims wait too while set: the whole process is frozen.
    all: bool,
    /// The first commit held back that writes instance `p`'s history (a turn of it).
    turn_held: bool,
    /// What the store said to that commit once let go.
    turn_result: Option<Result<(), StoreError>>,
}

/// A store whose calls to the database wait while the test keeps it frozen, as those of
/// a process stopped with SIGSTOP (or a VM suspended) would.
#[derive(Clone)]
struct Freezable {
    inner: PostgresStore,
    frost: Arc<(Mutex<Frost>, Condvar)>,
}

impl Freezable {
    fn set(&self, change: impl FnOnce(&mut Frost)) {
        let (frost, changed) = &*self.frost;
        change(&mut frost.lock().unwrap());
        changed.notify_all();
    }

    /// Waits while `frozen` says the call must, at most a minute.
    fn wait_while(&self, frozen: impl Fn(&Frost) -> bool) {
        let (frost, changed) = &*self.frost;
        let frost = frost.lock().unwrap();
        let _ = changed
            .wait_timeout_while(frost, Duration::from_secs(60), |frost| frozen(frost))
            .unwrap();
    }

    /// Waits until the test's `done` holds, at most a minute.
    fn until(&self, done: impl Fn(&Frost) -> bool) {
        self.wait_while(|frost| !done(frost));
    }
}

impl StoreLayer for Freezable {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let turn = (commits.iter())
            .any(|commit| commit.history.iter().any(|append| append.instance == "p"));
        let mut held = false;
        {
            let (frost, changed) = &*self.frost;
            let mut frost = frost.lock().unwrap();
            if frost.commits && turn && !frost.turn_held {
                frost.turn_held = true;
                held = true;
                changed.notify_all();
            }
        }
        self.wait_while(|frost| frost.commits);
        let result = self.inner.commit(commits);
        if held {
            self.set(|frost| frost.turn_result = Some(result.clone()));
        }
        result
    }
    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        self.wait_while(|frost| frost.all);
        self.inner.join(lease)
    }
    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.wait_while(|frost| frost.all);
        self.inner.renew(worker, lease)
    }
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        self.wait_while(|frost| frost.all);
        self.inner.claim(worker, filter)
    }
}

/// Worker `a` freezes while the commit of a turn of `p` is on its way, for longer than
/// its lease; worker `b` takes `p` over and finishes it. When `a` thaws, the store
/// refuses its commit (the fence), and `a` joins again and goes on: instances started
/// through it complete.
#[test]
fn a_worker_frozen_past_its_lease_rejoins_and_writes_nothing_stale() {
    let database = TestServer::shared().database();
    let open = || PostgresStore::open(database.url()).unwrap();
    let effects = Arc::new(Effects::default());
    lifetime(async {
        let frozen = Layered(Freezable {
            inner: open(),
            frost: Arc::default(),
        });
        let a = worker(frozen.clone(), 1000, &effects)
            .start()
            .await
            .unwrap();
        a.client().start(two_steps, "p", 1).await.unwrap();
        let store = open();
        until_waiting(&store, "p").await;
        // `b` joins; `go` goes to `p` through it, for `a`, which holds `p`, to claim.
        let b = worker(open(), 2000, &effects).start().await.unwrap();
        frozen.set(|frost| frost.commits = true);
        b.client().raise_event("p", "go", &5u64).await.unwrap();
        let thread = frozen.clone();
        tokio::task::spawn_blocking(move || thread.until(|frost| frost.turn_held))
            .await
            .unwrap();
        assert!(frozen.frost.0.lock().unwrap().turn_held, "a never turned p");
        // Frozen whole, past its lease: `b` takes `p` over and finishes it.
        frozen.set(|frost| frost.all = true);
        let output = b
            .client()
            .instance(two_steps, "p")
            .wait(WAIT)
            .await
            .unwrap();
        assert_eq!(output, 1001 * 10 + 5 + 2000, "first step by a, second by b");
        frozen.set(|frost| {
            frost.commits = false;
            frost.all = false;
        });
        let thread = frozen.clone();
        tokio::task::spawn_blocking(move || thread.until(|frost| frost.turn_result.is_some()))
            .await
            .unwrap();
        let refused = frozen.frost.0.lock().unwrap().turn_result.clone();
        assert!(
            matches!(refused, Some(Err(StoreError::LeaseExpired { .. }))),
            "the turn a computed before its lease lapsed: {refused:?}"
        );
        assert_each_turn_once(&store, "p");
        // `a` goes on, as a new worker.
        for i in 0..5u64 {
            a.client()
                .start(two_steps, format!("q{i}"), i)
                .await
                .unwrap();
        }
        for i in 0..5u64 {
            let id = format!("q{i}");
            until_waiting(&store, &id).await;
            a.client().raise_event(&id, "go", &0u64).await.unwrap();
        }
        for i in 0..5u64 {
            let id = format!("q{i}");
            let output = a
                .client()
                .instance(two_steps, &id)
                .wait(WAIT)
                .await
                .unwrap();
            assert!(output >= 3000, "{id}: {output}");
            assert_each_turn_once(&store, &id);
        }
        assert!(a.halted().is_none(), "{:?}", a.halted());
        assert!(b.halted().is_none(), "{:?}", b.halted());
        assert!(a.rejoin_count() >= 1, "a never joined again");
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// The database stops for longer than the workers' lease, then starts again: both
/// workers join it again and finish every instance started before, during (a start
/// through a worker may fail while the database is down, with an error) and after the
/// outage; every step ran at least once, and no turn was written twice.
#[test]
fn workers_go_on_after_the_database_was_down_for_longer_than_their_lease() {
    // A server of its own: the test stops it.
    let server = TestServer::start().unwrap();
    let database = server.database();
    let open = || PostgresStore::open(database.url()).unwrap();
    let effects = Arc::new(Effects::default());
    lifetime(async {
        let a = worker(open(), 1000, &effects).start().await.unwrap();
        let b = worker(open(), 2000, &effects).start().await.unwrap();
        let clients = [a.client(), b.client()];
        let store = open();
        let mut started = Vec::new();
        for i in 0..10u64 {
            let id = format!("before{i}");
            clients[i as usize % 2]
                .start(two_steps, &id, i)
                .await
                .unwrap();
            started.push(id);
        }
        // Every instance waits for `go`: no commit is on its way when the database stops
        // (one whose COMMIT is lost poisons the store, which a restart mends).
        for id in &started {
            until_waiting(&store, id).await;
        }
        server.stop().unwrap();
        let mut refused = 0;
        for i in 0..6u64 {
            let id = format!("during{i}");
            match clients[i as usize % 2].start(two_steps, &id, i).await {
                Ok(_) => started.push(id),
                Err(e) => {
                    refused += 1;
                    let message = e.to_string();
                    assert!(!message.is_empty());
                }
            }
            tokio::time::sleep(LEASE / 2).await;
        }
        // Down for over three leases in all.
        tokio::time::sleep(LEASE / 2).await;
        server.start_again().unwrap();
        for i in 0..10u64 {
            let id = format!("after{i}");
            clients[i as usize % 2]
                .start(two_steps, &id, i)
                .await
                .unwrap();
            started.push(id);
        }
        for (n, id) in started.iter().enumerate() {
            until_waiting(&store, id).await;
            clients[n % 2].raise_event(id, "go", &1u64).await.unwrap();
        }
        for id in &started {
            let output = clients[0].instance(two_steps, id).wait(WAIT).await;
            assert!(output.is_ok(), "{id}: {output:?}");
            assert_each_turn_once(&store, id);
        }
        assert_eq!(refused + started.len(), 26);
        let runs = effects.runs.lock().unwrap().clone();
        for id in &started {
            let steps = runs.keys().filter(|(instance, _)| instance == id).count();
            assert_eq!(steps, 2, "{id}: each step's effect at least once: {runs:?}");
        }
        for (name, worker) in [("a", &a), ("b", &b)] {
            assert!(worker.halted().is_none(), "{name}: {:?}", worker.halted());
            assert!(worker.rejoin_count() >= 1, "{name} never joined again");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}
