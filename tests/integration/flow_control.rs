//! Flow control of activities (issue 16): a concurrency limit that holds across workers
//! on PostgreSQL and per process on fjall, slots held under the worker's lease (a worker
//! that dies frees them when its lease lapses), a rate limit counted per window, and
//! priority among waiting tasks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_core::{
    ActivityContext, ActivityLimits, OrchestrationContext, Runtime, RuntimeBuilder, activity,
    orchestrator,
};
use durable_store::{PostgresStore, TestDatabase, TestServer};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(120);

/// What the limited activities record: how many run at once (and the most seen), when
/// each started, and whether this worker's executions hang (a worker about to die).
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicU32,
    most: AtomicU32,
    ran: AtomicU32,
    starts: Mutex<Vec<Instant>>,
}

impl Gauge {
    /// One execution begins: counted until the guard drops.
    fn begin(self: &Arc<Self>) -> Running {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.ran.fetch_add(1, Ordering::SeqCst);
        self.starts.lock().unwrap().push(Instant::now());
        Running(self.clone())
    }

    fn most(&self) -> u32 {
        self.most.load(Ordering::SeqCst)
    }
}

/// An execution in progress; ends when dropped (returned, or cancelled with its runtime).
struct Running(Arc<Gauge>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether this worker's executions of `limited_step` never end (a worker that dies
/// holding its slots).
#[derive(Debug, Clone, Copy)]
struct Hangs(bool);

/// At most 3 run at once, across every worker of the store.
#[activity(concurrency = 3)]
async fn limited_step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    if ctx.state::<Hangs>().0 {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    Ok(x * 2)
}

#[orchestrator]
async fn limited_flow(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(limited_step, x).await?)
}

/// Limited by the builder: at most 4 starts per 400 ms.
#[activity]
async fn rated_step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    Ok(x + 1)
}

#[orchestrator]
async fn rated_flow(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(rated_step, x).await?)
}

fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(database.url()).unwrap()
}

/// A worker of `limited_flow` on `database`, reporting to `gauge`.
fn limited_worker(database: &TestDatabase, gauge: &Arc<Gauge>, hangs: bool) -> RuntimeBuilder {
    Runtime::builder(open(database))
        .orchestrator(limited_flow)
        .activity(limited_step)
        .state(gauge.clone())
        .state(Hangs(hangs))
        .lease(Duration::from_secs(2))
}

