//! [`Leases`]: the lease table of a store one process holds alone (`MemoryStore`,
//! [`FjallStore`](crate::FjallStore)), kept in memory, since no other process can hold
//! anything: a process that dies takes its workers' leases with it, and the next one
//! starts with none. Its clock is this process's monotonic clock.
//!
//! A claim must cost little when there is nothing to take: the runtime claims every
//! second or so and on every wake-up. So the table also keeps what no worker holds: the
//! ids of the unheld work items and of the unheld stalled instances. The first claim after
//! open reads the whole queue and the stalled instances (at open nothing is held); after
//! that a claim reads only the items and instances in these sets. They grow with the
//! items a commit leaves for others (its `unclaimed` ones, every item of a commit without
//! a lease) and with the holdings of a worker whose lease lapses or that leaves; a lapsed
//! worker's instances send the stalled set back to a full read, since only their records
//! say whether they are stalled.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::hash::FnvMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, ClaimedInstance, Holding, WorkerId, written_instances};
use crate::record::{Commit, InstanceRecord, StatusKind, WorkId, WorkItem};

mod slots;

use slots::{Pending, Slots, Waiting};

/// What a store reads for [`Leases::claim`].
pub(crate) trait ClaimReads {
    /// Every queued work item, in id order: what the first claim after open reads.
    ///
    /// # Errors
    ///
    /// What the read fails with.
    fn all_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError>;

    /// The work item `id`, if it is still queued.
    ///
    /// # Errors
    ///
    /// What the read fails with.
    fn item(&self, id: WorkId) -> Result<Option<WorkItem>, StoreError>;

    /// The ids of every stalled instance.
    ///
    /// # Errors
    ///
    /// What the read fails with.
    fn stalled(&self) -> Result<Vec<String>, StoreError>;

    /// The ids of the instances of `orchestrator` that count as running
    /// ([`counts_as_running`](crate::lease::counts_as_running)).
    ///
    /// # Errors
    ///
    /// What the read fails with.
    fn running(&self, orchestrator: &str) -> Result<Vec<String>, StoreError>;

    /// The record of instance `id`, if it has one.
    ///
    /// # Errors
    ///
    /// What the read fails with.
    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;
}

