//! What this worker holds: the live instances whose turns run here (messages for any
//! other instance stay in the store for its holder), as its commits and claims made it
//! hold them, and the commits under way that will make it hold more; how a commit is
//! written under the worker's lease.
//!
//! The store makes the worker hold what a commit writes as it writes it; the worker
//! records it once it learns the commit is durable. Its own claim may come in between and
//! take, for an instance it holds in the store but not yet here, the messages others sent
//! it: those wait for the commit (see [`Engine::held_or_written`]), rather than be dropped
//! and stay in the store held by the worker, run by no one while it lives.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use durable_store::{Commit, CommitLease, Status, StatusKind, WorkId, WorkItem, WorkerId};
use tokio::sync::Notify;

use super::super::entities;
use super::super::inbox::Outgoing;
use super::{Engine, lock};
use crate::error::Error;

/// The instances this worker holds, and those its commits under way write.
#[derive(Debug, Default)]
pub(in crate::runtime) struct Holdings {
    held: Mutex<Held>,
    /// Told when a commit under way is durable (and what it wrote is held) or refused.
    written: Notify,
}

/// See [`Holdings`].
#[derive(Debug, Default)]
struct Held {
    /// The live instances held, with the status each had as this worker last wrote it.
    statuses: HashMap<String, StatusKind>,
    /// The instances not held here that commits submitted and not yet known durable
    /// write (and will make this worker hold), with how many such commits write each:
    /// those they create, mostly.
    ///
    /// The store makes the worker hold what a commit writes as it writes it, and the
    /// worker's own claim may find it so before the commit's sender learns the commit is
    /// durable: the claim then takes the messages other workers sent the instance
    /// (`Holding::Held`), which nothing else will deliver while the worker lives. Such a
    /// claim's deliveries wait for those commits (see [`Engine::held_or_written`]).
    writing: HashMap<String, usize>,
    /// The messages this worker's commits left in the store for a claim, by instance,
    /// until its claim delivers them here (or they are another worker's to deliver: see
    /// [`Engine::forget_left_elsewhere`]). While an instance has any, what this worker
    /// sends it later is left for the claim too, even once it holds the instance:
    /// delivered in memory at once, it would run before them, and one sender's messages
    /// run in the order sent (a client's `signal_entity`, as in Durable Functions). A
    /// message is left so when its instance is not held here as it is committed, and
    /// this worker may come to hold it before its claim takes the message: the commit
    /// that creates the instance (another sender's here) is durable but not yet known to
    /// be, or a claim took the instance and has not told the engine yet.
    left: HashMap<String, HashSet<WorkId>>,
    /// The claims' deliveries that wait for commits under way (see
    /// [`Engine::held_or_written`]), by instance, in the order claimed. While an instance
    /// has any, what a later claim takes for it queues behind them, even once it is held:
    /// delivered at once, it would run before them.
    deferred: HashMap<String, Vec<Outgoing>>,
    /// The instances a claim took over whose messages it has not delivered yet (its
    /// commit is under way): what this worker sends them meanwhile is left for the next
    /// claim, as behind [`left`](Self::left), whose entries for them were forgotten while
    /// they were another worker's. Until the claim delivers their messages, or the next.
    /// (A recovery suspect's messages, which `runtime/recovery.rs` delivers later, one
    /// suspect at a time, are not covered: a message sent it after the next claim may
    /// still run before them.)
    taking: HashSet<String>,
}

impl Holdings {
    /// Drops every instance held (the lease lapsed). The commits under way stay counted
    /// until each is known durable or refused.
    pub(super) fn clear(&self) {
        let mut held = lock(&self.held);
        held.statuses.clear();
        // What they held back is the next lease's claim's to deliver, in id order.
        held.left.clear();
        held.deferred.clear();
        held.taking.clear();
    }
}

impl Held {
    /// Whether a commit under way writes `instance`.
    fn writes(&self, instance: &str) -> bool {
        self.writing.contains_key(instance)
    }

    /// Message `id` for `instance`, left in the store, is delivered here (or will never
    /// be): it holds back nothing any more.
    fn delivered(&mut self, instance: &str, id: WorkId) {
        if let Some(ids) = self.left.get_mut(instance) {
            ids.remove(&id);
            if ids.is_empty() {
                self.left.remove(instance);
            }
        }
    }
}