/// Three workers on one database run 100 instances whose activity is limited to 3 (by
/// its attribute): never more than 3 run at once, across the workers, and 3 do.
#[test]
fn a_concurrency_limit_of_3_holds_across_3_workers_on_postgres() {
    let database = TestServer::shared().database();
    let gauge = Arc::new(Gauge::default());
    lifetime(async {
        let mut workers = Vec::new();
        for _ in 0..3 {
            let worker = limited_worker(&database, &gauge, false).start();
            workers.push(worker.await.unwrap());
        }
        for i in 0..100u64 {
            let client = workers[i as usize % 3].client();
            client
                .start(limited_flow, format!("l{i}"), i)
                .await
                .unwrap();
        }
        for i in 0..100u64 {
            let instance = workers[0].client().instance(limited_flow, format!("l{i}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i * 2);
        }
        for worker in workers {
            worker.shutdown().await;
        }
    });
    assert_eq!(
        gauge.ran.load(Ordering::SeqCst),
        100,
        "each activity ran once"
    );
    assert_eq!(
        gauge.most(),
        3,
        "at most 3 ran at once across the workers, and 3 did"
    );
}

/// A worker that dies holding all 3 slots (its executions hang, then its process ends
/// without leaving) keeps them while its lease lives: the other workers start none of the
/// waiting tasks until it lapses, then run them all.
#[test]
fn a_dead_workers_slots_free_when_its_lease_lapses() {
    let database = TestServer::shared().database();
    let doomed = Arc::new(Gauge::default());
    let died = lifetime(async {
        let worker = limited_worker(&database, &doomed, true)
            .start()
            .await
            .unwrap();
        for i in 0..8u64 {
            worker
                .client()
                .start(limited_flow, format!("d{i}"), i)
                .await
                .unwrap();
        }
        let deadline = Instant::now() + WAIT;
        while doomed.running.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "the doomed worker never held 3 slots"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // It dies without leaving: its tasks end with this tokio runtime, and nothing
        // ends its lease.
        std::mem::forget(worker);
        Instant::now()
    });
    assert_eq!(
        doomed.most(),
        3,
        "the doomed worker took no more than 3 slots"
    );
    let gauge = Arc::new(Gauge::default());
    lifetime(async {
        let a = limited_worker(&database, &gauge, false)
            .start()
            .await
            .unwrap();
        let b = limited_worker(&database, &gauge, false)
            .start()
            .await
            .unwrap();
        for i in 0..8u64 {
            let instance = a.client().instance(limited_flow, format!("d{i}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i * 2);
        }
        a.shutdown().await;
        b.shutdown().await;
    });
    let first = *gauge.starts.lock().unwrap().iter().min().unwrap();
    // The lease is 2 s, renewed every third of it: at least 1.3 s of it was left.
    assert!(
        first.duration_since(died) >= Duration::from_secs(1),
        "a task started {:?} after the worker holding every slot died, before its lease \
         lapsed",
        first.duration_since(died)
    );
    assert_eq!(
        gauge.ran.load(Ordering::SeqCst),
        8,
        "every task ran once more"
    );
    assert!(gauge.most() <= 3, "at most 3 at once: {}", gauge.most());
}

/// Two workers run 24 instances of an activity the builder limits to 4 starts per
/// 400 ms: no window of the period (less a tick for the clocks) holds more than 4 starts,
/// so the run takes at least 5 periods.
#[test]
fn a_rate_limit_holds_across_workers_on_postgres() {
    let database = TestServer::shared().database();
    let gauge = Arc::new(Gauge::default());
    let period = Duration::from_millis(400);
    let began = Instant::now();
    lifetime(async {
        let worker = || {
            Runtime::builder(open(&database))
                .orchestrator(rated_flow)
                .activity(rated_step)
                .activity_limits(rated_step, ActivityLimits::new().rate(4, period))
                .state(gauge.clone())
                .lease(Duration::from_secs(2))
        };
        let a = worker().start().await.unwrap();
        let b = worker().start().await.unwrap();
        for i in 0..24u64 {
            let client = if i % 2 == 0 { a.client() } else { b.client() };
            client.start(rated_flow, format!("r{i}"), i).await.unwrap();
        }
        for i in 0..24u64 {
            let instance = a.client().instance(rated_flow, format!("r{i}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 1);
        }
        a.shutdown().await;
        b.shutdown().await;
    });
    let took = began.elapsed();
    let mut starts = gauge.starts.lock().unwrap().clone();
    starts.sort_unstable();
    assert_eq!(starts.len(), 24);
    // The store counts starts by the database's clock at the claim; the activity records
    // them when its body runs, a little later and not always by the same delay.
    let tick = Duration::from_millis(100);
    for (n, first) in starts.iter().enumerate() {
        let within = starts[n..]
            .iter()
            .take_while(|at| at.duration_since(*first) < period - tick)
            .count();
        assert!(
            within <= 4,
            "{within} starts within {:?} of start {n}: {starts:?}",
            period - tick
        );
    }
    assert!(
        took >= period * 5,
        "24 starts at 4 per {period:?} took only {took:?}"
    );
}

/// On fjall the limit holds in the process: 30 instances, 2 at once.
#[test]
fn a_concurrency_limit_holds_in_the_process_on_fjall() {
    let (_dir, store) = store();
    let gauge = Arc::new(Gauge::default());
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(limited_flow)
            .activity(limited_step)
            .activity_limits(limited_step, ActivityLimits::new().concurrency(2))
            .state(gauge.clone())
            .state(Hangs(false))
            .start()
            .await
            .unwrap();
        for i in 0..30u64 {
            let client = runtime.client();
            client
                .start(limited_flow, format!("f{i}"), i)
                .await
                .unwrap();
        }
        for i in 0..30u64 {
            let instance = runtime.client().instance(limited_flow, format!("f{i}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i * 2);
        }
        runtime.shutdown().await;
    });
    assert_eq!(gauge.ran.load(Ordering::SeqCst), 30);
    assert_eq!(
        gauge.most(),
        2,
        "the builder's limit of 2 overrides the attribute's 3"
    );
}

/// The order activities ran in.
#[derive(Debug, Default)]
struct Order(Mutex<Vec<String>>);

#[activity]
async fn routine(ctx: ActivityContext, n: u32) -> Result<(), String> {
    ctx.state::<Arc<Order>>()
        .0
        .lock()
        .unwrap()
        .push(format!("r{n}"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[activity(priority = 5)]
async fn urgent(ctx: ActivityContext, n: u32) -> Result<(), String> {
    ctx.state::<Arc<Order>>()
        .0
        .lock()
        .unwrap()
        .push(format!("u{n}"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// Four routine calls, then four urgent ones, all at once.
#[orchestrator]
async fn mixed(ctx: OrchestrationContext, _: ()) -> Result<(), String> {
    let mut calls = Vec::new();
    for n in 0..4 {
        calls.push(ctx.call(routine, n));
    }
    for n in 0..4 {
        calls.push(ctx.call(urgent, n));
    }
    let calls = calls.into_iter().map(Box::pin).collect();
    for result in ctx.join_all(calls).await {
        result?;
    }
    Ok(())
}

/// With one slot for activities in the worker, the waiting tasks of higher priority go
/// first: the first routine call takes the free slot, then the urgent ones run, then the
/// rest in the order called.
#[test]
fn waiting_activities_start_higher_priority_first_on_fjall() {
    let (_dir, store) = store();
    let order = Arc::new(Order::default());
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(mixed)
            .activity(routine)
            .activity(urgent)
            .activity_concurrency(1)
            .state(order.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client.start(mixed, "m", ()).await.unwrap();
        client.instance(mixed, "m").wait(WAIT).await.unwrap();
        runtime.shutdown().await;
    });
    assert_eq!(
        *order.0.lock().unwrap(),
        ["r0", "u0", "u1", "u2", "u3", "r1", "r2", "r3"]
    );
}

/// At most 2 instances run at once: each runs one execution of `gated_step`.
#[orchestrator(max_running = 2)]
async fn gated(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(gated_step, x).await?)
}

#[activity]
async fn gated_step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    ctx.state::<Arc<Order>>()
        .0
        .lock()
        .unwrap()
        .push(format!("g{x:02}"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(x + 7)
}

/// At most 1 instance runs at once; each waits for `go` once its step ran.
#[orchestrator(max_running = 1)]
async fn one_at_a_time(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let y = ctx.call(gated_step, x).await?;
    let go = ctx.wait_event::<u64>("go").await;
    Ok(y + go)
}

fn gated_worker(
    store: impl durable_core::Store,
    gauge: &Arc<Gauge>,
    order: &Arc<Order>,
) -> RuntimeBuilder {
    Runtime::builder(store)
        .orchestrator(gated)
        .orchestrator(one_at_a_time)
        .activity(gated_step)
        .state(gauge.clone())
        .state(order.clone())
        .lease(Duration::from_secs(2))
}

/// Two workers on one database run 30 instances of an orchestrator limited to 2 running
/// instances (by its attribute): never more than 2 run at once, and 2 do.
#[test]
fn a_limit_on_running_instances_holds_across_workers_on_postgres() {
    let database = TestServer::shared().database();
    let (gauge, order) = (Arc::new(Gauge::default()), Arc::new(Order::default()));
    lifetime(async {
        let a = gated_worker(open(&database), &gauge, &order)
            .start()
            .await
            .unwrap();
        let b = gated_worker(open(&database), &gauge, &order)
            .start()
            .await
            .unwrap();
        for i in 0..30u64 {
            let client = if i % 2 == 0 { a.client() } else { b.client() };
            client.start(gated, format!("g{i:02}"), i).await.unwrap();
        }
        for i in 0..30u64 {
            let instance = b.client().instance(gated, format!("g{i:02}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 7);
        }
        a.shutdown().await;
        b.shutdown().await;
    });
    assert_eq!(gauge.ran.load(Ordering::SeqCst), 30);
    assert_eq!(
        gauge.most(),
        2,
        "at most 2 instances ran at once, and 2 did"
    );
}

/// On fjall, the waiting instances start in creation order, and the limit holds across
/// a restart: an instance running when the process stopped still counts after it.
#[test]
fn waiting_instances_start_in_creation_order_and_the_limit_survives_a_restart_on_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let open = || durable_core::FjallStore::open(dir.path()).unwrap();
    let (gauge, order) = (Arc::new(Gauge::default()), Arc::new(Order::default()));
    lifetime(async {
        let runtime = gated_worker(open(), &gauge, &order).start().await.unwrap();
        let client = runtime.client();
        for i in 0..20u64 {
            client.start(gated, format!("g{i:02}"), i).await.unwrap();
        }
        for i in 0..20u64 {
            let instance = client.instance(gated, format!("g{i:02}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), i + 7);
        }
        // One instance of `one_at_a_time` runs (it waits for `go`), one waits to start.
        client.start(one_at_a_time, "first", 100).await.unwrap();
        client.start(one_at_a_time, "second", 200).await.unwrap();
        let deadline = Instant::now() + WAIT;
        while gauge.ran.load(Ordering::SeqCst) < 21 {
            assert!(Instant::now() < deadline, "`first` never ran its step");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        runtime.shutdown().await;
    });
    // Two instances that a claim starts together may run their steps in either order:
    // each starts within one place (the limit less one) of its place in creation order.
    let started = order.0.lock().unwrap()[..20].to_vec();
    for (place, id) in started.iter().enumerate() {
        let created: usize = id[1..].parse().unwrap();
        assert!(
            created.abs_diff(place) < 2,
            "the waiting instances started in creation order: {started:?}"
        );
    }
    assert_eq!(gauge.most(), 2, "at most 2 ran at once, and 2 did");
    lifetime(async {
        let runtime = gated_worker(open(), &gauge, &order).start().await.unwrap();
        let client = runtime.client();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            gauge.ran.load(Ordering::SeqCst),
            21,
            "`second` did not start while `first` runs, after the restart"
        );
        client.raise_event("first", "go", &1u64).await.unwrap();
        let first = client.instance(one_at_a_time, "first");
        assert_eq!(first.wait(WAIT).await.unwrap(), 108);
        client.raise_event("second", "go", &2u64).await.unwrap();
        let second = client.instance(one_at_a_time, "second");
        assert_eq!(second.wait(WAIT).await.unwrap(), 209);
        runtime.shutdown().await;
    });
    assert_eq!(gauge.ran.load(Ordering::SeqCst), 22);
}

/// The attempts each execution of `counted_step` saw.
#[derive(Debug, Default)]
struct Attempts(Mutex<Vec<u32>>);

/// Limited, and fails its first attempt.
#[activity(concurrency = 1)]
async fn counted_step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    ctx.state::<Arc<Attempts>>()
        .0
        .lock()
        .unwrap()
        .push(ctx.attempt());
    if ctx.attempt() < 2 {
        return Err("first attempt fails".into());
    }
    Ok(x)
}

#[orchestrator]
async fn counted(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    let policy = durable_core::RetryPolicy::fixed(3, Duration::from_millis(10));
    Ok(ctx.call_with_retry(counted_step, x, policy).await?)
}

/// A limited activity's task starts through a claim, yet its attempts count as any
/// activity's: 1, then 2 for the retry.
#[test]
fn a_limited_activity_counts_its_attempts_from_1() {
    let (_dir, store) = store();
    let attempts = Arc::new(Attempts::default());
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(counted)
            .activity(counted_step)
            .state(attempts.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client.start(counted, "c", 5).await.unwrap();
        assert_eq!(client.instance(counted, "c").wait(WAIT).await.unwrap(), 5);
        runtime.shutdown().await;
    });
    assert_eq!(*attempts.0.lock().unwrap(), [1, 2]);
}
