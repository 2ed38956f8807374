//! [`MemoryStore`]: a [`Store`] in memory, for tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::StoreError;
use crate::expected::check_expected;
use crate::keys;
use crate::lease::local::{ClaimReads, Leases, WorkSignal};
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{
    InstanceCursor, InstanceFilter, InstancePage, LIVE_STATUSES, StatusCounts, addressee,
    is_empty_entity, is_entity, page_of, zero_counts,
};
use crate::record::{Commit, Event, InstanceRecord, StatusKind, WorkId, WorkItem};
use crate::store::Store;

/// A [`Store`] kept in memory: fast, and gone when the last clone drops.
///
/// Meant for tests of code that uses a store; it refuses the same ids and keys as
/// [`crate::FjallStore`], so what passes here does not fail there for that reason. Like
/// it, it keeps an index by status (and creation time) and counters by status, of
/// orchestrations (not entities), so listings and counts read what they return.
///
/// # Examples
///
/// ```
/// use durable_store::{MemoryStore, Store};
///
/// let store = MemoryStore::default();
/// assert!(store.instances()?.is_empty());
/// # Ok::<(), durable_store::StoreError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    signal: Arc<WorkSignal>,
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, InstanceRecord>,
    history: BTreeMap<String, BTreeMap<u32, Event>>,
    work: BTreeMap<WorkId, WorkItem>,
    progress: BTreeMap<String, Vec<u8>>,
    /// Every orchestration instance (not the entities) by status, then creation time,
    /// then id.
    by_status: BTreeSet<(StatusKind, u64, String)>,
    counts: StatusCounts,
    leases: Leases,
    /// The first work id not yet reserved.
    next_work_id: WorkId,
}

impl State {
    /// Whether instance `id` has finished or does not exist.
    fn finished(&self, id: &str) -> bool {
        self.instances
            .get(id)
            .is_none_or(|record| record.status.is_terminal())
    }

    /// Checks that every history append of `commits` starts where the history ends (after
    /// the removals and appends of the commits before it).
    fn check_appends(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let mut lengths: HashMap<&str, u32> = HashMap::new();
        for commit in commits {
            for (id, _) in &commit.histories_removed {
                lengths.insert(id, 0);
            }
            for append in &commit.history {
                let id = append.instance.as_str();
                let stored = *lengths.entry(id).or_insert_with(|| {
                    self.history
                        .get(id)
                        .map_or(0, |history| history.len() as u32)
                });
                if append.first != stored {
                    return Err(StoreError::HistoryConflict {
                        instance: id.to_owned(),
                        first: append.first,
                        stored,
                    });
                }
                lengths.insert(id, stored.saturating_add(append.events.len() as u32));
            }
        }
        Ok(())
    }

    /// Removes instance `id` from the index and the counters.
    fn unindex(&mut self, id: &str) {
        if let Some(old) = self.instances.get(id).filter(|old| !is_entity(old)) {
            let (kind, created) = (old.status.kind(), old.created_ms);
            self.by_status.remove(&(kind, created, id.to_owned()));
            if let Some(count) = self.counts.get_mut(&kind) {
                *count -= 1;
            }
        }
    }

    /// Adds instance `id` with `record` to the index and the counters, unless it is an
    /// entity's (which orchestrations' listings and counts leave out).
    fn index(&mut self, id: &str, record: &InstanceRecord) {
        if is_entity(record) {
            return;
        }
        let kind = record.status.kind();
        self.by_status
            .insert((kind, record.created_ms, id.to_owned()));
        *self.counts.entry(kind).or_default() += 1;
    }

    /// Up to `max` instances `filter` matches after `after`, in creation order.
    fn scan(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        max: usize,
    ) -> Vec<(InstanceCursor, InstanceRecord)> {
        let mut found = Vec::new();
        for kind in filter.status_kinds() {
            let created_from = filter.created_from_ms.unwrap_or(0);
            let start = match after {
                Some(after) if after.created_ms >= created_from => {
                    Bound::Excluded((kind, after.created_ms, after.id.clone()))
                }
                _ => Bound::Included((kind, created_from, String::new())),
            };
            let matching = self
                .by_status
                .range((start, Bound::Unbounded))
                .take_while(|(k, created, _)| {
                    *k == kind && filter.created_before_ms.is_none_or(|t| *created < t)
                })
                .filter_map(|(_, created, id)| {
                    let record = &self.instances[id];
                    filter.matches(record).then(|| {
                        let cursor = InstanceCursor {
                            created_ms: *created,
                            id: id.clone(),
                        };
                        (cursor, record.clone())
                    })
                })
                .take(max);
            found.extend(matching);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(max);
        found
    }
}

/// What a claim reads: the maps of [`State`] beside its lease table.
struct Reads<'a> {
    instances: &'a BTreeMap<String, InstanceRecord>,
    work: &'a BTreeMap<WorkId, WorkItem>,
    by_status: &'a BTreeSet<(StatusKind, u64, String)>,
}

