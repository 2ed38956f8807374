//! [`MemoryStore`]: a [`Store`] in memory, for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::StoreError;
use crate::keys;
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};
use crate::store::Store;

/// A [`Store`] kept in memory: fast, and gone when the last clone drops.
///
/// Meant for tests of code that uses a store; it refuses the same ids and keys as
/// [`crate::FjallStore`], so what passes here does not fail there for that reason.
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
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, InstanceRecord>,
    history: BTreeMap<String, BTreeMap<u32, Event>>,
    work: BTreeMap<WorkId, WorkItem>,
    progress: BTreeMap<String, Vec<u8>>,
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
        for commit in commits {
            for (id, _) in &commit.histories_removed {
                state.history.remove(id);
            }
            for id in &commit.instances_removed {
                state.instances.remove(id);
            }
            for (id, record) in &commit.instances {
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
}
