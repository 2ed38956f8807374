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
//! first send ([`Store::reserve_work_ids`]), like a runtime's; unlike a runtime, which
//! waits for its store as long as it takes, a tool tries for [`SEND_PATIENCE`] and then
//! gives up the send with [`Error::StoreUnavailable`], so `durable raise` against a
//! PostgreSQL server that went down exits with a message instead of hanging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_store::Store;

use super::DEFAULT_MAX_PAYLOAD_BYTES;
use super::engine::{Busy, Engine, EngineParts, RETRY_DELAY, WORK_ID_BLOCK, WorkIds};
use super::unregistered::Unregistered;
use crate::clock::SystemClock;
use crate::error::Error;
use crate::handle::BoxFuture;
use crate::registry::Registry;

/// How long a tool's send tries to reserve its work ids before it gives up. Each try is
/// let finish, so a try begun near the end may run over by the store's own bound
/// (PostgreSQL's connect timeout, 10 s); a server that refuses connections (down) is given
/// up after this long.
pub(in crate::runtime) const SEND_PATIENCE: Duration = Duration::from_secs(5);

/// Fewer ids left than this, and a tool's send reserves a new block first: more than any
/// one send enqueues (a message and its trace context).
const IDS_PER_SEND: u64 = 8;

impl Engine {
    /// Before a tool's send: reserves a block of work ids unless the current one has room,
    /// trying again every [`RETRY_DELAY`] for [`SEND_PATIENCE`].
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnavailable`], with the store's last error, if every try failed;
    /// [`Error::Store`] at once for an error that trying again does not mend (a poisoned
    /// store, a refused permission).
    pub(in crate::runtime) async fn reserve_for_tool(&self) -> Result<(), Error> {
        if self.work_ids_left() >= IDS_PER_SEND {
            return Ok(());
        }
        let began = Instant::now();
        loop {
            match self.store().reserve_work_ids(WORK_ID_BLOCK) {
                Ok(first) => {
                    self.renumber_work_ids(first);
                    return Ok(());
                }
                Err(e) if e.is_permanent() => return Err(e.into()),
                Err(e) if began.elapsed() + RETRY_DELAY >= SEND_PATIENCE => {
                    return Err(Error::StoreUnavailable {
                        waited: SEND_PATIENCE,
                        source: e,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reserve work ids; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}

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
