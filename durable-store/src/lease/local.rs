//! [`Leases`]: the lease table of a store one process holds alone (`MemoryStore`,
//! [`FjallStore`](crate::FjallStore)), kept in memory, since no other process can hold
//! anything: a process that dies takes its workers' leases with it, and the next one
//! starts with none. Its clock is this process's monotonic clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, ClaimedInstance, Holding, WorkerId};
use crate::record::{Commit, InstanceRecord, WorkId, WorkItem};

/// What a store reads for [`Leases::claim`].
pub(crate) struct ClaimSources<I, S, R> {
    /// The work items, in id order.
    pub(crate) items: I,
    /// The ids of the stalled instances.
    pub(crate) stalled: S,
    /// The record of an instance, if it has one.
    pub(crate) record: R,
}

/// Who holds what, under which lease.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// The last worker id given.
    last_worker: WorkerId,
    /// When each worker's lease expires.
    workers: HashMap<WorkerId, Instant>,
    /// The worker that last took each instance (its lease may have expired since).
    instances: HashMap<String, WorkerId>,
    /// The worker that last took each work item.
    items: HashMap<WorkId, WorkerId>,
}

impl Leases {
    /// Starts a lease `lease` long for a new worker.
    pub(crate) fn join(&mut self, lease: Duration) -> WorkerId {
        self.last_worker += 1;
        let worker = self.last_worker;
        self.workers.insert(worker, Instant::now() + lease);
        worker
    }

    /// Extends the lease of `worker` to `lease` from now.
    pub(crate) fn renew(&mut self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.alive(worker)?;
        self.workers.insert(worker, Instant::now() + lease);
        Ok(())
    }

    /// Ends the lease of `worker` now.
    pub(crate) fn leave(&mut self, worker: WorkerId) {
        self.workers.remove(&worker);
        self.instances.retain(|_, holder| *holder != worker);
        self.items.retain(|_, holder| *holder != worker);
    }