/// The instances a submitted commit writes, counted in [`Held::writing`] until the
/// commit is known durable or refused, or its sender stops waiting for it: then dropped,
/// and the claim's deliveries waiting for them are told.
struct Writing {
    holdings: Arc<Holdings>,
    instances: Vec<String>,
    /// The instances the commit releases that were held here as it was submitted: this
    /// worker lets them go once it is durable (see [`hold_written`]).
    let_go: Vec<String>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.instances.is_empty() {
            return;
        }
        {
            let mut held = lock(&self.holdings.held);
            for instance in &self.instances {
                if let Some(count) = held.writing.get_mut(instance) {
                    *count -= 1;
                    if *count == 0 {
                        held.writing.remove(instance);
                    }
                }
            }
        }
        self.holdings.written.notify_waiters();
    }
}

/// Records in `held` what `commit`, written, makes this worker hold: the instances it
/// wrote (but those it released), with their status, until they finish or are removed.
///
/// Of the instances it released, only those in `let_go` (held here when it was submitted)
/// are dropped. The others were not held here, and this worker's own claim may have
/// taken one since the store wrote the commit (a limited orchestrator's instance that the
/// claim started) before the sender learns it is durable: it stays as the claim made it
/// held. Dropped, the instance would run here unheld: its activity results would be
/// stored as messages, which its claim (finding it held in the store) would take and not
/// deliver, and it would wait for them as long as the worker lives.
fn hold_written(held: &mut HashMap<String, StatusKind>, commit: &Commit, let_go: &[String]) {
    for id in &commit.instances_removed {
        held.remove(id);
    }
    let released = commit
        .lease
        .as_ref()
        .map_or(&[][..], |lease| &lease.released);
    for (id, record) in &commit.instances {
        let status = record.status.kind();
        if released.contains(id) {
            if let_go.contains(id) {
                held.remove(id);
            }
        } else if status.is_terminal() {
            held.remove(id);
        } else if let Some(held) = held.get_mut(id) {
            *held = status;
        } else {
            held.insert(id.clone(), status);
        }
    }
}

impl Engine {
    /// Whether this worker holds `instance`.
    pub(crate) fn holds(&self, instance: &str) -> bool {
        lock(&self.holdings.held).statuses.contains_key(instance)
    }

    /// Whether `instance` is held here and neither finished nor stalled, as this worker
    /// last wrote it: when it finishes or stalls, it does so here and wakes its watchers
    /// ([`Engine::watch`]), as does another worker taking it over.
    pub(crate) fn runs_here(&self, instance: &str) -> bool {
        let held = lock(&self.holdings.held);
        held.statuses.get(instance).is_some_and(|status| {
            matches!(
                status,
                StatusKind::Pending
                    | StatusKind::Running
                    | StatusKind::Suspended
                    | StatusKind::DeadLettered
            )
        })
    }

    /// Queues every one of `deliveries`, what a claim took, before any turn task starts on
    /// them, so each instance's first turn sees all of its events (recovery hands out
    /// many at once); those of instances held here once written, once they are (see
    /// [`held_or_written`](Self::held_or_written)).
    pub(in crate::runtime) fn deliver_all(self: &Arc<Self>, deliveries: Vec<Outgoing>) {
        let mut held = lock(&self.holdings.held);
        let deliveries = self.held_or_written(&mut held, deliveries);
        self.queue_claimed(held, deliveries);
    }

    /// Queues `deliveries`, of instances held here, under the lock of what is held
    /// (`held`): a sender that no longer finds them left (see `Held::left`) delivers its
    /// message after them.
    fn queue_claimed(self: &Arc<Self>, mut held: MutexGuard<'_, Held>, deliveries: Vec<Outgoing>) {
        let worker = self.worker();
        for outgoing in &deliveries {
            held.delivered(&outgoing.instance, outgoing.delivery.id);
            held.taking.remove(&outgoing.instance);
        }
        let idle = self.inboxes.push_all(deliveries, worker);
        drop(held);
        for instance in idle {
            self.spawn_turns(instance);
        }
    }

    /// Forgets the messages this worker left in the store for instances it neither
    /// holds nor writes: those are for another worker's claim, and hold back nothing
    /// here; and the instances the last claim took over (see [`Held::taking`]), whose
    /// messages its take-over delivered. Called by the claim loop between claims (never
    /// while a claim's take-over holds an instance whose messages it has not delivered
    /// yet).
    pub(in crate::runtime) fn forget_left_elsewhere(&self) {
        let mut held = lock(&self.holdings.held);
        let Held {
            statuses,
            writing,
            left,
            taking,
            ..
        } = &mut *held;
        // The take-over before delivered what it took.
        taking.clear();
        left.retain(|instance, _| {
            statuses.contains_key(instance) || writing.contains_key(instance)
        });
    }

