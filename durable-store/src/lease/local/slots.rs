//! The slots and rate windows of limited activities ([`ActivityLimits`]) and the running
//! instances of limited orchestrators for [`Leases`]: the reference semantics the
//! PostgreSQL claim follows.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{ClaimReads, Leases};
use crate::error::StoreError;
use crate::hash::FnvMap;
use crate::lease::WorkerId;
use crate::lease::{ActivityLimits, ClaimFilter, Holding};
use crate::record::{InstanceRecord, WorkId, WorkItem};

/// What a claim met of limited orchestrators' pending instances: those it may take, and
/// their items (with the instance each is for).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) instances: BTreeSet<String>,
    pub(super) items: Vec<(WorkId, WorkItem, String)>,
}

/// The live instances a claim met: how the worker stands with each, its record, and
/// whether the claim took it or an item of it.
type Met = BTreeMap<String, (Holding, InstanceRecord, bool)>;

/// A task of a limited activity that a claim met unheld.
pub(super) struct Waiting {
    pub(super) id: WorkId,
    pub(super) activity: String,
}

/// The tasks of limited activities claims took (held until their worker removes them or
/// its lease ends), and the recent starts of rate-limited ones.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// Each task of a limited activity a claim took, with its activity.
    held: FnvMap<WorkId, String>,
    /// How many tasks of each activity `held` holds.
    held_by_activity: HashMap<String, u32>,
    /// The starts of each rate-limited activity within its last period, oldest first.
    starts: HashMap<String, VecDeque<Instant>>,
    /// The instances of limited orchestrators that run, or that a claim took to start,
    /// with their orchestrator: read from the store for each orchestrator the first time
    /// a claim limits it (in `loaded`), then kept as claims start and commits finish them.
    running: FnvMap<String, String>,
    loaded: BTreeSet<String>,
    /// The instances of `running` taken pending, until a commit writes them started: one
    /// whose worker's lease ends before that is pending again, and counts no more.
    starting: BTreeSet<String>,
    /// Tasks of limited activities a claim met and left waiting, by activity, in id
    /// order: out of the unheld queue, so that a claim reads only the first few of each
    /// (as many as its limits could let it start), not every waiting task again.
    parked: BTreeMap<String, BTreeSet<WorkId>>,
    /// The activity of each parked task.
    parked_ids: FnvMap<WorkId, String>,
}

