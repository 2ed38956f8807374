//! The child process: runs the workload on the store in `DIR/durable` until every instance
//! has settled. The parent kills it at random moments and starts it again.

use std::path::Path;
use std::time::Duration;

use durable_core::record::{Event, WorkItem};
use durable_core::{Client, Error, FjallStore, Runtime, Store};

use crate::workload::{
    Generation, Kind, Ledger, Pace, Spec, apply_effect, approval, approval_payloads, chain, child,
    eternal, fan, flaky, parent, retry, timer, wall_clock,
};

/// The file a child writes once every instance has settled in its run.
pub const SETTLED: &str = "settled";

/// Starts (or finds) every instance, raises the approvals' events once, and waits until
/// every instance has settled. With `serve`, it then stays up until it is killed, as a
/// service would; otherwise it shuts the runtime down and returns. `seed` paces the
/// activities ([`Pace`]).
pub async fn run(dir: &Path, specs: Vec<Spec>, serve: bool, seed: u64) -> Result<(), Error> {
    let store = FjallStore::open(dir.join("durable"))?;
    let ledger = Ledger::open(&dir.join("ledger")).map_err(|e| {
        Error::Store(durable_core::StoreError::Io {
            detail: format!("ledger: {e:?}"),
            source: Some(std::sync::Arc::new(e)),
        })
    })?;
    let runtime = Runtime::builder(store.clone())
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
        .state(ledger)
        .state(Pace::new(seed))
        .start()
        .await?;
    let client = runtime.client();
    for spec in &specs {
        start(&client, spec).await?;
    }
    for spec in specs.iter().filter(|s| s.kind == Kind::Approval) {
        let (first, _) = approval_payloads(spec.n);
        raise_once(&store, &client, &spec.id(), "approve", first).await?;
    }
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
    std::fs::write(dir.join(SETTLED), b"").map_err(|e| {
        Error::Store(durable_core::StoreError::Io {
            detail: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        })
    })?;
    if serve {
        std::future::pending::<()>().await;
    }
    runtime.shutdown().await;
    Ok(())
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
async fn raise_late_events(store: FjallStore, client: Client, specs: Vec<Spec>) {
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
    store: &FjallStore,
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
