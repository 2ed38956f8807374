//! Orchestrators, activities and helpers shared by the runtime tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use durable_core::record::WorkItem;
use durable_core::{
    ActivityContext, FjallStore, Instance, InstanceStatus, OrchestrationContext, Orchestrator,
    Runtime, RuntimeBuilder, Store, activity, orchestrator,
};
use serde::{Deserialize, Serialize};

/// What activities saw, in the order they saw it; a test waits until it holds `n` entries.
#[derive(Debug)]
pub struct Log<T>(Mutex<Vec<T>>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T: Clone + std::fmt::Debug> Log<T> {
    /// Adds `entry`; returns how many entries the log then holds.
    pub fn push(&self, entry: impl Into<T>) -> usize {
        let mut log = self.0.lock().unwrap();
        log.push(entry.into());
        log.len()
    }

    pub fn entries(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until the log has `n` entries (at most about 20 s).
    pub async fn until_len(&self, n: usize) {
        for _ in 0..4_000 {
            if self.0.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the log never reached {n} entries: {:?}", self.entries());
    }
}

/// A fresh store in a temp dir; keep the dir alive as long as the store.
pub fn store() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    (dir, store)
}

/// Runs `body` as one "process lifetime" on a tokio runtime of its own. Dropping that
/// runtime at the end cancels every task mid-flight, as a crash would, while the store
/// keeps only what was committed. (Gentler than SIGKILL in one way: commits already queued
/// for the commit thread are still written; `crash.rs` and the chaos example kill for real.)
pub fn lifetime<F: Future>(body: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(body)
}

/// Waits until `instance` is suspended: a suspend takes effect at the instance's next turn.
pub async fn until_suspended<O: Orchestrator>(instance: &Instance<O>) {
    for _ in 0..4_000 {
        if matches!(
            instance.status().await.unwrap(),
            InstanceStatus::Suspended(_)
        ) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("instance `{}` was never suspended", instance.id());
}

/// Counts activity executions, for tests that check nothing ran twice.
#[derive(Debug, Default)]
pub struct Calls {
    pub count: AtomicU32,
    pub log: Mutex<Vec<String>>,
}

impl Calls {
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }
}

/// The fjall store under a `FaultyStore`, as runtime state: what really was written.
#[derive(Debug)]
pub struct Disk(pub FjallStore);

/// The input of an activity whose effect a test records in an `EffectLedger`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// The logical effect: unique in the whole workflow.
    pub name: String,
    pub value: u64,
}

pub fn step(name: impl Into<String>, value: u64) -> Step {
    Step {
        name: name.into(),
        value,
    }
}

/// What the activities of a fault-injection test did, kept across the process lifetimes of
/// one case: each logical effect recorded under the idempotency key it was applied with,
/// and whether its task was on disk when it ran.
#[derive(Debug, Default)]
pub struct EffectLedger {
    /// Logical effects applied, by idempotency key: one entry per execution.
    runs: Mutex<BTreeMap<String, Vec<String>>>,
    /// Keys of activities that ran without their task on disk.
    unwritten: Mutex<Vec<String>>,
}

impl EffectLedger {
    /// Records that the activity of `ctx` applied `effect`, after checking that its own
    /// task is on `disk`: the runtime may run only what it has written.
    pub fn record(&self, ctx: &ActivityContext, disk: &FjallStore, effect: String) {
        let key = ctx.idempotency_key().to_string();
        let written = disk.work_items().unwrap().iter().any(|(_, item)| {
            matches!(item, WorkItem::Activity(task)
                if format!("{}/{:x}.{}/{}", task.instance, task.incarnation, task.generation, task.key_seq) == key)
        });
        if !written {
            self.unwritten.lock().unwrap().push(key.clone());
        }
        self.runs
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push(effect);
    }

    /// The idempotency keys activities ran under.
    pub fn keys(&self) -> Vec<String> {
        self.runs.lock().unwrap().keys().cloned().collect()
    }

    /// Checks that the effects applied are exactly `expected`, each under exactly one
    /// idempotency key, that no key carried two different effects, and that no activity
    /// ran before its task was written. Executions of a key after its first are
    /// redeliveries (a process may die after an activity ran and before its result was
    /// written): a failure unless `allow_reruns`, else counted and returned.
    pub fn assert_exactly_once(
        &self,
        expected: &[String],
        allow_reruns: bool,
        case: &str,
    ) -> usize {
        let runs = self.runs.lock().unwrap();
        let mut keys_by_effect: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut reruns = 0;
        for (key, applied) in runs.iter() {
            let first = &applied[0];
            assert!(
                applied.iter().all(|name| name == first),
                "{case}: idempotency key {key} carried different effects: {applied:?}"
            );
            assert!(
                allow_reruns || applied.len() == 1,
                "{case}: idempotency key {key} ran more than once: {applied:?}"
            );
            keys_by_effect.entry(first).or_default().push(key);
            reruns += applied.len() - 1;
        }
        let found: Vec<&str> = keys_by_effect.keys().copied().collect();
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(
            found, expected,
            "{case}: the effects applied (ledger: {runs:?})"
        );
        for (name, keys) in &keys_by_effect {
            assert_eq!(
                keys.len(),
                1,
                "{case}: effect {name} was applied under several idempotency keys {keys:?}: deduplicating by key applies it more than once"
            );
        }
        let unwritten = self.unwritten.lock().unwrap();
        assert!(
            unwritten.is_empty(),
            "{case}: activities ran before their task was written: {unwritten:?}"
        );
        reruns
    }
}

/// A gate activities wait on: closed, they never finish (until the process "crashes").
#[derive(Debug)]
pub struct Gate {
    pub open: bool,
}

/// The test builder with `wait_at_gate` registered and its gate `open` or closed.
pub fn gated(store: &FjallStore, open: bool) -> RuntimeBuilder {
    builder(store.clone())
        .activity(crate::restart::wait_at_gate)
        .state(Gate { open })
}

pub fn builder(store: FjallStore) -> RuntimeBuilder {
    counting_builder(store).0
}

/// A builder whose activities count their executions in the returned `Calls`.
pub fn counting_builder(store: FjallStore) -> (RuntimeBuilder, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let builder = Runtime::builder(store)
        .orchestrator(chain)
        .orchestrator(careful)
        .activity(double)
        .activity(triple)
        .activity(explode)
        .activity(refuse)
        .activity(undo)
        .state(calls.clone());
    (builder, calls)
}

#[activity]
pub async fn double(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Calls>>()
        .count
        .fetch_add(1, Ordering::SeqCst);
    Ok(n * 2)
}

#[activity]
pub async fn triple(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Calls>>()
        .count
        .fetch_add(1, Ordering::SeqCst);
    Ok(n * 3)
}

#[activity]
pub async fn explode(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    panic!("exploded on {n}");
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Refusal {
    TooBig { limit: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooBig { limit } => write!(f, "too big: limit is {limit}"),
        }
    }
}

#[activity]
pub async fn refuse(_ctx: ActivityContext, n: u64) -> Result<u64, Refusal> {
    Err(Refusal::TooBig { limit: n - 1 })
}

#[activity]
pub async fn undo(ctx: ActivityContext, n: u64) -> Result<u64, String> {
    ctx.state::<Arc<Calls>>()
        .log
        .lock()
        .unwrap()
        .push(format!("undo {n}"));
    Ok(n)
}

/// The seed's chain: double, then triple.
#[orchestrator]
pub async fn chain(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    let b = ctx.call(triple, a).await?;
    Ok(b)
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone, Copy)]
pub enum Risk {
    Panic,
    Refuse,
    Uncaught,
}

/// The seed's try/catch: an activity that fails is caught and compensated for.
#[orchestrator]
pub async fn careful(ctx: OrchestrationContext, risk: Risk) -> Result<String, String> {
    let outcome = match risk {
        Risk::Panic => ctx.call(explode, 7).await,
        Risk::Refuse | Risk::Uncaught => ctx.call(refuse, 7).await,
    };
    match outcome {
        Ok(v) => Ok(format!("ok {v}")),
        Err(e) if risk == Risk::Uncaught => Err(format!("gave up: {e}")),
        Err(e) => {
            let refusal = e.error::<Refusal>();
            ctx.call(undo, 7).await?;
            Ok(format!(
                "compensated `{}` attempt {} panic={} error={refusal:?}: {}",
                e.activity(),
                e.attempt(),
                e.is_panic(),
                e.message()
            ))
        }
    }
}