    /// Whether the lease of `worker` is live.
    pub(crate) fn is_live(&self, worker: WorkerId) -> bool {
        self.workers
            .get(&worker)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// `Ok` if the lease of `worker` is live.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if it is not.
    pub(crate) fn alive(&self, worker: WorkerId) -> Result<(), StoreError> {
        if self.is_live(worker) {
            Ok(())
        } else {
            Err(StoreError::LeaseExpired { worker })
        }
    }

    /// The worker holding instance `id` under a live lease.
    pub(crate) fn instance_holder(&self, id: &str) -> Option<WorkerId> {
        self.instances.get(id).copied().filter(|w| self.is_live(*w))
    }

    /// The worker holding work item `id` under a live lease.
    pub(crate) fn item_holder(&self, id: WorkId) -> Option<WorkerId> {
        self.items.get(&id).copied().filter(|w| self.is_live(*w))
    }

    /// Checks the leases of `commits` before they are written: each worker's lease is
    /// live, and no commit writes an instance or removes an item another live worker
    /// holds. `finished(id)` says whether instance `id` has finished or does not exist:
    /// anyone may write it then.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] or [`StoreError::Fenced`], for the first commit that
    /// fails.
    pub(crate) fn check(
        &self,
        commits: &[Commit],
        finished: impl Fn(&str) -> bool,
    ) -> Result<(), StoreError> {
        // Instances earlier commits of the batch take, by worker.
        let mut taken: HashMap<&str, WorkerId> = HashMap::new();
        for commit in commits {
            let Some(lease) = &commit.lease else {
                continue;
            };
            let worker = lease.worker;
            self.alive(worker)?;
            for id in written_instances(commit) {
                let holder = match taken.get(id) {
                    Some(w) => Some(*w),
                    None => self.instance_holder(id),
                };
                if let Some(holder) = holder
                    && holder != worker
                    && !finished(id)
                {
                    return Err(StoreError::Fenced {
                        worker,
                        what: format!("instance `{id}`"),
                        holder,
                    });
                }
                taken.insert(id, worker);
            }
            for id in &commit.dequeued {
                if let Some(holder) = self.item_holder(*id)
                    && holder != worker
                {
                    return Err(StoreError::Fenced {
                        worker,
                        what: format!("work item {id}"),
                        holder,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records what `commits` (checked and written) make their workers hold. Returns
    /// whether they left items for others to claim.
    pub(crate) fn written(&mut self, commits: &[Commit]) -> bool {
        let mut left = false;
        for commit in commits {
            for id in &commit.instances_removed {
                self.instances.remove(id);
            }
            for id in &commit.dequeued {
                self.items.remove(id);
            }
            let Some(lease) = &commit.lease else {
                left |= !commit.enqueued.is_empty();
                continue;
            };
            for id in written_instances(commit) {
                self.instances.insert(id.to_owned(), lease.worker);
            }
            let unclaimed: HashSet<WorkId> = lease.unclaimed.iter().copied().collect();
            for (id, _) in &commit.enqueued {
                if unclaimed.contains(id) {
                    self.items.remove(id);
                    left = true;
                } else {
                    self.items.insert(*id, lease.worker);
                }
            }
        }
        left
    }

    /// Takes for `worker` what `filter` allows and no live worker holds, from what
    /// `sources` reads (see [`Store::claim`](crate::Store::claim)).
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if the lease of `worker` has expired; what a source
    /// fails with.
    pub(crate) fn claim<I, S, R>(
        &mut self,
        worker: WorkerId,
        filter: &ClaimFilter,
        sources: ClaimSources<I, S, R>,
    ) -> Result<Claim, StoreError>
    where
        I: Iterator<Item = Result<(WorkId, WorkItem), StoreError>>,
        S: Iterator<Item = Result<String, StoreError>>,
        R: Fn(&str) -> Result<Option<InstanceRecord>, StoreError>,
    {
        self.alive(worker)?;
        let max_instances = filter.max_instances.max(1);
        let max_items = filter.max_items.max(1);
        let live = |id: &str| -> Result<Option<InstanceRecord>, StoreError> {
            Ok((sources.record)(id)?.filter(|record| !record.status.is_terminal()))
        };
        // The live instances met, with how the worker stands with each.
        let mut met: BTreeMap<String, (Holding, InstanceRecord)> = BTreeMap::new();
        let mut newly = 0;
        let mut items = Vec::new();
        for item in sources.items {
            if items.len() >= max_items {
                break;
            }
            let (id, item) = item?;
            if self.item_holder(id).is_some() {
                continue;
            }
            let (instance, activity) = match &item {
                WorkItem::Message { instance, .. } | WorkItem::Timer { instance, .. } => {
                    (instance.clone(), None)
                }
                WorkItem::Activity(task) => (task.instance.clone(), Some(task.activity.clone())),
            };
            if !met.contains_key(&instance) {
                let Some(record) = live(&instance)? else {
                    // An item of a finished or gone instance: taken, to be removed.
                    items.push((id, item));
                    continue;
                };
                let holding = match self.instance_holder(&instance) {
                    Some(holder) if holder == worker => Holding::Held,
                    Some(_) => Holding::Other,
                    None => Holding::Other,
                };
                met.insert(instance.clone(), (holding, record));
            }
            let (holding, record) = met.get_mut(&instance).expect("met above");
            // An instance no live worker holds is claimed with its first item met (of
            // any kind): its turns run here from now on.
            if *holding == Holding::Other
                && self.instance_holder(&instance).is_none()
                && newly < max_instances
                && filter.takes_orchestrator(&record.orchestrator)
            {
                *holding = Holding::Claimed;
                newly += 1;
            }
            let take = match &activity {
                Some(activity) => filter.takes_activity(activity),
                None => *holding != Holding::Other,
            };
            if take {
                items.push((id, item));
            }
        }
        // Stalled instances no live worker holds, to try again with this worker's code.
        for id in sources.stalled {
            if newly >= max_instances {
                break;
            }
            let id = id?;
            if met
                .get(&id)
                .is_some_and(|(holding, _)| *holding != Holding::Other)
                || self.instance_holder(&id).is_some()
            {
                continue;
            }
            if let Some(record) = live(&id)?
                && filter.takes_orchestrator(&record.orchestrator)
            {
                met.insert(id, (Holding::Claimed, record));
                newly += 1;
            }
        }
        for (id, (holding, _)) in &met {
            if *holding == Holding::Claimed {
                self.instances.insert(id.clone(), worker);
            }
        }
        for (id, _) in &items {
            self.items.insert(*id, worker);
        }
        let mut instances: Vec<ClaimedInstance> = met
            .into_iter()
            .map(|(id, (holding, record))| ClaimedInstance {
                id,
                record,
                holding,
            })
            .collect();
        instances.sort_by(|a, b| (a.record.created_ms, &a.id).cmp(&(b.record.created_ms, &b.id)));
        Ok(Claim { instances, items })
    }
}

/// The instances `commit` writes or removes (records and histories).
fn written_instances(commit: &Commit) -> impl Iterator<Item = &str> {
    commit
        .instances
        .iter()
        .map(|(id, _)| id.as_str())
        .chain(commit.history.iter().map(|append| append.instance.as_str()))
        .chain(commit.histories_removed.iter().map(|(id, _)| id.as_str()))
        .chain(commit.instances_removed.iter().map(String::as_str))
}

/// Wakes the claim loops waiting in `Store::wait_for_work` when work is left to claim.
#[derive(Debug, Default)]
pub(crate) struct WorkSignal {
    /// Counts the wake-ups given.
    given: Mutex<u64>,
    changed: Condvar,
}

impl WorkSignal {
    /// Wakes every waiter.
    pub(crate) fn wake(&self) {
        *self.given.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// Waits for the next wake-up, at most `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) {
        let given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        let seen = *given;
        let _ = self
            .changed
            .wait_timeout_while(given, timeout, |given| *given == seen);
    }
}
