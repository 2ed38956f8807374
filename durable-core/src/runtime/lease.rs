//! The worker's lease on the store: joining when the runtime starts, the claim loop that
//! renews the lease and claims work other workers left (or lost with theirs), joining
//! again when the lease lapsed, and leaving on shutdown (see `durable_store::lease` for
//! the contract).
//!
//! On a store one process holds alone (fjall), the lease is as long as the process: no
//! other process can take its work, and a pause (a laptop asleep) must not cost it. On a
//! shared store (PostgreSQL), it is [`RuntimeBuilder::lease`](super::RuntimeBuilder::lease)
//! long (default [`DEFAULT_LEASE`]) and renewed every third of that.
//!
//! # A lapsed lease
//!
//! A worker that could not renew its lease in time (frozen past it, or cut off from the
//! database for longer) finds it expired: the store refuses a commit, a renewal or a claim
//! with [`StoreError::LeaseExpired`], and other workers may have taken its work over. The
//! runtime then joins the store again, in place, as a new worker (as Temporal's history
//! service re-acquires a shard it lost, under a new range id):
//!
//! 1. It drops everything it held under the old lease: the instances, the instance cache,
//!    the inboxes' deliveries, the activities waiting for a slot. Activities still running
//!    finish; their results are committed under the new lease, or refused (another worker
//!    holds the task) and dropped: the task runs again where it is claimed (at least
//!    once, as after any takeover).
//! 2. Nothing computed under the old lease is written under the new one. A turn's commit
//!    carries the lease its turn was computed under ([`in_turn`]), which the store
//!    refuses; what a turn committed just before the lapse sends nothing once it is
//!    known (the next claim takes its messages, timers and tasks from the store). A
//!    commit no turn computed (a client's start or event, an activity result stored as a
//!    message) that the store refused as lapsed is written again under the new lease, or
//!    fails with that error if the worker has not joined again within [`REJOIN_WAIT`].
//! 3. It joins again ([`Store::join`]), retrying with backoff while the store is out of
//!    reach, and claims as at start.
//!
//! Only a store that refuses every write for good ([`StoreError::Poisoned`]) halts the
//! runtime ([`Runtime::halted`](super::Runtime::halted)).

use std::future::Future;
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

/// The longest a commit that no turn computed waits for the worker to join the store
/// again, once the store refused it because the worker's lease lapsed.
pub(in crate::runtime) const REJOIN_WAIT: Duration = Duration::from_secs(10);

/// The first wait between two attempts to join the store again; it doubles up to a
/// third of the lease (at most [`MAX_REJOIN_BACKOFF`]).
const REJOIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to join the store again.
const MAX_REJOIN_BACKOFF: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The lease (worker) the running turn is computed under: its commit is written under
    /// it, and what it sends and keeps is dropped once that lease lapsed.
    static TURN_LEASE: WorkerId;
}

/// Runs `turn`, a turn computed under the lease of `worker`.
pub(in crate::runtime) async fn in_turn<F: Future>(worker: WorkerId, turn: F) -> F::Output {
    TURN_LEASE.scope(worker, turn).await
}

/// The lease the running turn is computed under; `None` outside a turn (a client's call,
/// an activity, the claim loop).
pub(in crate::runtime) fn turn_lease() -> Option<WorkerId> {
    TURN_LEASE.try_with(|worker| *worker).ok()
}

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
/// what it got. A lease found expired (here, by the renewals or by a commit) is dropped,
/// and the worker joins the store again ([`rejoin`]).
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

/// Renews the lease every third of it until the runtime stops; reports it lapsed if it
/// expired.
async fn renew_loop(engine: Weak<Engine>, lease: Duration) {
    let renew_every = lease / 3;
    let retry = POLL.min(lease / 4);
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
        if worker == 0 {
            // Joining again: the new lease is renewed once it is taken.
            wait = retry;
            continue;
        }
        let result = tokio::task::spawn_blocking(move || store.renew(worker, lease)).await;
        match result {
            Ok(Ok(())) => wait = renew_every,
            // Left on shutdown meanwhile.
            Ok(Err(StoreError::LeaseExpired { .. })) if engine.takes_no_work() => return,
            Ok(Err(StoreError::LeaseExpired { worker })) => {
                engine.report_lapse(worker);
                wait = retry;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease not renewed; retrying");
                wait = retry;
            }
            Err(_) => return,
        }
    }
}