impl Slots {
    /// Forgets task `id` (removed, or no longer held); whether it held a slot.
    pub(super) fn free(&mut self, id: WorkId) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let Some(activity) = self.held.remove(&id) else {
            return false;
        };
        if let Some(n) = self.held_by_activity.get_mut(&activity) {
            *n = n.saturating_sub(1);
        }
        true
    }

    /// Holds a slot of `activity` for task `id`.
    fn hold(&mut self, id: WorkId, activity: String) {
        if self.held.contains_key(&id) {
            return;
        }
        *self.held_by_activity.entry(activity.clone()).or_default() += 1;
        self.held.insert(id, activity);
    }

    /// Whether tasks of `activity` wait parked.
    pub(super) fn has_parked(&self, activity: &str) -> bool {
        self.parked.contains_key(activity)
    }

    /// Chooses among `waiting` as [`choose`](Self::choose) does, counting the held tasks
    /// of each activity from the running count: for a caller that swept the lapsed workers
    /// first, so that every held task is held by a live worker. Costs the tasks waiting,
    /// not the tasks held.
    pub(super) fn choose_swept(
        &mut self,
        waiting: Vec<Waiting>,
        filter: &ClaimFilter,
    ) -> Vec<WorkId> {
        let counts = &self.held_by_activity;
        let held: HashMap<String, u32> = (waiting.iter())
            .map(|w| {
                (
                    w.activity.clone(),
                    counts.get(&w.activity).copied().unwrap_or(0),
                )
            })
            .collect();
        self.choose_counted(waiting, filter, held, usize::MAX).0
    }

    /// Parks task `id` of `activity`, left waiting.
    pub(super) fn park(&mut self, id: WorkId, activity: String) {
        self.parked.entry(activity.clone()).or_default().insert(id);
        self.parked_ids.insert(id, activity);
    }

    /// Unparks task `id` (taken, removed or written again), if it was parked.
    pub(super) fn unpark(&mut self, id: WorkId) {
        if self.parked_ids.is_empty() {
            return;
        }
        if let Some(activity) = self.parked_ids.remove(&id)
            && let Some(ids) = self.parked.get_mut(&activity)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.parked.remove(&activity);
            }
        }
    }

    /// Unparks the tasks of the activities `filter` does not limit, for the caller to put
    /// back in the unheld queue.
    pub(super) fn unpark_unlimited(&mut self, filter: &ClaimFilter) -> Vec<WorkId> {
        let unlimited: Vec<String> = (self.parked.keys())
            .filter(|activity| filter.limits_of(activity).is_none())
            .cloned()
            .collect();
        let mut ids = Vec::new();
        for activity in unlimited {
            for id in self.parked.remove(&activity).into_iter().flatten() {
                self.parked_ids.remove(&id);
                ids.push(id);
            }
        }
        ids
    }

    /// The parked tasks a claim under `filter` considers: of each activity it limits, the
    /// first ones, as many as its concurrency or rate could let one claim start.
    pub(super) fn parked(&self, filter: &ClaimFilter) -> Vec<Waiting> {
        let mut waiting = Vec::new();
        for (activity, ids) in &self.parked {
            let Some(limits) = filter.limits_of(activity) else {
                continue;
            };
            let most = match (limits.concurrency, limits.rate) {
                (Some(n), Some(rate)) => n.min(rate.starts),
                (Some(n), None) => n,
                (None, Some(rate)) => rate.starts,
                (None, None) => 0,
            };
            waiting.extend(ids.iter().take(most as usize).map(|id| Waiting {
                id: *id,
                activity: activity.clone(),
            }));
        }
        waiting
    }

    /// Forgets instance `id` (finished or removed); whether it counted as running.
    pub(super) fn finish(&mut self, id: &str) -> bool {
        if self.running.is_empty() {
            return false;
        }
        self.starting.remove(id);
        self.running.remove(id).is_some()
    }

    /// Instance `id` was written with `record`: once it is not pending, it has started.
    pub(super) fn written(&mut self, id: &str, record: &InstanceRecord) {
        if !self.starting.is_empty() && !matches!(record.status, crate::record::Status::Pending) {
            self.starting.remove(id);
        }
    }

    /// The worker that held instance `id` is gone: if it had not started it, it counts no
    /// more (it is pending, for a claim to take again).
    pub(super) fn released(&mut self, id: &str) {
        if !self.starting.is_empty() && self.starting.remove(id) {
            self.running.remove(id);
        }
    }

    /// Chooses, among `waiting` (met in id order), the tasks a claim may take: higher
    /// priority first, then in id order, at most `room`, while each activity's held tasks
    /// (those `live` says a live worker holds) stay under its concurrency and its starts
    /// in the period under its rate. Records them as held and started. Returns them, in
    /// the order chosen, and when a rate window next opens for a task left waiting.
    pub(super) fn choose(
        &mut self,
        waiting: Vec<Waiting>,
        filter: &ClaimFilter,
        live: impl Fn(WorkId) -> bool,
        room: usize,
    ) -> (Vec<WorkId>, Option<Duration>) {
        let mut running: HashMap<&str, u32> = HashMap::new();
        for (id, activity) in &self.held {
            if live(*id) {
                *running.entry(activity.as_str()).or_default() += 1;
            }
        }
        let running: HashMap<String, u32> = running
            .into_iter()
            .map(|(activity, n)| (activity.to_owned(), n))
            .collect();
        self.choose_counted(waiting, filter, running, room)
    }

    /// [`choose`](Self::choose), given how many tasks of each activity live workers hold.
    fn choose_counted(
        &mut self,
        waiting: Vec<Waiting>,
        filter: &ClaimFilter,
        mut running: HashMap<String, u32>,
        room: usize,
    ) -> (Vec<WorkId>, Option<Duration>) {
        let limits = |activity: &str| -> ActivityLimits {
            filter.limits_of(activity).copied().unwrap_or_default()
        };
        let mut waiting = waiting;
        waiting.sort_by_key(|w| (std::cmp::Reverse(limits(&w.activity).priority), w.id));
        let now = Instant::now();
        let mut chosen = Vec::new();
        let mut retry_after: Option<Duration> = None;
        for Waiting { id, activity } in waiting {
            if chosen.len() >= room {
                break;
            }
            let limits = limits(&activity);
            let held = running.entry(activity.clone()).or_default();
            if limits.concurrency.is_some_and(|n| *held >= n) {
                continue;
            }
            if let Some(rate) = limits.rate {
                let starts = self.starts.entry(activity.clone()).or_default();
                while starts
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= rate.period)
                {
                    starts.pop_front();
                }
                if starts.len() >= rate.starts as usize {
                    let opens = starts
                        .front()
                        .map_or(Duration::ZERO, |at| rate.period - now.duration_since(*at));
                    retry_after = Some(retry_after.map_or(opens, |r| r.min(opens)));
                    continue;
                }
                starts.push_back(now);
            }
            *held += 1;
            self.hold(id, activity);
            chosen.push(id);
        }
        (chosen, retry_after)
    }
}

