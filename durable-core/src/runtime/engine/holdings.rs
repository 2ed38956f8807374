//! What this worker holds on the store (see `durable_store::lease`): its worker id, the
//! instances it holds (their turns run here; messages for any other instance stay in the
//! store for its holder), the lease every commit carries, the claim loop's task, and the
//! block of work ids the store reserved for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use durable_store::WorkerId;
use durable_store::{
    ClaimFilter, Commit, CommitLease, Status, StatusKind, Store, StoreError, WorkId, WorkItem,
};

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

/// Records in `held` what `commit`, written, makes this worker hold: the instances it
/// wrote (but those it released), with their status, until they finish or are removed.
fn hold_written(held: &Mutex<HashMap<String, StatusKind>>, commit: &Commit) {
    if commit.instances.is_empty() && commit.instances_removed.is_empty() {
        return;
    }
    let mut held = lock(held);
    for id in &commit.instances_removed {
        held.remove(id);
    }
    let released = commit
        .lease
        .as_ref()
        .map_or(&[][..], |lease| &lease.released);
    for (id, record) in &commit.instances {
        let status = record.status.kind();
        if status.is_terminal() || released.contains(id) {
            held.remove(id);
        } else if let Some(held) = held.get_mut(id) {
            *held = status;
        } else {
            held.insert(id.clone(), status);
        }
    }
}

/// What a worker with `registry` claims on `store`: on a store other processes share, only
/// work for the code it has (the instances of the orchestrator versions it registered,
/// the tasks of its activities), leaving the rest to workers that have it; on a store it
/// holds alone, everything (what it cannot run,
/// [`Unregistered`](super::super::Unregistered) decides).
pub(super) fn claim_filter(store: &dyn Store, registry: &Registry) -> ClaimFilter {
    if store.is_shared() {
        ClaimFilter::default()
            .orchestrators(registry.orchestrator_names())
            .versions(registry.orchestrator_versions())
            .activities(registry.activity_names())
    } else {
        ClaimFilter::default()
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
                    Ok(first) => ids.following = Some(first),
                    Err(e) => tracing::warn!(error = %e, "cannot reserve work ids; will retry"),
                }
            });
        }
        id
    }

    // The lease.

    /// This runtime's worker on the store.
    pub(in crate::runtime) fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The store, shared: for calls made off the runtime's threads.
    pub(in crate::runtime) fn store_arc(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// What this worker claims (see [`claim_filter`]).
    pub(in crate::runtime) fn claim_filter(&self) -> Arc<ClaimFilter> {
        self.claim_filter.clone()
    }

    /// Whether this worker holds `instance`.
    pub(crate) fn holds(&self, instance: &str) -> bool {
        lock(&self.held).contains_key(instance)
    }

    /// Whether `instance` is held here and neither finished nor stalled, as this worker
    /// last wrote it: when it finishes or stalls, it does so here and wakes its watchers
    /// ([`Engine::watch`]), as does another worker taking it over.
    pub(crate) fn runs_here(&self, instance: &str) -> bool {
        lock(&self.held).get(instance).is_some_and(|status| {
            matches!(
                status,
                StatusKind::Pending | StatusKind::Running | StatusKind::Suspended
            )
        })
    }

    /// Whether a message for `instance` that this worker holds in the store goes to its
    /// inbox here: the instance is held here, or it has finished or is gone (a timer that
    /// fires after its instance was terminated), and its turn acknowledges the message,
    /// which no other worker may take while this one lives.
    pub(in crate::runtime) fn takes_delivery(&self, instance: &str) -> bool {
        self.holds(instance)
            || (self.store.instance(instance))
                .is_ok_and(|record| record.is_none_or(|record| record.status.is_terminal()))
    }

    /// This worker now holds `instance`, found with `status` (it claimed it).
    pub(in crate::runtime) fn hold(&self, instance: &str, status: StatusKind) {
        lock(&self.held).insert(instance.to_string(), status);
    }

    /// This worker no longer holds `instance` (another took it over); its watchers read
    /// its state from the store from now on.
    pub(in crate::runtime) fn let_go(&self, instance: &str) {
        lock(&self.held).remove(instance);
        self.forget(instance);
        self.wake_waiters(instance, None);
    }

    /// `commit` under this worker's lease: the instances it writes are held from now on
    /// (until they finish); the messages it enqueues for instances this worker does not
    /// hold are left for their holder to claim, and the tasks of activities it does not
    /// have (on a shared store) for a worker that has them.
    fn leased(&self, mut commit: Commit) -> Commit {
        let held = lock(&self.held);
        // On a shared store, the instances it starts (pending, their `Started` message
        // in the commit) of an orchestrator this worker does not have (a
        // sub-orchestration, in a rolling deploy) are left for a worker that has it. One
        // that already ran stays with the worker that claimed it.
        let released: Vec<String> = if self.store.is_shared() {
            commit
                .instances
                .iter()
                .filter(|(_, record)| {
                    matches!(record.status, Status::Pending)
                        && self
                            .registry
                            .orchestrator(&record.orchestrator, record.version)
                            .is_none()
                })
                .map(|(id, _)| id.clone())
                .collect()
        } else {
            Vec::new()
        };
        // The other instances the commit creates or goes on with (a few) are held once it
        // is written.
        let written = |instance: &str| {
            commit.instances.iter().any(|(id, record)| {
                id == instance && !record.status.is_terminal() && !released.iter().any(|r| r == id)
            })
        };
        let mut left = Vec::new();
        let unclaimed = commit
            .enqueued
            .iter()
            .filter_map(|(id, item)| match item {
                WorkItem::Message { instance, .. }
                    if !held.contains_key(instance) && !written(instance) =>
                {
                    left.push(*id);
                    Some(*id)
                }
                WorkItem::Activity(task) if self.leaves_activity(&task.activity) => Some(*id),
                _ => None,
            })
            .collect();
        drop(held);
        // This worker may claim their instance before the commit is durable: the claim
        // then delivers them, and the sender must not deliver them a second time.
        lock(&self.left).extend(left);
        commit.lease = Some(CommitLease {
            worker: self.worker,
            unclaimed,
            released,
        });
        commit
    }

    /// Halts the runtime: the store refuses this worker's writes from now on.
    pub(in crate::runtime) fn halt(&self, error: StoreError) {
        self.commits.halt(error);
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

    /// Queues `commit` for the next batch at once, under this worker's lease; the future
    /// resolves once it is durable, with the commit handed back (see
    /// [`GroupCommit::submit`](super::super::group_commit::GroupCommit::submit)). Once it
    /// is, this worker holds the instances it wrote.
    pub(in crate::runtime) fn submit(
        &self,
        commit: Commit,
    ) -> impl Future<Output = (Result<(), Error>, Commit)> + Send + use<> {
        let written = self.commits.submit(self.leased(commit));
        let (held, left) = (self.held.clone(), self.left.clone());
        async move {
            let (result, commit) = written.await;
            match (&result, &commit.lease) {
                (Ok(()), _) => hold_written(&held, &commit),
                // Not written: the sender delivers none of them.
                (Err(_), Some(lease)) => {
                    let mut left = lock(&left);
                    for id in &lease.unclaimed {
                        left.remove(id);
                    }
                }
                (Err(_), None) => {}
            }
            (result, commit)
        }
    }

    /// Whether message `id` was left in the store for a claim (its instance was not held
    /// here when it was committed): its sender does not deliver it. Forgets it.
    pub(in crate::runtime) fn left_in_store(&self, id: WorkId) -> bool {
        lock(&self.left).remove(&id)
    }
}
