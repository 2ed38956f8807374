//! The child process: runs the workload on the store in `DIR/durable` (or in the
//! PostgreSQL database of `--store`) until every instance has settled. The parent kills
//! it at random moments and starts it again. With several workers on PostgreSQL, one of
//! them (the starter) starts the instances, raises the events and waits for them to
//! settle; every worker runs whatever work it claims.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use durable_core::record::{Event, WorkItem};
use durable_core::{Client, Error, FjallStore, Runtime, Store};
use durable_store::PostgresStore;

use crate::entities::{self, Relay, Tally};
use crate::workload::{
    Generation, Kind, Ledger, Pace, Spec, apply_effect, approval, approval_payloads, chain, child,
    eternal, fan, flaky, parent, retry, timer, wall_clock,
};

/// The file a child writes once every instance has settled in its run.
pub const SETTLED: &str = "settled";

/// How a child runs.
#[derive(Clone, Debug)]
pub struct Role {
    /// The PostgreSQL database of the run; `None` for fjall in `DIR/durable`.
    pub url: Option<String>,
    /// Whether this child starts the instances, raises their events and waits for them
    /// (the only child on fjall; worker 0 on PostgreSQL). Other workers only run work.
    pub starter: bool,
    /// Stay up once everything settled (or, not being the starter, from the start), until
    /// killed, as a service would; otherwise shut down and return.
    pub serve: bool,
    /// The worker's lease on a shared store.
    pub lease: Duration,
}

/// An I/O error of the harness, as a durable error.
fn io_error(detail: String) -> Error {
    Error::Store(durable_core::StoreError::Io {
        detail,
        source: None,
    })
}

/// Starts (or finds) every instance, raises the approvals' events once, and waits until
/// every instance has settled (as the starter). With `serve`, it then stays up until it
/// is killed, or until its runtime halts (the store refuses every write for good; a
/// lease that lapsed while the process was stopped does not halt it: it joins again);
/// otherwise it shuts the runtime down and returns. `seed` paces the activities
/// ([`Pace`]).
pub async fn run(dir: &Path, specs: Vec<Spec>, role: Role, seed: u64) -> Result<(), Error> {
    let (store, ledger): (Arc<dyn Store>, Ledger) = match &role.url {
        Some(url) => (
            Arc::new(PostgresStore::open(url)?),
            Ledger::connect(url).await.map_err(io_error)?,
        ),
        None => (
            Arc::new(FjallStore::open(dir.join("durable"))?),
            Ledger::open(&dir.join("ledger")).map_err(|e| io_error(format!("ledger: {e:?}")))?,
        ),
    };
    let runtime = Runtime::builder(store.clone())
        .lease(role.lease)
        .orchestrator(chain)
        .orchestrator(fan)
        .orchestrator(timer)
        .orchestrator(approval)
        .orchestrator(child)
        .orchestrator(parent)
        .orchestrator(retry)
        .orchestrator(eternal)
        .activity(apply_effect)
        .activity(flaky)
        .activity(wall_clock)
        .entity::<Tally>()
        .entity::<Relay>()
        .state(ledger)
        .state(Pace::new(seed))
        .start()
        .await?;
    let client = runtime.client();
    if !role.starter {
        return serve(runtime).await;
    }
    for spec in &specs {
        start(&client, spec).await?;
    }
    for spec in specs.iter().filter(|s| s.kind == Kind::Approval) {
        let (first, _) = approval_payloads(spec.n);
        raise_once(&store, &client, &spec.id(), "approve", first).await?;
    }
    // The entity operations, sent one by one over the time the instances' starts are
    // spread over.
    let per_kind = specs.iter().filter(|s| s.kind == Kind::Chain).count() as u64;
    let ops = entities::ops(per_kind);
    let window = specs.iter().map(|s| s.delay_ms).max().unwrap_or(0);
    let pace = Duration::from_millis(window / ops.len().max(1) as u64);
    let sender = tokio::spawn(entities::send(
        store.clone(),
        client.clone(),
        ops.clone(),
        pace,
        dir.to_path_buf(),
    ));
    let late = tokio::spawn(raise_late_events(
        store.clone(),
        client.clone(),
        specs.clone(),
    ));
    for spec in &specs {
        let id = spec.id();
        // The parent checks the outcome; here it is enough that the instance settled.
        let settled = client
            .instance(chain, &id)
            .wait(Duration::from_secs(600))
            .await;
        if let Err(e @ Error::Timeout { .. }) = settled {
            return Err(e);
        }
    }
    late.abort();
    sender
        .await
        .map_err(|e| io_error(format!("the entity sender: {e}")))??;
    entities::settle(&*store, &ops, Duration::from_secs(600)).await?;
    std::fs::write(dir.join(SETTLED), b"").map_err(|e| io_error(e.to_string()))?;
    if role.serve {
        return serve(runtime).await;
    }
    runtime.shutdown().await;
    Ok(())
}

/// Runs work until killed; returns the error the runtime halted with, if it halts.
async fn serve(runtime: Runtime) -> Result<(), Error> {
    loop {
        if let Some(e) = runtime.halted() {
            return Err(Error::Store(e));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `spec`'s instance; an instance started by an earlier run is found instead.
async fn start(client: &Client, spec: &Spec) -> Result<(), Error> {
    let (id, job) = (spec.id(), spec.job());
    match spec.kind {
        Kind::Chain => client.start(chain, id, job).await.map(drop),
        Kind::Fan => client.start(fan, id, job).await.map(drop),
        Kind::Timer => client.start(timer, id, job).await.map(drop),
        Kind::Approval => client.start(approval, id, job).await.map(drop),
        Kind::Parent => client.start(parent, id, job).await.map(drop),
        Kind::Retry => client.start(retry, id, job).await.map(drop),
        Kind::Eternal => {
            let first = Generation {
                job,
                generation: 0,
                x: spec.n,
            };
            client.start(eternal, id, first).await.map(drop)
        }
    }
}

/// Raises `late` to each approval once it says it is ready.
async fn raise_late_events(store: Arc<dyn Store>, client: Client, specs: Vec<Spec>) {
    let mut waiting: Vec<Spec> = specs
        .into_iter()
        .filter(|s| s.kind == Kind::Approval)
        .collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for spec in waiting {
            let id = spec.id();
            let ready = client
                .instance(approval, &id)
                .custom_status::<String>()
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s == "ready");
            let (_, late) = approval_payloads(spec.n);
            if !ready
                || raise_once(&store, &client, &id, "late", late)
                    .await
                    .is_err()
            {
                still.push(spec);
            }
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raises event `name` to `id` unless an earlier run did. An event is always either
/// queued or in the history (the turn that takes it moves it atomically), so reading the
/// queue first and the history second cannot miss one.
async fn raise_once(
    store: &Arc<dyn Store>,
    client: &Client,
    id: &str,
    name: &str,
    payload: u64,
) -> Result<(), Error> {
    let is_it = |event: &Event| matches!(event, Event::EventRaised { name: n, .. } if n == name);
    let queued = store.work_items()?.iter().any(|(_, item)| {
        matches!(item, WorkItem::Message { instance, event, .. } if instance == id && is_it(event))
    });
    if queued || store.history(id)?.iter().any(is_it) {
        return Ok(());
    }
    match client.raise_event(id, name, &payload).await {
        // It finished already: then it had its events.
        Err(Error::InvalidState { .. }) => Ok(()),
        other => other,
    }
}