impl Leases {
    /// Takes for `worker` the tasks `tasks` (id and activity) of limited activities that
    /// its own commit left unclaimed, as far as `filter`'s limits allow now (see
    /// [`Store::claim_tasks`](crate::Store::claim_tasks)): only tasks still queued and
    /// unheld, and none of an activity with tasks parked (those waited longer, and go
    /// first). Returns the ids taken; the others wait for a claim. Costs the tasks given,
    /// not the queue nor the tasks held.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if the lease of `worker` has expired.
    pub(crate) fn claim_tasks(
        &mut self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        self.alive(worker)?;
        // Every held task is then held by a live worker: the counts need no lease check.
        self.sweep();
        let Some(unheld) = &self.unheld else {
            // No claim read the queue yet: whether a task is unheld, only a claim says.
            return Ok(Vec::new());
        };
        let waiting: Vec<Waiting> = (tasks.iter())
            .filter(|(id, activity)| {
                unheld.contains(id)
                    && filter.limits_of(activity).is_some()
                    && !self.slots.has_parked(activity)
            })
            .map(|(id, activity)| Waiting {
                id: *id,
                activity: (*activity).to_owned(),
            })
            .collect();
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let chosen = self.slots.choose_swept(waiting, filter);
        let unheld = self.unheld.get_or_insert_default();
        for id in &chosen {
            unheld.remove(id);
            self.items.insert(*id, worker);
        }
        Ok(chosen)
    }

