//! What this worker holds on the store (see `durable_store::lease`): its worker id, the
//! lease every commit carries, the claim loop's task, and the block of work ids the store
//! reserved for it; where a message it holds goes; and what the worker drops when its
//! lease lapses, and takes up when it has joined again (see `super::super::lease`). The
//! instances it holds, and how a commit is written under its lease: `held.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durable_store::WorkerId;
use durable_store::{ClaimFilter, Commit, Incarnation, Store, StoreError, WorkId};
use tokio::sync::{Notify, watch};

use super::super::entities;
use super::super::inbox::Delivery;
use super::super::lease::{self, REJOIN_WAIT};
use super::super::outbox::consumed;
use super::{Engine, RETRY_DELAY, lock};
use crate::error::Error;
use crate::registry::Registry;

/// How many work ids one reservation takes ([`Store::reserve_work_ids`]): the next block
/// is reserved in the background once half of the current one is used.
pub(in crate::runtime) const WORK_ID_BLOCK: u64 = 1 << 20;

/// The work ids a runtime numbers its new work items with: a block the store reserved for
/// it, and the next block once it is reserved.
#[derive(Debug)]
pub(in crate::runtime) struct WorkIds {
    next: WorkId,
    end: WorkId,
    /// The first id of the next block, once reserved.
    following: Option<WorkId>,
    /// Whether a reservation of the next block is under way.
    reserving: bool,
}

impl WorkIds {
    /// No block yet: the first id reserves one ([`Engine::work_id`]).
    pub(in crate::runtime) fn none() -> Self {
        Self {
            next: 0,
            end: 0,
            following: None,
            reserving: false,
        }
    }

    /// The block of `WORK_ID_BLOCK` ids from `first`.
    pub(in crate::runtime) fn from(first: WorkId) -> Self {
        Self {
            next: first,
            end: first.saturating_add(WORK_ID_BLOCK),
            following: None,
            reserving: false,
        }
    }
}

/// The worker's leases: the current one, and how many times it joined the store again.
#[derive(Debug)]
pub(in crate::runtime) struct Leases {
    /// The worker of the current lease; 0, which no lease is, while it joins again. Its
    /// lock orders a lapse with the commits that make the worker hold instances.
    pub(super) current: watch::Sender<WorkerId>,
    /// How many times the worker joined again after a lease lapsed.
    rejoins: AtomicU64,
}

impl Leases {
    /// The leases of a worker that joined as `worker`.
    pub(in crate::runtime) fn new(worker: WorkerId) -> Self {
        Self {
            current: watch::Sender::new(worker),
            rejoins: AtomicU64::new(0),
        }
    }
}

/// Where a message this worker holds goes (see [`Engine::destination`]).
enum Destination {
    /// To the instance's inbox here.
    Here,
    /// Nowhere yet: it stays in the store for the worker that holds its instance.
    Holder,
    /// Nowhere: its run is over and another runs under the id; it is removed.
    Nobody,
}

/// What a worker with `registry` claims on `store`: on a store other processes share, only
/// work for the code it has (the instances of the orchestrator versions it registered,
/// the tasks of its activities), leaving the rest to workers that have it; on a store it
/// holds alone, everything (what it cannot run,
/// [`Unregistered`](super::super::Unregistered) decides).
pub(super) fn claim_filter(store: &dyn Store, registry: &Registry) -> ClaimFilter {
    if store.is_shared() {
        // An entity's record names `@Name`, version 0 (see `runtime/entities.rs`).
        let entities = registry
            .entity_names()
            .into_iter()
            .map(|n| entities::marker(&n));
        let mut orchestrators = registry.orchestrator_names();
        let mut versions = registry.orchestrator_versions();
        for marker in entities {
            orchestrators.push(marker.clone());
            versions.push((marker, 0));
        }
        ClaimFilter::default()
            .orchestrators(orchestrators)
            .versions(versions)
            .activities(registry.activity_names())
            .activity_limits(registry.all_activity_limits())
            .orchestrator_limits(registry.all_orchestrator_limits())
    } else {
        ClaimFilter::default()
            .activity_limits(registry.all_activity_limits())
            .orchestrator_limits(registry.all_orchestrator_limits())
    }
}

