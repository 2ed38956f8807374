//! Flow control under faults (the adversarial review of issue 16): a limited activity's
//! slot while its instance is terminated mid-execution, or when it panics; a limit on
//! running instances across continue-as-new; on fjall and on PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_core::{ActivityContext, OrchestrationContext, Runtime, Store, activity, orchestrator};
use durable_store::{PostgresStore, TestServer};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(60);

/// How many executions of a limited activity run at once, the most seen, and how many
/// began.
#[derive(Debug, Default)]
struct Gauge {
    running: AtomicU32,
    most: AtomicU32,
    ran: AtomicU32,
}

impl Gauge {
    fn begin(self: &Arc<Self>) -> Running {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.ran.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    fn ran(&self) -> u32 {
        self.ran.load(Ordering::SeqCst)
    }
}

/// An execution in progress, until dropped.
struct Running(Arc<Gauge>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Opens when set to true: the executions of `held_charge` wait for it.
type Gate = tokio::sync::watch::Sender<bool>;

/// One at a time; returns once the gate opens.
#[activity(concurrency = 1)]
async fn held_charge(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    let mut open = ctx.state::<Arc<Gate>>().subscribe();
    let _ = open.wait_for(|open| *open).await;
    Ok(x)
}

#[orchestrator]
async fn charge_once(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(held_charge, x).await?)
}

/// Waits until `gauge` counts `n` executions begun.
async fn until_ran(gauge: &Gauge, n: u32) {
    let deadline = Instant::now() + WAIT;
    while gauge.ran() < n {
        assert!(Instant::now() < deadline, "{n} executions never began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An instance terminated while its limited activity runs: the activity's execution still
/// holds its slot (its code runs on), so the next instance's task waits for it to return.
fn a_terminated_instances_running_activity_keeps_its_slot(store: impl Store + 'static) {
    let gauge = Arc::new(Gauge::default());
    let gate = Arc::new(Gate::new(false));
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(charge_once)
            .activity(held_charge)
            .state(gauge.clone())
            .state(gate.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client.start(charge_once, "a", 1).await.unwrap();
        until_ran(&gauge, 1).await;
        client.start(charge_once, "b", 2).await.unwrap();
        let a = client.instance(charge_once, "a");
        a.terminate("stop").await.unwrap();
        assert!(a.wait(WAIT).await.is_err(), "`a` ends terminated");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            gauge.ran(),
            1,
            "`b`'s task did not start while `a`'s execution still runs"
        );
        gate.send_replace(true);
        assert_eq!(
            client.instance(charge_once, "b").wait(WAIT).await.unwrap(),
            2
        );
        runtime.shutdown().await;
    });
    assert_eq!(gauge.most.load(Ordering::SeqCst), 1, "one at a time");
}

#[test]
fn a_terminated_instances_running_activity_keeps_its_slot_on_fjall() {
    let (_dir, store) = store();
    a_terminated_instances_running_activity_keeps_its_slot(store);
}

#[test]
fn a_terminated_instances_running_activity_keeps_its_slot_on_postgres() {
    let database = TestServer::shared().database();
    a_terminated_instances_running_activity_keeps_its_slot(
        PostgresStore::open(database.url()).unwrap(),
    );
}

/// One at a time; panics for 0.
#[activity(concurrency = 1)]
async fn brittle(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    assert!(x != 0, "brittle panics for 0");
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(x)
}

#[orchestrator]
async fn brittle_once(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(brittle, x).await?)
}

/// A limited activity that panics frees its slot as one that fails does: the next ones run.
#[test]
fn a_panicking_limited_activity_frees_its_slot_on_fjall() {
    let (_dir, store) = store();
    let gauge = Arc::new(Gauge::default());
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(brittle_once)
            .activity(brittle)
            .state(gauge.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        for x in 0..4u64 {
            client
                .start(brittle_once, format!("b{x}"), x)
                .await
                .unwrap();
        }
        let first = client.instance(brittle_once, "b0");
        assert!(first.wait(WAIT).await.is_err(), "the panic fails `b0`");
        for x in 1..4u64 {
            let instance = client.instance(brittle_once, format!("b{x}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), x);
        }
        runtime.shutdown().await;
    });
    assert_eq!(gauge.most.load(Ordering::SeqCst), 1);
}

/// The order the executions of `generation_step` ran in.
#[derive(Debug, Default)]
struct Order(Mutex<Vec<String>>);

#[activity]
async fn generation_step(ctx: ActivityContext, step: String) -> Result<(), String> {
    ctx.state::<Arc<Order>>().0.lock().unwrap().push(step);
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

/// One instance at a time; runs a step, then continues as new until its third
/// generation.
#[orchestrator(max_running = 1)]
async fn generations(ctx: OrchestrationContext, input: (String, u32)) -> Result<String, String> {
    let (name, generation) = input;
    ctx.call(generation_step, format!("{name}{generation}"))
        .await?;
    if generation < 3 {
        return ctx.continue_as_new((name, generation + 1)).await;
    }
    Ok(name)
}

/// Continue-as-new keeps an instance's place under `max_running`: the instance created
/// next starts only once every generation of the first has finished.
fn continue_as_new_keeps_its_place_under_max_running(store: impl Store + 'static) {
    let order = Arc::new(Order::default());
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(generations)
            .activity(generation_step)
            .state(order.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        client
            .start(generations, "a", ("a".to_owned(), 1))
            .await
            .unwrap();
        client
            .start(generations, "b", ("b".to_owned(), 1))
            .await
            .unwrap();
        for id in ["a", "b"] {
            let instance = client.instance(generations, id);
            assert_eq!(instance.wait(WAIT).await.unwrap(), id);
        }
        runtime.shutdown().await;
    });
    assert_eq!(
        *order.0.lock().unwrap(),
        ["a1", "a2", "a3", "b1", "b2", "b3"]
    );
}

#[test]
fn continue_as_new_keeps_its_place_under_max_running_on_fjall() {
    let (_dir, store) = store();
    continue_as_new_keeps_its_place_under_max_running(store);
}

#[test]
fn continue_as_new_keeps_its_place_under_max_running_on_postgres() {
    let database = TestServer::shared().database();
    continue_as_new_keeps_its_place_under_max_running(PostgresStore::open(database.url()).unwrap());
}

/// Two at a time across every worker of the store; at most 3 starts per 300 ms.
#[activity(concurrency = 2, rate = "3/300ms")]
async fn shared_step(ctx: ActivityContext, x: u64) -> Result<u64, String> {
    let _running = ctx.state::<Arc<Gauge>>().begin();
    ctx.state::<Arc<Starts>>()
        .0
        .lock()
        .unwrap()
        .push(Instant::now());
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(x)
}

#[orchestrator]
async fn shared_flow(ctx: OrchestrationContext, x: u64) -> Result<u64, String> {
    Ok(ctx.call(shared_step, x).await?)
}

/// When each execution of `shared_step` began.
#[derive(Debug, Default)]
struct Starts(Mutex<Vec<Instant>>);

/// Two workers in one process on one fjall store: the tasks each takes at once, as its
/// own turns schedule them, count against the limits the other's count against too.
#[test]
fn two_workers_on_one_fjall_store_share_the_limits() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let (gauge, starts) = (Arc::new(Gauge::default()), Arc::new(Starts::default()));
    lifetime(async {
        let worker = || {
            Runtime::builder(store.clone())
                .orchestrator(shared_flow)
                .activity(shared_step)
                .state(gauge.clone())
                .state(starts.clone())
                .start()
        };
        let (a, b) = (worker().await.unwrap(), worker().await.unwrap());
        for x in 0..12u64 {
            let client = if x % 2 == 0 { a.client() } else { b.client() };
            client.start(shared_flow, format!("s{x}"), x).await.unwrap();
        }
        for x in 0..12u64 {
            let instance = a.client().instance(shared_flow, format!("s{x}"));
            assert_eq!(instance.wait(WAIT).await.unwrap(), x);
        }
        a.shutdown().await;
        b.shutdown().await;
    });
    assert_eq!(gauge.ran(), 12);
    assert!(gauge.most.load(Ordering::SeqCst) <= 2, "at most 2 at once");
    let starts = starts.0.lock().unwrap().clone();
    for (i, first) in starts.iter().enumerate() {
        let within = (starts[i..].iter())
            .filter(|at| at.duration_since(*first) < Duration::from_millis(290))
            .count();
        assert!(
            within <= 3,
            "at most 3 starts in any 300 ms: {within} after start {i}"
        );
    }
}