    /// Adds to `items` the tasks of limited activities among `waiting` that their limits
    /// let this claim take for `worker` (see [`Slots::choose`]), and marks their instances
    /// in `met` as taken from; keeps `items` in id order. A task read from the queue
    /// (`Some` item) that waits is parked: later claims consider the first few of each
    /// activity's parked tasks (`None`) rather than read them all again. Returns when a
    /// rate window next opens.
    ///
    /// # Errors
    ///
    /// What a read of a parked task or its instance fails with.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_limited(
        &mut self,
        worker: WorkerId,
        waiting: Vec<(Waiting, Option<WorkItem>)>,
        filter: &ClaimFilter,
        reads: &impl ClaimReads,
        met: &mut Met,
        items: &mut Vec<(WorkId, WorkItem)>,
        max_items: usize,
    ) -> Result<Option<Duration>, StoreError> {
        if waiting.is_empty() {
            return Ok(None);
        }
        let mut tasks: HashMap<WorkId, (String, Option<WorkItem>)> = HashMap::new();
        let waiting: Vec<Waiting> = (waiting.into_iter())
            .map(|(w, item)| {
                tasks.insert(w.id, (w.activity.clone(), item));
                w
            })
            .collect();
        let room = max_items.saturating_sub(items.len());
        let (items_held, workers) = (&self.items, &self.workers);
        let now = Instant::now();
        let live = |id: WorkId| {
            (items_held.get(&id)).is_some_and(|w| workers.get(w).is_some_and(|e| *e > now))
        };
        let (chosen, retry_after) = self.slots.choose(waiting, filter, live, room);
        for id in chosen {
            let (_, item) = tasks.remove(&id).expect("a waiting task");
            let item = match item {
                Some(item) => item,
                None => {
                    self.slots.unpark(id);
                    match reads.item(id)? {
                        Some(item) => item,
                        None => {
                            self.slots.free(id);
                            if let Some(unheld) = &mut self.unheld {
                                unheld.remove(&id);
                            }
                            continue;
                        }
                    }
                }
            };
            if let WorkItem::Activity(task) = &item {
                if !met.contains_key(&task.instance)
                    && let Some(record) = reads.record(&task.instance)?
                    && !record.status.is_terminal()
                {
                    let holding = match self.instance_holder(&task.instance) {
                        Some(holder) if holder == worker => Holding::Held,
                        _ => Holding::Other,
                    };
                    met.insert(task.instance.clone(), (holding, record, false));
                }
                if let Some((_, _, taken)) = met.get_mut(&task.instance) {
                    *taken = true;
                }
            }
            items.push((id, item));
        }
        // Read from the queue and left waiting: parked.
        for (id, (activity, item)) in tasks {
            if item.is_some() {
                if let Some(unheld) = &mut self.unheld {
                    unheld.remove(&id);
                }
                self.slots.park(id, activity);
            }
        }
        items.sort_by_key(|(id, _)| *id);
        Ok(retry_after)
    }

    /// Claims, among the pending instances of limited orchestrators in `pending` (no live
    /// worker holds them), at most `room`, in creation order, while the instances of each
    /// orchestrator that run number fewer than its `max_running`; adds their items to
    /// `items` (kept in id order). Returns how many it claimed.
    pub(super) fn take_pending(
        &mut self,
        pending: Pending,
        filter: &ClaimFilter,
        reads: &impl ClaimReads,
        met: &mut Met,
        items: &mut Vec<(WorkId, WorkItem)>,
        room: usize,
    ) -> Result<usize, StoreError> {
        if pending.instances.is_empty() || room == 0 {
            return Ok(0);
        }
        let mut order: Vec<(u64, String, String)> = (pending.instances.iter())
            .filter_map(|id| {
                let record = &met.get(id)?.1;
                Some((record.created_ms, id.clone(), record.orchestrator.clone()))
            })
            .collect();
        order.sort();
        let slots = &mut self.slots;
        for (_, _, orchestrator) in &order {
            if slots.loaded.insert(orchestrator.clone()) {
                for id in reads.running(orchestrator)? {
                    slots.running.insert(id, orchestrator.clone());
                }
            }
        }
        let mut counts: HashMap<String, u32> = HashMap::new();
        for orchestrator in slots.running.values() {
            *counts.entry(orchestrator.clone()).or_default() += 1;
        }
        let mut chosen = BTreeSet::new();
        for (_, id, orchestrator) in order {
            if chosen.len() >= room {
                break;
            }
            let Some(max) = filter.max_running_of(&orchestrator) else {
                continue;
            };
            // Taken before by a worker whose lease lapsed: it counts already.
            if !slots.running.contains_key(&id) {
                let count = counts.entry(orchestrator.clone()).or_default();
                if *count >= max {
                    continue;
                }
                *count += 1;
                slots.running.insert(id.clone(), orchestrator);
            }
            slots.starting.insert(id.clone());
            if let Some((holding, _, _)) = met.get_mut(&id) {
                *holding = Holding::Claimed;
            }
            chosen.insert(id);
        }
        for (id, item, instance) in pending.items {
            if chosen.contains(&instance) {
                if let Some((_, _, taken)) = met.get_mut(&instance) {
                    *taken = true;
                }
                items.push((id, item));
            }
        }
        items.sort_by_key(|(id, _)| *id);
        Ok(chosen.len())
    }
}
