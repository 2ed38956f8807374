//! The worker's side of activity flow control: its own slots (`activity_concurrency`),
//! which waiting activities take higher priority first, and the tasks of limited
//! activities ([`ActivityLimits::is_limited`]), which start only through a claim of the
//! store (the store counts them against their limits: see `durable_store::lease`).
//!
//! A turn that schedules a task of a limited activity leaves it in the store unclaimed
//! (`held.rs`), with one attempt less (as a task that never executed), and does not run
//! it; the claim loop claims it when a slot frees (a commit that removes a held task of
//! the activity wakes it) or a rate window opens
//! ([`Claim::retry_after`](durable_store::Claim::retry_after)), counts the attempt, and
//! runs it then.
//!
//! The cheaper path first: once the turn's commit is durable, the worker asks the store
//! for the tasks it just left ([`Store::claim_tasks`](durable_store::Store::claim_tasks)),
//! batched across the turns that finish meanwhile, and runs at once those whose limit has
//! room (counting the attempt in memory, as the turn of an unlimited activity does); the
//! store counts them as a claim would. A store without that path (PostgreSQL) takes none,
//! and every task goes through the claim loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_store::{ActivityTask, WorkId};

use super::{Busy, Engine, lock};
use crate::registry::Registry;
use crate::telemetry::{ActivityTrace, metrics};

/// An activity waiting for a slot.
pub(in crate::runtime) struct QueuedActivity {
    pub(in crate::runtime) id: WorkId,
    pub(in crate::runtime) task: ActivityTask,
    /// Work in hand until its result is handed over.
    pub(in crate::runtime) busy: Busy,
    /// The trace its span joins.
    pub(in crate::runtime) trace: ActivityTrace,
}

/// The slots of activities that run at once, and the activities waiting for one, higher
/// priority first, then in the order they were called.
pub(super) struct Slots {
    free: usize,
    waiting: VecDeque<(i32, QueuedActivity)>,
}

impl Slots {
    /// `free` slots, none waiting.
    pub(super) fn new(free: usize) -> Self {
        Self {
            free,
            waiting: VecDeque::new(),
        }
    }
}

/// What the engine keeps for flow control.
#[derive(Default)]
pub(super) struct Flow {
    /// The priority of each activity that has one other than 0.
    priorities: HashMap<String, i32>,
    /// Whether any activity is limited: if not, nothing here is looked up per task.
    limited: bool,
    /// Whether any orchestrator is limited: if not, nothing is looked up per start.
    limited_orchestrators: bool,
    /// Tasks of limited activities this worker claimed, until a commit of this worker
    /// removes them: a commit that writes one again (the take-over's that counts its
    /// attempt, one that stores it as never executed) keeps it held, where a newly
    /// scheduled one is left unclaimed.
    claimed: Mutex<HashSet<WorkId>>,
    /// When the last claim said a rate window opens.
    retry_after: Mutex<Option<Duration>>,
    /// Tasks of limited activities that turns of this worker left, their commit durable,
    /// to take at once ([`Engine::take_at_once`]) with the next call to the store.
    at_once: Mutex<Vec<(WorkId, ActivityTask, ActivityTrace)>>,
}

impl Flow {
    /// The flow control of the activities `registry` has.
    pub(super) fn new(registry: &Registry) -> Self {
        let limits = registry.all_activity_limits();
        Self {
            priorities: (limits.iter())
                .filter(|(_, limits)| limits.priority != 0)
                .map(|(name, limits)| (name.clone(), limits.priority))
                .collect(),
            limited: limits.values().any(|limits| limits.is_limited()),
            limited_orchestrators: !registry.all_orchestrator_limits().is_empty(),
            ..Self::default()
        }
    }
}

impl Engine {
    /// Whether task `id` of `activity` is not this worker's to run now: an activity it
    /// does not have on a shared store (left for a worker that has it), or a limited
    /// activity's task this worker did not claim (left for a claim, which counts it
    /// against the limits).
    pub(in crate::runtime) fn leaves_task(&self, id: WorkId, activity: &str) -> bool {
        self.leaves_activity(activity) || (self.limits_activity(activity) && !self.claimed(id))
    }

    /// Stores the tasks of limited activities that `commit` (about to be written for the
    /// first time) schedules with one attempt less, as tasks that never executed are
    /// stored (`activities::store_unexecuted`): the claim that starts one counts the
    /// attempt again, so its first execution is attempt 1, as any activity's.
    pub(in crate::runtime) fn store_limited_unstarted(&self, commit: &mut durable_store::Commit) {
        if !self.flow.limited || commit.lease.is_some() {
            return;
        }
        for (id, item) in &mut commit.enqueued {
            if let durable_store::WorkItem::Activity(task) = item
                && self.limits_activity(&task.activity)
                && !self.claimed(*id)
            {
                task.attempt = task.attempt.saturating_sub(1);
            }
        }
    }

    /// Whether `activity` has a concurrency or rate limit.
    pub(in crate::runtime) fn limits_activity(&self, activity: &str) -> bool {
        self.flow.limited && self.claim_filter.limits_of(activity).is_some()
    }

    /// Whether the start of an instance of `orchestrator` waits for its limit: the
    /// commit that creates it pending leaves it (and its `Started` message) for a claim,
    /// which counts it against the orchestrator's `max_running`.
    pub(in crate::runtime) fn limits_orchestrator(&self, orchestrator: &str) -> bool {
        self.flow.limited_orchestrators && self.claim_filter.max_running_of(orchestrator).is_some()
    }

    /// Whether this worker claimed task `id` (of a limited activity) and has not run it.
    fn claimed(&self, id: WorkId) -> bool {
        lock(&self.flow.claimed).contains(&id)
    }