/// Claims work until the runtime stops (see [`claim_loop`]).
async fn claims(engine: Weak<Engine>, lease: Duration) {
    let poll = POLL.min(lease / 4);
    loop {
        let Some((store, lapse, retry)) = engine.upgrade().map(|engine| {
            (
                engine.store_arc(),
                engine.lapse_signal(),
                engine.claim_retry(),
            )
        }) else {
            return;
        };
        // Tasks waiting for a rate limit's window are claimed when it opens.
        let wait = retry.map_or(poll, |retry| retry.min(poll));
        let waiting = tokio::task::spawn_blocking(move || store.wait_for_work(wait));
        // A lapse reported meanwhile is seen at once, not after the wait.
        let waited = tokio::select! {
            waited = waiting => Some(waited),
            () = lapse.notified() => None,
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if engine.takes_no_work() {
            return;
        }
        if let Some(Ok(Err(e))) = waited {
            tracing::warn!(error = %e, "waiting for work failed; polling");
            tokio::time::sleep(poll).await;
        }
        if engine.lapsed() && !rejoin(&engine, lease).await {
            return;
        }
        match recovery::claim_all(&engine, true).await {
            Ok(_) => {}
            // Joins again on the next round, at once.
            Err(Error::Store(StoreError::LeaseExpired { worker })) => engine.report_lapse(worker),
            Err(e) if engine.takes_no_work() => {
                tracing::debug!(error = %e, "claim loop stops");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "claiming work failed; retrying"),
        }
    }
}

/// The worker's lease lapsed: drops what it held under it and joins the store again as a
/// new worker, retrying with backoff while the store is out of reach. Returns false if
/// the runtime stopped meanwhile. The caller then claims, as at start.
async fn rejoin(engine: &Arc<Engine>, lease: Duration) -> bool {
    let lapsed = engine.worker();
    tracing::warn!(
        worker = lapsed,
        "the worker's lease lapsed (the process was paused, or cut off from the store, for \
         longer than the lease): it drops what it held and joins the store again"
    );
    engine.drop_holdings();
    let max_backoff = (lease / 3).clamp(REJOIN_BACKOFF, MAX_REJOIN_BACKOFF);
    let mut backoff = REJOIN_BACKOFF;
    loop {
        if engine.takes_no_work() {
            return false;
        }
        let store = engine.store_arc();
        match tokio::task::spawn_blocking(move || store.join(lease)).await {
            Ok(Ok(worker)) => {
                engine.rejoined(worker);
                tracing::info!(worker, lapsed, "joined the store again");
                // What the lapsed lease held is free either way; leaving frees it at once
                // (no claim need find it expired first) and wakes the waiting workers.
                let store = engine.store_arc();
                let _ = tokio::task::spawn_blocking(move || store.leave(lapsed)).await;
                return true;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot join the store again; retrying");
            }
            Err(_) => return false,
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Ends the worker's lease, so other workers may take what it still holds at once.
pub(in crate::runtime) async fn leave(engine: &Engine) {
    let (store, worker) = (engine.store_arc(), engine.worker());
    if worker == 0 {
        // Between two leases: there is none to end.
        return;
    }
    match tokio::task::spawn_blocking(move || store.leave(worker)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not end the worker's lease; it expires"),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use durable_store::MemoryStore;

    use super::*;

    /// A store one process holds alone never finds its worker's lease lapsed: the lease
    /// is the process's life, however long the process sleeps.
    #[test]
    fn the_lease_on_a_store_one_process_holds_lasts_as_long_as_the_process() {
        let store = MemoryStore::default();
        assert!(!store.is_shared());
        assert_eq!(lease_for(&store, Duration::from_secs(2)), EXCLUSIVE_LEASE);
        assert!(EXCLUSIVE_LEASE >= Duration::from_secs(10 * 365 * 24 * 3600));
    }
}
