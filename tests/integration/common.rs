//! Orchestrators, activities and helpers shared by the runtime tests.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use durable_core::{
    ActivityContext, FjallStore, OrchestrationContext, Runtime, RuntimeBuilder, activity,
    orchestrator,
};
use serde::{Deserialize, Serialize};

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