    /// The deliveries of `claimed` (what a claim took) for instances held here, to
    /// deliver now. Those for an instance a commit under way writes wait for it (see
    /// [`Held::writing`]), as do those for an instance whose earlier deliveries wait
    /// (see [`Held::deferred`]): a task delivers them, in the order claimed, once no
    /// commit under way writes it, if it is held here then, and drops them if it is not.
    /// The others are dropped: their instance is not held here.
    fn held_or_written(self: &Arc<Self>, held: &mut Held, claimed: Vec<Outgoing>) -> Vec<Outgoing> {
        let mut now = Vec::with_capacity(claimed.len());
        let mut waiting = Vec::new();
        for outgoing in claimed {
            let instance = &outgoing.instance;
            if let Some(deferred) = held.deferred.get_mut(instance) {
                deferred.push(outgoing);
            } else if held.statuses.contains_key(instance) {
                now.push(outgoing);
            } else if held.writes(instance) {
                waiting.push(instance.clone());
                held.deferred.insert(instance.clone(), vec![outgoing]);
            } else {
                held.delivered(instance, outgoing.delivery.id);
            }
        }
        if !waiting.is_empty() {
            let (engine, busy) = (self.clone(), self.busy());
            self.spawn_boxed(async move {
                let _busy = busy;
                engine.once_written(&waiting).await;
                let mut held = lock(&engine.holdings.held);
                let deliveries = (waiting.iter())
                    .filter_map(|instance| held.deferred.remove(instance))
                    .flatten()
                    .collect();
                let deliveries = engine.held_or_written(&mut held, deliveries);
                engine.queue_claimed(held, deliveries);
            });
        }
        now
    }

    /// Resolves once no commit under way writes any of `instances`.
    async fn once_written(&self, instances: &[String]) {
        loop {
            // Before the check, so that a commit known durable in between is not missed.
            let written = self.holdings.written.notified();
            let writing = {
                let held = lock(&self.holdings.held);
                instances.iter().any(|instance| held.writes(instance))
            };
            if !writing {
                return;
            }
            written.await;
        }
    }

    /// This worker now holds `instance`, found with `status` (it claimed it).
    pub(in crate::runtime) fn hold(&self, instance: &str, status: StatusKind) {
        let mut held = lock(&self.holdings.held);
        held.statuses.insert(instance.to_string(), status);
        held.taking.insert(instance.to_string());
    }

    /// This worker no longer holds `instance` (another took it over); its watchers read
    /// its state from the store from now on.
    pub(in crate::runtime) fn let_go(&self, instance: &str) {
        lock(&self.holdings.held).statuses.remove(instance);
        self.forget(instance);
        self.wake_waiters(instance, None);
    }