impl Engine {
    /// A new work item id, from the block the store reserved for this runtime. Once half
    /// of the block is used, the next one is reserved in the background; should the block
    /// run out before that reservation succeeds, this waits for the store.
    pub(in crate::runtime) fn work_id(&self) -> WorkId {
        let mut ids = lock(&self.work_ids);
        if ids.next == ids.end {
            let first = match ids.following.take() {
                Some(first) => first,
                None => loop {
                    match self.store.reserve_work_ids(WORK_ID_BLOCK) {
                        Ok(first) => break first,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reserve work ids; retrying");
                            std::thread::sleep(RETRY_DELAY);
                        }
                    }
                },
            };
            ids.next = first;
            ids.end = first.saturating_add(WORK_ID_BLOCK);
        }
        let id = ids.next;
        ids.next += 1;
        if ids.end - ids.next < WORK_ID_BLOCK / 2 && ids.following.is_none() && !ids.reserving {
            ids.reserving = true;
            let (store, work_ids) = (self.store.clone(), self.work_ids.clone());
            std::thread::spawn(move || {
                let first = store.reserve_work_ids(WORK_ID_BLOCK);
                let mut ids = lock(&work_ids);
                ids.reserving = false;
                match first {
                    // Unless the worker renumbered above it meanwhile.
                    Ok(first) if first > ids.next => ids.following = Some(first),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot reserve work ids; will retry"),
                }
            });
        }
        id
    }

    /// How many work ids are left in the current block (a tool reserves one, bounded,
    /// before it sends: `runtime/tool.rs`).
    pub(in crate::runtime) fn work_ids_left(&self) -> u64 {
        let ids = lock(&self.work_ids);
        ids.end - ids.next
    }

    /// Numbers new work items from the block of `WORK_ID_BLOCK` ids from `first` (just
    /// reserved, above every id given out) on, dropping what is left of the current one.
    pub(in crate::runtime) fn renumber_work_ids(&self, first: WorkId) {
        let mut ids = lock(&self.work_ids);
        if first > ids.next {
            ids.next = first;
            ids.end = first.saturating_add(WORK_ID_BLOCK);
            ids.following = None;
        }
    }

    // The lease.

    /// This runtime's worker on the store: its current lease. 0, which no lease is, while
    /// it joins the store again after its lease lapsed.
    pub(in crate::runtime) fn worker(&self) -> WorkerId {
        *self.worker.current.borrow()
    }

    /// The lease the work in hand goes on under: the running turn's (see
    /// [`lease::in_turn`]), or else the worker's current one.
    pub(in crate::runtime) fn lease_in_hand(&self) -> WorkerId {
        lease::turn_lease().unwrap_or_else(|| self.worker())
    }

    /// The store found the lease of `worker` expired: the claim loop drops what it held
    /// and joins again, if it is the current lease.
    pub(in crate::runtime) fn report_lapse(&self, worker: WorkerId) {
        self.commits.report_lapse(worker);
    }

    /// How many times the worker joined the store again after a lease lapsed.
    pub(in crate::runtime) fn rejoin_count(&self) -> u64 {
        self.worker.rejoins.load(Ordering::Relaxed)
    }

    /// Whether the current lease was reported lapsed.
    pub(in crate::runtime) fn lapsed(&self) -> bool {
        let worker = self.worker();
        worker != 0 && self.commits.lapsed() == worker
    }

    /// Told when a lapse is reported (see [`GroupCommit::lapse_signal`]).
    ///
    /// [`GroupCommit::lapse_signal`]: super::super::group_commit::GroupCommit::lapse_signal
    pub(in crate::runtime) fn lapse_signal(&self) -> Arc<Notify> {
        self.commits.lapse_signal()
    }

    /// The lease lapsed: drops everything held under it (the instances, the inboxes'
    /// deliveries, the instance cache, the activities waiting for a slot), and takes no
    /// delivery until [`rejoined`](Self::rejoined). The clients waiting on instances are
    /// woken: another worker may finish them now.
    pub(in crate::runtime) fn drop_holdings(&self) {
        // Under the lease's lock, so that no commit of the old lease adds to what is held
        // once it is cleared (see `submit`).
        self.worker.current.send_modify(|worker| {
            *worker = 0;
            self.holdings.clear();
        });
        self.inboxes.close();
        // What the old lease's commits left for a claim: the inboxes refuse their
        // senders' deliveries now, whatever this says.
        lock(&self.left).clear();
        lock(&self.cache).clear();
        lock(&self.waiting_for_code).clear();
        let waiting = self.take_waiting_activities();
        self.forget_all_claimed();
        if !waiting.is_empty() {
            tracing::info!(
                activities = waiting.len(),
                "activities waiting for a slot dropped with the lapsed lease; they run where they are claimed"
            );
        }
        drop(waiting);
        // Told nothing: they read the instance from the store.
        for (_, waiters) in lock(&self.waiters).drain() {
            for waiter in waiters {
                let _ = waiter.send(None);
            }
        }
    }

    /// Queues an event for `instance`, committed (or armed) under the lease of `worker`,
    /// and makes sure a turn task will take it. Under a lease that lapsed since, it is
    /// dropped: the next lease's claim takes it from the store.
    pub(in crate::runtime) fn deliver_under(
        self: &Arc<Self>,
        worker: WorkerId,
        instance: String,
        delivery: Delivery,
    ) {
        if self.left_in_store(delivery.id) {
            return;
        }
        match self.destination(&instance, delivery.incarnation) {
            Destination::Here => {
                if self.inboxes.push(&instance, delivery, worker) {
                    self.spawn_turns(instance);
                }
            }
            // A message for an instance another worker holds waits in the store for it.
            Destination::Holder => {}
            Destination::Nobody => {
                let engine = self.clone();
                self.spawn_boxed(async move {
                    if let Err(e) = engine.commit(consumed(&[delivery])).await {
                        tracing::warn!(
                            instance,
                            error = %e,
                            "a message for an earlier run not removed; it goes when this worker leaves"
                        );
                    }
                });
            }
        }
    }

    /// The worker joined the store again as `worker`: its inboxes take the deliveries
    /// of the new lease, and commits are written under it.
    pub(in crate::runtime) fn rejoined(&self, worker: WorkerId) {
        // The inboxes first: a commit under the new lease delivers what it sends at once.
        self.inboxes.open(worker);
        self.worker.current.send_replace(worker);
        self.worker.rejoins.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits, at most `timeout`, until the worker holds a lease other than `lapsed`.
    async fn rejoined_after(&self, lapsed: WorkerId, timeout: Duration) {
        let mut leases = self.worker.current.subscribe();
        let joined = leases.wait_for(|worker| *worker != 0 && *worker != lapsed);
        let _ = tokio::time::timeout(timeout, joined).await;
    }

    /// Commits `commit` in the next batch; resolves once it is durable, with the lease it
    /// was written under. Outside a turn (a client's start, event or request, an activity
    /// result stored as a message: nothing computed under a lease), a commit the store
    /// refused because the lease lapsed is written again once the worker has joined the
    /// store again, waiting at most [`REJOIN_WAIT`]. A turn's commit is not: the next
    /// lease's claim takes its messages, and its turn runs again there.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store refuses the write
    /// ([`StoreError::LeaseExpired`] if the worker has not joined again in time);
    /// [`Error::ShutDown`] once the runtime has stopped.
    pub(in crate::runtime) async fn commit_leased(
        &self,
        mut commit: Commit,
    ) -> Result<(WorkerId, Commit), Error> {
        let in_turn = lease::turn_lease().is_some();
        let mut retried = false;
        loop {
            let (result, written) = self.submit(commit).await;
            let worker = written.lease.as_ref().map_or(0, |lease| lease.worker);
            match result {
                Err(Error::Store(StoreError::LeaseExpired { .. }))
                    if !in_turn && !retried && !self.takes_no_work() =>
                {
                    tracing::debug!(
                        worker,
                        "commit refused: the lease lapsed; written again under the next one"
                    );
                    retried = true;
                    commit = written;
                    self.rejoined_after(worker, REJOIN_WAIT).await;
                }
                result => return result.map(|()| (worker, written)),
            }
        }
    }

    /// The store, shared: for calls made off the runtime's threads.
    pub(in crate::runtime) fn store_arc(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// What this worker claims (see [`claim_filter`]).
    pub(in crate::runtime) fn claim_filter(&self) -> Arc<ClaimFilter> {
        self.claim_filter.clone()
    }

    /// Where a message for run `incarnation` of `instance`, which this worker holds in the
    /// store, goes: to the inbox here if the instance is held here, or has finished or is
    /// gone (a timer that fires after its instance was terminated), and its turn
    /// acknowledges the message, which no other worker may take while this one lives; to
    /// nobody if the instance runs elsewhere as another run (restarted through another
    /// worker): this worker removes it; else it stays for the instance's holder.
    fn destination(&self, instance: &str, incarnation: Incarnation) -> Destination {
        if self.holds(instance) {
            return Destination::Here;
        }
        match self.store.instance(instance) {
            Ok(None) => Destination::Here,
            Ok(Some(record)) if record.status.is_terminal() => Destination::Here,
            Ok(Some(record)) if record.incarnation != incarnation => Destination::Nobody,
            // Read again by its holder's claim if the read failed.
            Ok(Some(_)) | Err(_) => Destination::Holder,
        }
    }

    /// Whether this worker leaves the tasks of `activity` to others: it does not have it,
    /// and the store is shared, so a worker that has it claims them.
    pub(in crate::runtime) fn leaves_activity(&self, activity: &str) -> bool {
        !self.registry.has_activity(activity) && self.store.is_shared()
    }

    /// Whether other processes may share the store.
    pub(crate) fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// Keeps the claim loop's task, for shutdown to wait for.
    pub(in crate::runtime) fn keep_claim_loop(&self, task: tokio::task::JoinHandle<()>) {
        *lock(&self.claim_loop) = Some(task);
    }

    /// Waits for the claim loop to end (after the runtime stopped taking work).
    pub(in crate::runtime) async fn stop_claim_loop(&self) {
        let task = lock(&self.claim_loop).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Whether message `id` was left in the store for a claim (its instance was not held
    /// here when it was committed): its sender does not deliver it. Forgets it.
    pub(in crate::runtime) fn left_in_store(&self, id: WorkId) -> bool {
        lock(&self.left).remove(&id)
    }
}