impl ClaimReads for Reads<'_> {
    fn all_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        Ok((self.work.iter())
            .map(|(id, item)| (*id, item.clone()))
            .collect())
    }

    fn item(&self, id: WorkId) -> Result<Option<WorkItem>, StoreError> {
        Ok(self.work.get(&id).cloned())
    }

    fn stalled(&self) -> Result<Vec<String>, StoreError> {
        Ok((self
            .by_status
            .range((StatusKind::Stalled, 0, String::new())..))
        .take_while(|(kind, _, _)| *kind == StatusKind::Stalled)
        .map(|(_, _, id)| id.clone())
        .collect())
    }

    fn running(&self, orchestrator: &str) -> Result<Vec<String>, StoreError> {
        Ok((self.instances.iter())
            .filter(|(_, record)| {
                record.orchestrator == orchestrator
                    && crate::lease::counts_as_running(record.status.kind())
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.instances.get(id).cloned())
    }
}

impl MemoryStore {
    /// A new, empty store (the same as [`MemoryStore::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A commit is checked before it changes anything, so a panic elsewhere while the lock
        // was held cannot have left the maps half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        keys::check(commits)?;
        let mut state = self.state();
        // The lease first: a worker that lost it learns that, not what changed since.
        state.leases.check(commits, |id| state.finished(id))?;
        state.check_appends(commits)?;
        check_expected(
            commits,
            |id| Ok(state.instances.contains_key(id)),
            |id| Ok(state.instances.get(id).map(|record| record.incarnation)),
        )?;
        for commit in commits {
            for (id, _) in &commit.histories_removed {
                state.history.remove(id);
            }
            for id in &commit.instances_removed {
                state.unindex(id);
                state.instances.remove(id);
            }
            for (id, record) in &commit.instances {
                state.unindex(id);
                state.index(id, record);
                state.instances.insert(id.clone(), record.clone());
            }
            for append in &commit.history {
                let history = state.history.entry(append.instance.clone()).or_default();
                for (index, event) in (append.first..=u32::MAX).zip(&append.events) {
                    history.insert(index, event.clone());
                }
            }
            for work_id in &commit.dequeued {
                state.work.remove(work_id);
            }
            for (work_id, item) in &commit.enqueued {
                state.work.insert(*work_id, item.clone());
            }
            for (key, value) in &commit.progress {
                match value {
                    Some(value) => state.progress.insert(key.clone(), value.clone()),
                    None => state.progress.remove(key),
                };
            }
        }
        if state.leases.written(commits) {
            drop(state);
            self.signal.wake();
        }
        Ok(())
    }

    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.state().instances.get(id).cloned())
    }

    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let state = self.state();
        Ok(state
            .instances
            .iter()
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect())
    }

    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        let limit = limit.max(1);
        let found = self.state().scan(filter, after, limit.saturating_add(1));
        Ok(page_of(found, limit))
    }

    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let state = self.state();
        Ok((state.instances.range((start, Bound::Unbounded)))
            .take_while(|(id, _)| id.starts_with(prefix))
            .take(limit)
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect())
    }

    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut state = self.state();
        let addressed: BTreeSet<&str> = state.work.values().map(addressee).collect();
        let idle: Vec<String> = (ids.iter())
            .filter(|id| {
                state.instances.get(*id).is_some_and(is_empty_entity)
                    && state.leases.instance_holder(id).is_none()
                    && !addressed.contains(id.as_str())
            })
            .cloned()
            .collect();
        for id in &idle {
            state.unindex(id);
            state.instances.remove(id);
        }
        Ok(idle)
    }

    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        let mut counts = zero_counts();
        counts.extend(self.state().counts.iter().map(|(k, n)| (*k, *n)));
        Ok(counts)
    }

    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let live = InstanceFilter {
            statuses: LIVE_STATUSES.to_vec(),
            ..InstanceFilter::default()
        };
        let found = self.state().scan(&live, None, usize::MAX);
        Ok(found
            .into_iter()
            .map(|(cursor, record)| (cursor.id, record))
            .collect())
    }

    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        Ok(state
            .history
            .get(id)
            .map(|history| history.values().cloned().collect())
            .unwrap_or_default())
    }

    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        let state = self.state();
        Ok(state
            .work
            .iter()
            .map(|(id, item)| (*id, item.clone()))
            .collect())
    }

    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state().progress.get(key).cloned())
    }

    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        Ok(self.state().leases.join(lease))
    }

    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.state().leases.renew(worker, lease)
    }

    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        self.state().leases.leave(worker);
        self.signal.wake();
        Ok(())
    }

    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        let mut state = self.state();
        let State {
            instances,
            work,
            by_status,
            leases,
            ..
        } = &mut *state;
        let reads = Reads {
            instances,
            work,
            by_status,
        };
        leases.claim(worker, filter, &reads)
    }

    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        self.state().leases.claim_tasks(worker, tasks, filter)
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        let mut state = self.state();
        let above = state.work.keys().next_back().map_or(0, |id| id + 1);
        let first = state.next_work_id.max(above);
        state.next_work_id = first.saturating_add(count);
        Ok(first)
    }

    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.signal.wait(timeout);
        Ok(())
    }
}