    /// `commit` under this worker's lease: the instances it writes are held from now on
    /// (until they finish); the messages it enqueues for instances this worker does not
    /// hold are left for their holder to claim, and the tasks of activities it does not
    /// have (on a shared store) for a worker that has them. Counts the instances not held
    /// here that it writes as being written until the returned [`Writing`] drops.
    fn leased(&self, mut commit: Commit, worker: WorkerId) -> (Commit, Writing) {
        if self.tool {
            // A tool writes under no lease: what it enqueues is left for a worker's claim
            // (on fjall, the application's when it next starts), and it holds nothing.
            commit.lease = None;
            let writing = Writing {
                holdings: self.holdings.clone(),
                instances: Vec::new(),
                let_go: Vec::new(),
            };
            return (commit, writing);
        }
        self.forget_claimed(&commit.dequeued);
        self.store_limited_unstarted(&mut commit);
        let mut held = lock(&self.holdings.held);
        // On a shared store, the instances it starts (pending, their `Started` message
        // in the commit) of an orchestrator this worker does not have (a
        // sub-orchestration, in a rolling deploy) are left for a worker that has it. One
        // that already ran stays with the worker that claimed it.
        // So are those it starts of an orchestrator with a limit on its running instances
        // (`flow.rs`): a claim starts them as the limit allows.
        let shared = self.store.is_shared();
        let released: Vec<String> = commit
            .instances
            .iter()
            .filter(|(id, record)| {
                let lacked = || {
                    shared
                        && self
                            .registry
                            .orchestrator(&record.orchestrator, record.version)
                            .is_none()
                        && !entities::is_registered(&self.registry, id, record)
                };
                let limited = || {
                    self.limits_orchestrator(&record.orchestrator)
                        && !held.statuses.contains_key(id.as_str())
                };
                matches!(record.status, Status::Pending) && (lacked() || limited())
            })
            .map(|(id, _)| id.clone())
            .collect();
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
                // Behind the messages left for a claim before it, if any (see `Held::left`).
                WorkItem::Message { instance, .. }
                    if (!held.statuses.contains_key(instance) && !written(instance))
                        || held.left.contains_key(instance)
                        || held.taking.contains(instance) =>
                {
                    left.push((*id, instance));
                    Some(*id)
                }
                WorkItem::Activity(task) if self.leaves_task(*id, &task.activity) => Some(*id),
                _ => None,
            })
            .collect();
        let writing: Vec<String> = (commit.instances.iter())
            .filter(|(id, _)| written(id) && !held.statuses.contains_key(id))
            .map(|(id, _)| id.clone())
            .collect();
        for instance in &writing {
            *held.writing.entry(instance.clone()).or_default() += 1;
        }
        let let_go: Vec<String> = (released.iter())
            .filter(|id| held.statuses.contains_key(id.as_str()))
            .cloned()
            .collect();
        for (id, instance) in &left {
            held.left
                .entry((*instance).clone())
                .or_default()
                .insert(*id);
        }
        drop(held);
        // This worker may claim their instance before the commit is durable: the claim
        // then delivers them, and the sender must not deliver them a second time.
        lock(&self.left).extend(left.into_iter().map(|(id, _)| id));
        commit.lease = Some(CommitLease {
            worker,
            unclaimed,
            released,
        });
        let writing = Writing {
            holdings: self.holdings.clone(),
            instances: writing,
            let_go,
        };
        (commit, writing)
    }

    /// Queues `commit` for the next batch at once, under the lease in hand
    /// ([`lease_in_hand`](Self::lease_in_hand): a turn's commit under the lease the turn
    /// was computed under); the future resolves once it is durable, with the commit
    /// handed back (see
    /// [`GroupCommit::submit`](super::super::group_commit::GroupCommit::submit)). Once it
    /// is, this worker holds the instances it wrote, unless that lease lapsed meanwhile.
    pub(in crate::runtime) fn submit(
        &self,
        commit: Commit,
    ) -> impl Future<Output = (Result<(), Error>, Commit)> + Send + use<> {
        let (commit, writing) = self.leased(commit, self.lease_in_hand());
        let written = self.commits.submit(commit);
        let (lease, left, tool) = (self.worker.clone(), self.left.clone(), self.tool);
        async move {
            // Dropped once what the commit wrote is held (or it was refused), or with this
            // future if its sender stops waiting: the claims' deliveries waiting for it go.
            let writing = writing;
            let (result, commit) = written.await;
            let touches = !commit.instances.is_empty() || !commit.instances_removed.is_empty();
            match (&result, &commit.lease) {
                (Ok(()), Some(written)) if touches => {
                    // Under the lease's lock: a lapse clears what is held, and no commit
                    // of the old lease adds to it after that.
                    let current = lease.current.borrow();
                    if *current == written.worker {
                        let mut held = lock(&writing.holdings.held);
                        hold_written(&mut held.statuses, &commit, &writing.let_go);
                    }
                }
                (Ok(()), None) if touches && !tool => {
                    hold_written(&mut lock(&writing.holdings.held).statuses, &commit, &[]);
                }
                (Ok(()), _) => {}
                // Not written: the sender delivers none of them.
                (Err(_), Some(lease)) => {
                    let mut left = lock(&left);
                    for id in &lease.unclaimed {
                        left.remove(id);
                    }
                    drop(left);
                    let mut held = lock(&writing.holdings.held);
                    for (id, item) in &commit.enqueued {
                        if let WorkItem::Message { instance, .. } = item {
                            held.delivered(instance, *id);
                        }
                    }
                }
                (Err(_), None) => {}
            }
            (result, commit)
        }
    }
}

#[cfg(test)]
mod tests;
