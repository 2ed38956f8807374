//! The worker's lease on the store: joining when the runtime starts, the claim loop that
//! renews the lease and claims work other workers left (or lost with theirs), and leaving
//! on shutdown (see `durable_store::lease` for the contract).
//!
//! On a store one process holds alone (fjall), the lease is as long as the process: no
//! other process can take its work, and a pause (a laptop asleep) must not cost it. On a
//! shared store (PostgreSQL), it is [`RuntimeBuilder::lease`](super::RuntimeBuilder::lease)
//! long (default [`DEFAULT_LEASE`]) and renewed every third of that; a worker that could
//! not renew it in time (frozen past it, or cut off from the database) finds it expired,
//! and its runtime halts rather than write anything stale: restart the process, and it
//! joins again as a new worker.

use std::sync::{Arc, Weak};
use std::time::Duration;

use durable_store::{Store, StoreError, WorkerId};

use super::engine::Engine;
use super::recovery;
use crate::error::Error;

/// The lease of a worker on a shared store, unless
/// [`RuntimeBuilder::lease`](super::RuntimeBuilder::lease) says otherwise: 30 s, as
/// Durable Task's default work-item lock timeout.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The lease of a worker on a store its process holds alone: ten years, the life of the
/// process.
const EXCLUSIVE_LEASE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The longest a claim loop waits between two claims when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// The lease a worker takes on `store`, given the builder's `lease`.
pub(in crate::runtime) fn lease_for(store: &dyn Store, lease: Duration) -> Duration {
    if store.is_shared() {
        lease
    } else {
        EXCLUSIVE_LEASE
    }
}

/// Joins `store` as a new worker with `lease`, off the runtime's threads.
///
/// # Errors
///
/// [`Error::Store`] if the store cannot be written.
pub(in crate::runtime) async fn join(
    store: Arc<dyn Store>,
    lease: Duration,
) -> Result<(WorkerId, u64), Error> {
    tokio::task::spawn_blocking(move || {
        let worker = store.join(lease)?;
        let first = store.reserve_work_ids(super::engine::WORK_ID_BLOCK)?;
        Ok::<_, StoreError>((worker, first))
    })
    .await
    .map_err(|_| Error::ShutDown)?
    .map_err(Error::from)
}

/// Renews the lease and claims work until the runtime stops: waits for the store's
/// wake-up ([`Store::wait_for_work`]) or the poll interval, then claims and takes over
/// what it got. A lease found expired halts the runtime.
///
/// It holds the engine only while it works, so a runtime dropped without a shutdown is
/// freed (and its store closed) once the loop next wakes.
pub(in crate::runtime) async fn claim_loop(engine: Weak<Engine>, lease: Duration) {
    // Renewed by a task of its own: claims that keep finding work (a backlog, a steady
    // stream of it, a slow database) must not let the lease lapse between two renewals.
    let renewals = tokio::spawn(renew_loop(engine.clone(), lease));
    claims(engine, lease).await;
    renewals.abort();
}

/// Renews the lease every third of it until the runtime stops; halts the runtime if it
/// expired.
async fn renew_loop(engine: Weak<Engine>, lease: Duration) {
    let renew_every = lease / 3;
    let mut wait = renew_every;
    loop {
        tokio::time::sleep(wait).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if engine.takes_no_work() {
            return;
        }
        let (store, worker) = (engine.store_arc(), engine.worker());
        let result = tokio::task::spawn_blocking(move || store.renew(worker, lease)).await;
        match result {
            Ok(Ok(())) => wait = renew_every,
            // Left on shutdown meanwhile.
            Ok(Err(StoreError::LeaseExpired { .. })) if engine.takes_no_work() => return,
            Ok(Err(e @ StoreError::LeaseExpired { .. })) => {
                tracing::error!(error = %e, "the worker's lease expired: the runtime stops; restart the process to join again");
                engine.halt(e);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease not renewed; retrying");
                wait = POLL.min(lease / 4);
            }
            Err(_) => return,
        }
    }
}

/// Claims work until the runtime stops (see [`claim_loop`]).
async fn claims(engine: Weak<Engine>, lease: Duration) {
    let poll = POLL.min(lease / 4);
    loop {
        let Some(store) = engine.upgrade().map(|engine| engine.store_arc()) else {
            return;
        };
        let waited = tokio::task::spawn_blocking(move || store.wait_for_work(poll)).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if engine.takes_no_work() {
            return;
        }
        if let Ok(Err(e)) = waited {
            tracing::warn!(error = %e, "waiting for work failed; polling");
            tokio::time::sleep(poll).await;
        }
        match recovery::claim_all(&engine, true).await {
            Ok(_) => {}
            Err(Error::Store(e @ StoreError::LeaseExpired { .. })) => {
                tracing::error!(error = %e, "the worker's lease expired: the runtime stops; restart the process to join again");
                engine.halt(e);
                return;
            }
            Err(e) if engine.takes_no_work() => {
                tracing::debug!(error = %e, "claim loop stops");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "claiming work failed; retrying"),
        }
    }
}

/// Ends the worker's lease, so other workers may take what it still holds at once.
pub(in crate::runtime) async fn leave(engine: &Engine) {
    let (store, worker) = (engine.store_arc(), engine.worker());
    match tokio::task::spawn_blocking(move || store.leave(worker)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not end the worker's lease; it expires"),
        Err(_) => {}
    }
}