    /// Notes that this worker claimed task `id` of `activity`, if it is limited: it runs
    /// here.
    pub(in crate::runtime) fn note_claimed(&self, id: WorkId, activity: &str) {
        if self.limits_activity(activity) {
            lock(&self.flow.claimed).insert(id);
        }
    }

    /// Tasks `ids` are removed by a commit of this worker: no longer noted as claimed.
    pub(in crate::runtime) fn forget_claimed(&self, ids: &[WorkId]) {
        if self.flow.limited && !ids.is_empty() {
            let mut claimed = lock(&self.flow.claimed);
            if !claimed.is_empty() {
                for id in ids {
                    claimed.remove(id);
                }
            }
        }
    }

    /// Forgets every task noted as claimed (the lease that claimed them lapsed).
    pub(in crate::runtime) fn forget_all_claimed(&self) {
        lock(&self.flow.claimed).clear();
    }

    /// Takes task `id` of a limited activity, which a turn of this worker scheduled and
    /// left unclaimed (its commit is durable), at once if its limit has room, and runs it;
    /// otherwise it waits for a claim. The tasks of the turns that finish meanwhile go to
    /// the store in one call.
    pub(in crate::runtime) fn take_at_once(
        self: &Arc<Self>,
        id: WorkId,
        task: ActivityTask,
        trace: ActivityTrace,
    ) {
        let first = {
            let mut batch = lock(&self.flow.at_once);
            batch.push((id, task, trace));
            batch.len() == 1
        };
        if first {
            let engine = self.clone();
            self.spawn_boxed(async move {
                // The turns finishing meanwhile add theirs: one call takes them all.
                tokio::task::yield_now().await;
                engine.take_batch_at_once().await;
            });
        }
    }

    /// Asks the store for the tasks gathered by [`take_at_once`](Self::take_at_once), and
    /// runs those it gives this worker.
    async fn take_batch_at_once(self: Arc<Self>) {
        let batch = std::mem::take(&mut *lock(&self.flow.at_once));
        if batch.is_empty() || self.takes_no_work() {
            return;
        }
        let (store, worker) = (self.store_arc(), self.worker());
        let filter = self.claim_filter.clone();
        let tasks: Vec<(WorkId, String)> = (batch.iter())
            .map(|(id, task, _)| (*id, task.activity.clone()))
            .collect();
        let taken = tokio::task::spawn_blocking(move || {
            let tasks: Vec<(WorkId, &str)> = (tasks.iter())
                .map(|(id, activity)| (*id, activity.as_str()))
                .collect();
            store.claim_tasks(worker, &tasks, &filter)
        })
        .await;
        // Not taken (a lease that lapsed meanwhile, a store that failed): a claim takes
        // them.
        let Ok(Ok(taken)) = taken else {
            return;
        };
        if taken.is_empty() {
            return;
        }
        let taken: HashSet<WorkId> = taken.into_iter().collect();
        for (id, mut task, trace) in batch {
            if taken.contains(&id) {
                self.note_claimed(id, &task.activity);
                // Stored with one attempt less, as a task that never executed: this is
                // the attempt a claim would have counted.
                task.attempt = task.attempt.saturating_add(1);
                crate::runtime::activities::run_claimed(&self, id, task, trace);
            }
        }
    }

    /// Records when the last claim said a rate window opens.
    pub(in crate::runtime) fn set_claim_retry(&self, after: Option<Duration>) {
        if self.flow.limited {
            *lock(&self.flow.retry_after) = after;
        }
    }

    /// When a rate window opens for tasks waiting, as the last claim said.
    pub(in crate::runtime) fn claim_retry(&self) -> Option<Duration> {
        if !self.flow.limited {
            return None;
        }
        *lock(&self.flow.retry_after)
    }

    // The activity slots.

    /// Queues an activity for a slot: after those of its priority or higher.
    pub(in crate::runtime) fn queue_activity(&self, activity: QueuedActivity) {
        let priority = if self.flow.priorities.is_empty() {
            0
        } else {
            (self.flow.priorities.get(&activity.task.activity)).map_or(0, |p| *p)
        };
        let mut slots = lock(&self.activities);
        match slots.waiting.back() {
            Some((last, _)) if *last < priority => {
                let at = (slots.waiting.iter()).position(|(p, _)| *p < priority);
                let at = at.unwrap_or(slots.waiting.len());
                slots.waiting.insert(at, (priority, activity));
            }
            _ => slots.waiting.push_back((priority, activity)),
        }
        metrics::activity_queue_depth(slots.waiting.len());
    }

    /// The next activity waiting, its slot taken; `None` if no slot is free, none waits,
    /// or the runtime takes no work.
    pub(in crate::runtime) fn next_activity(&self) -> Option<QueuedActivity> {
        let mut slots = lock(&self.activities);
        if slots.free == 0 || self.takes_no_work() {
            return None;
        }
        let (_, next) = slots.waiting.pop_front()?;
        metrics::activity_queue_depth(slots.waiting.len());
        slots.free -= 1;
        Some(next)
    }

    /// An activity gave its slot back.
    pub(in crate::runtime) fn free_slot(&self) {
        lock(&self.activities).free += 1;
    }

    /// Takes every activity still waiting for a slot (at shutdown, or when the lease
    /// lapsed).
    pub(in crate::runtime) fn take_waiting_activities(&self) -> Vec<QueuedActivity> {
        metrics::activity_queue_depth(0);
        let waiting = std::mem::take(&mut lock(&self.activities).waiting);
        waiting.into_iter().map(|(_, activity)| activity).collect()
    }
}
