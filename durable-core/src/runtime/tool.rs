//! The engine of a tool's client ([`Client::open`](crate::Client::open)): the `durable`
//! CLI, the dashboard over a store, an operator's script. It reads the store and sends
//! requests, and never acts: it joins no lease, claims nothing, recovers nothing, and runs
//! no turn and no activity.
//!
//! Its commits carry no lease ([`Commit::lease`](durable_store::Commit::lease) `None`), so
//! every work item they enqueue (an event, a terminate, the `Started` of a restart) is
//! left in the store for a claim: on PostgreSQL the worker that holds the instance (or
//! the next to claim it) takes it; on fjall, which one process holds, the application
//! takes it when it next starts. Its work ids come from a block the store reserves on the
//! first send ([`Store::reserve_work_ids`]), like a runtime's.

use std::sync::Arc;

use durable_store::Store;

use super::DEFAULT_MAX_PAYLOAD_BYTES;
use super::engine::{Busy, Engine, EngineParts, WorkIds};
use super::unregistered::Unregistered;
use crate::clock::SystemClock;
use crate::handle::BoxFuture;
use crate::registry::Registry;

/// A tool's engine over `store`: no worker, no lease, no dispatch.
pub(crate) fn engine(store: Arc<dyn Store>) -> Engine {
    Engine::new(EngineParts {
        store,
        registry: Registry::default(),
        unregistered: Unregistered::Wait,
        max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Arc::new(SystemClock),
        orchestrator_concurrency: 1,
        activity_concurrency: 1,
        cache_capacity: 1,
        unregistered_callees: Vec::new(),
        turn_task: no_turns,
        // No worker: a tool's commits are written under no lease, and dropping the engine
        // leaves nothing.
        worker: 0,
        work_ids: WorkIds::none(),
        tool: true,
    })
}

/// The turn task of a tool's engine, which never spawns one (it holds no instance).
fn no_turns(_engine: Arc<Engine>, _instance: String, _busy: Busy) -> BoxFuture<()> {
    Box::pin(async {})
}
