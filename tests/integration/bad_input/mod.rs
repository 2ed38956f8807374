//! Bad input, as the runtime meets it: damaged store files, payloads and code that changed
//! under running instances, bad ids, panics, and requests that make no sense for an
//! instance's state. Each is answered with a typed error a user can act on, and nothing
//! else is lost. (The store's own view of damaged files is in durable-store's tests.)
//! One file per kind of bad input; the helpers they share are here.

use std::path::Path;
use std::time::Duration;

use durable_core::record::{Event, FailureKind, Status, WorkItem};
use durable_core::{
    ActivityContext, Callee, Error, FjallStore, InstanceStatus, OrchestrationContext, RetryPolicy,
    Store, StoreError, Unregistered, UnregisteredCallee, activity, orchestrator,
};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use crate::common::*;
use crate::restart::wait_at_gate;

const WAIT: Duration = Duration::from_secs(20);
/// How long a test waits for something that must happen soon (and today may not).
const SOON: Duration = Duration::from_secs(5);

/// Doubles, then waits at the gate: leaves history and a queued task behind.
#[orchestrator]
async fn gated_chain(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(double, n).await?;
    Ok(ctx.call(wait_at_gate, a).await?)
}

/// Runs `gated_chain` as `id` in a lifetime whose gate is closed, until its second step is
/// queued; the process then "crashes".
fn leave_gated(store: &FjallStore, id: &str) {
    run_to_gate(store, id, false);
}

/// As [`leave_gated`], with the instance suspended before the "crash".
fn leave_gated_suspended(store: &FjallStore, id: &str) {
    run_to_gate(store, id, true);
}

fn run_to_gate(store: &FjallStore, id: &str, suspend: bool) {
    lifetime(async {
        let runtime = gated(store, false)
            .orchestrator(gated_chain)
            .start()
            .await
            .unwrap();
        let instance = runtime.client().start(gated_chain, id, 4).await.unwrap();
        crate::patterns::wait_for(store, id, |h| {
            h.iter()
                .filter(|e| matches!(e, Event::ActivityScheduled { .. }))
                .count()
                == 2
        })
        .await;
        if suspend {
            instance.suspend("maintenance").await.unwrap();
            until_suspended(&instance).await;
        }
    });
}

mod changed_code;
mod damaged_store;
mod instance_ids;
mod invalid_state;
mod missing_code;
mod panics;