/// Who holds what, under which lease, and what no one holds.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// The last worker id given.
    last_worker: WorkerId,
    /// When each worker's lease expires; a worker is dropped from here (and its holdings
    /// released) by the first claim after its lease lapsed, or when it leaves.
    workers: FnvMap<WorkerId, Instant>,
    /// The worker that last took each live instance (its lease may have expired since).
    instances: FnvMap<String, WorkerId>,
    /// The worker that last took each work item.
    items: FnvMap<WorkId, WorkerId>,
    /// The queued items no worker holds (none of them is in `items`); `None` until the
    /// first claim reads the queue.
    unheld: Option<BTreeSet<WorkId>>,
    /// The stalled instances no worker holds, or ids that were (a claim checks each
    /// record); `None` until a claim reads the stalled instances again.
    stalled: Option<BTreeSet<String>>,
    /// The tasks of limited activities claims took, and the recent starts.
    slots: Slots,
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

    /// Ends the lease of `worker` now: what it held is free to claim.
    pub(crate) fn leave(&mut self, worker: WorkerId) {
        self.workers.remove(&worker);
        self.release(&[worker]);
    }

    /// Drops the workers whose lease has lapsed and releases what they held.
    fn sweep(&mut self) {
        let now = Instant::now();
        let lapsed: Vec<WorkerId> = (self.workers.iter())
            .filter(|(_, expires)| **expires <= now)
            .map(|(worker, _)| *worker)
            .collect();
        if !lapsed.is_empty() {
            for worker in &lapsed {
                self.workers.remove(worker);
            }
            self.release(&lapsed);
        }
    }

    /// Makes what `workers` (gone) held free to claim.
    fn release(&mut self, workers: &[WorkerId]) {
        let unheld = &mut self.unheld;
        let slots = &mut self.slots;
        self.items.retain(|id, holder| {
            let keep = !workers.contains(holder);
            if !keep {
                slots.free(*id);
                if let Some(unheld) = unheld {
                    unheld.insert(*id);
                }
            }
            keep
        });
        let before = self.instances.len();
        let slots = &mut self.slots;
        self.instances.retain(|id, holder| {
            let keep = !workers.contains(holder);
            if !keep {
                slots.released(id);
            }
            keep
        });
        if self.instances.len() != before {
            // Which of them are stalled, only their records say.
            self.stalled = None;
        }
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
        let mut taken: FnvMap<&str, WorkerId> = FnvMap::default();
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

    /// Records what `commits` (checked and written) make their workers hold, and what
    /// they leave unheld. Returns whether they left items for others to claim.
    pub(crate) fn written(&mut self, commits: &[Commit]) -> bool {
        let untracked = self.items.is_empty()
            && self.instances.is_empty()
            && self.unheld.is_none()
            && self.stalled.is_none();
        if untracked && commits.iter().all(|commit| commit.lease.is_none()) {
            // No worker holds anything and no claim ran yet (a store no runtime claims
            // from, or one not yet claimed from since open): nothing to keep track of.
            return commits.iter().any(|commit| !commit.enqueued.is_empty());
        }
        let mut left = false;
        for commit in commits {
            for id in &commit.dequeued {
                self.items.remove(id);
                if let Some(unheld) = &mut self.unheld {
                    unheld.remove(id);
                }
                // A slot freed: workers waiting for one claim again.
                left |= self.slots.free(*id);
                self.slots.unpark(*id);
            }
            // Usually empty, and short: a turn's messages for instances held elsewhere.
            let unclaimed: &[WorkId] = commit.lease.as_ref().map_or(&[], |lease| &lease.unclaimed);
            for (id, _) in &commit.enqueued {
                self.slots.unpark(*id);
                match &commit.lease {
                    Some(lease) if !unclaimed.contains(id) => {
                        self.items.insert(*id, lease.worker);
                        if let Some(unheld) = &mut self.unheld {
                            unheld.remove(id);
                        }
                    }
                    _ => {
                        self.items.remove(id);
                        self.slots.free(*id);
                        if let Some(unheld) = &mut self.unheld {
                            unheld.insert(*id);
                        }
                        left = true;
                    }
                }
            }
            if let Some(lease) = &commit.lease {
                for id in written_instances(commit) {
                    if lease.released.iter().any(|released| released == id) {
                        self.instances.remove(id);
                        continue;
                    }
                    // A turn rewrites the instance it holds: no new key.
                    match self.instances.get_mut(id) {
                        Some(holder) => *holder = lease.worker,
                        None => {
                            self.instances.insert(id.to_owned(), lease.worker);
                        }
                    }
                }
            }
            // Removals apply before writes: an id removed and written again stays.
            for id in &commit.instances_removed {
                left |= self.slots.finish(id);
                if !commit.instances.iter().any(|(written, _)| written == id) {
                    self.instances.remove(id);
                    if let Some(stalled) = &mut self.stalled {
                        stalled.remove(id);
                    }
                }
            }
            for (id, record) in &commit.instances {
                self.slots.written(id, record);
                // A finished instance may be written by anyone: no one holds it.
                if record.status.is_terminal() {
                    self.instances.remove(id);
                    // A running instance of a limited orchestrator finished: its slot frees.
                    left |= self.slots.finish(id);
                }
                if let Some(stalled) = &mut self.stalled {
                    let unheld = commit.lease.is_none() && !self.instances.contains_key(id);
                    if record.status.kind() == StatusKind::Stalled && unheld {
                        stalled.insert(id.clone());
                    } else {
                        stalled.remove(id);
                    }
                }
            }
        }
        left
    }

    /// Takes for `worker` what `filter` allows and no live worker holds, reading it
    /// through `reads` (see [`Store::claim`](crate::Store::claim)): the whole queue and
    /// the stalled instances the first time, then only what is unheld.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if the lease of `worker` has expired; what a read
    /// fails with.
    pub(crate) fn claim(
        &mut self,
        worker: WorkerId,
        filter: &ClaimFilter,
        reads: &impl ClaimReads,
    ) -> Result<Claim, StoreError> {
        self.alive(worker)?;
        self.sweep();
        let max_instances = filter.max_instances.max(1);
        let max_items = filter.max_items.max(1);
        let live = |id: &str| -> Result<Option<InstanceRecord>, StoreError> {
            Ok(reads
                .record(id)?
                .filter(|record| !record.status.is_terminal()))
        };
        // The queue as read whole, for the first claim after open.
        let mut read: Option<HashMap<WorkId, WorkItem>> = None;
        if self.unheld.is_none() {
            let all = reads.all_items()?;
            let unheld = (all.iter())
                .map(|(id, _)| *id)
                .filter(|id| !self.items.contains_key(id))
                .collect();
            self.unheld = Some(unheld);
            read = Some(all.into_iter().collect());
        }
        // Tasks parked for limits this filter does not set are for it to take.
        let unparked = self.slots.unpark_unlimited(filter);
        if !unparked.is_empty() {
            self.unheld.get_or_insert_default().extend(unparked);
        }
        // The live instances met, with how the worker stands with each, and whether the
        // claim took it or an item of it.
        let mut met: BTreeMap<String, (Holding, InstanceRecord, bool)> = BTreeMap::new();
        let mut newly = 0;
        let mut items = Vec::new();
        let mut gone = Vec::new();
        // Tasks of limited activities, taken after the others as their limits allow.
        let mut waiting = Vec::new();
        // Pending instances of limited orchestrators, and their items, likewise.
        let mut pending = Pending::default();
        for &id in self.unheld.iter().flatten() {
            if items.len() >= max_items {
                break;
            }
            let item = match &mut read {
                Some(read) => read.remove(&id),
                None => reads.item(id)?,
            };
            let Some(item) = item else {
                gone.push(id);
                continue;
            };
            let (instance, activity) = match &item {
                WorkItem::Message { instance, .. } | WorkItem::Timer { instance, .. } => {
                    (instance, None)
                }
                WorkItem::Activity(task) => (&task.instance, Some(task.activity.as_str())),
            };
            if !met.contains_key(instance) {
                let Some(record) = live(instance)? else {
                    // An item of a finished or gone instance: taken, to be removed.
                    items.push((id, item));
                    continue;
                };
                let holding = match self.instance_holder(instance) {
                    Some(holder) if holder == worker => Holding::Held,
                    _ => Holding::Other,
                };
                met.insert(instance.clone(), (holding, record, false));
            }
            let (holding, record, taken) = met.get_mut(instance).expect("met above");
            // An instance no live worker holds is claimed with its first item met (of
            // any kind): its turns run here from now on.
            if *holding == Holding::Other
                && self.instance_holder(instance).is_none()
                && newly < max_instances
                && filter.takes_instance(record)
            {
                if filter.limits_start(record) {
                    pending.instances.insert(instance.clone());
                } else {
                    *holding = Holding::Claimed;
                    newly += 1;
                }
            }
            if activity.is_none()
                && *holding == Holding::Other
                && pending.instances.contains(instance)
            {
                let instance = instance.clone();
                pending.items.push((id, item, instance));
                continue;
            }
            let limited = activity
                .filter(|activity| filter.limits_of(activity).is_some())
                .map(str::to_owned);
            let take = match activity {
                Some(activity) => filter.takes_activity(activity),
                None => *holding != Holding::Other,
            };
            if let Some(activity) = limited {
                if take {
                    waiting.push((Waiting { id, activity }, Some(item)));
                }
                continue;
            }
            if take {
                *taken = true;
                items.push((id, item));
            }
        }
        if let Some(unheld) = &mut self.unheld {
            for id in gone {
                unheld.remove(&id);
            }
        }
        let room = max_instances - newly;
        newly += self.take_pending(pending, filter, reads, &mut met, &mut items, room)?;
        waiting.extend(self.slots.parked(filter).into_iter().map(|w| (w, None)));
        let retry_after = self.take_limited(
            worker, waiting, filter, reads, &mut met, &mut items, max_items,
        )?;
        self.claim_stalled(filter, reads, &mut met, max_instances - newly)?;
        for (id, (holding, _, _)) in &met {
            if *holding == Holding::Claimed {
                self.instances.insert(id.clone(), worker);
            }
        }
        let unheld = self.unheld.get_or_insert_default();
        for (id, _) in &items {
            self.items.insert(*id, worker);
            unheld.remove(id);
        }
        let mut instances: Vec<ClaimedInstance> = met
            .into_iter()
            .filter(|(_, (holding, _, taken))| *taken || *holding == Holding::Claimed)
            .map(|(id, (holding, record, _))| ClaimedInstance {
                id,
                record,
                holding,
            })
            .collect();
        instances.sort_by(|a, b| (a.record.created_ms, &a.id).cmp(&(b.record.created_ms, &b.id)));
        Ok(Claim {
            instances,
            items,
            retry_after,
        })
    }

    /// Adds to `met`, as [`Holding::Claimed`], up to `room` stalled instances no live
    /// worker holds, to try again with this worker's code.
    fn claim_stalled(
        &mut self,
        filter: &ClaimFilter,
        reads: &impl ClaimReads,
        met: &mut BTreeMap<String, (Holding, InstanceRecord, bool)>,
        room: usize,
    ) -> Result<(), StoreError> {
        if room == 0 {
            return Ok(());
        }
        if self.stalled.is_none() {
            let stalled = reads.stalled()?;
            let unheld = (stalled.into_iter())
                .filter(|id| self.instance_holder(id).is_none())
                .collect();
            self.stalled = Some(unheld);
        }
        let candidates: Vec<String> = self.stalled.iter().flatten().cloned().collect();
        let mut newly = 0;
        // Ids no longer stalled or unheld.
        let mut stale = Vec::new();
        for id in candidates {
            if newly >= room {
                break;
            }
            if met
                .get(&id)
                .is_some_and(|(holding, _, _)| *holding != Holding::Other)
                || self.instance_holder(&id).is_some()
            {
                stale.push(id);
                continue;
            }
            match reads.record(&id)? {
                Some(record) if record.status.kind() == StatusKind::Stalled => {
                    if filter.takes_instance(&record) {
                        stale.push(id.clone());
                        met.insert(id, (Holding::Claimed, record, false));
                        newly += 1;
                    }
                }
                _ => stale.push(id),
            }
        }
        if let Some(stalled) = &mut self.stalled {
            for id in &stale {
                stalled.remove(id);
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests;
