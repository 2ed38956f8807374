//! How [`FjallStore`] writes a call to `commit`: its commits as one fjall batch.

use std::ops::Range;
use std::sync::MutexGuard;

use fjall::{Keyspace, PersistMode, Slice};
use serde::Serialize;

use super::index::{Changes, Entry, count_key, slot};
use super::work::{MetaWrite, WorkIds};
use super::{FjallStore, Live, decode};
use crate::error::{StoreError, cause};
use crate::expected::check_expected;
use crate::hash::FnvMap;
use crate::keys;
use crate::query::{addressee, is_empty_entity};
use crate::record::{Commit, InstanceRecord, StatusKind, WorkItem};
use crate::store::{Durability, Store};

/// The keyspace a write goes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Meta,
    Instances,
    History,
    Work,
    Progress,
    ByStatus,
    ByOrchestrator,
}

/// What a write does to its key.
enum Op<V> {
    /// Writes the value.
    Put(V),
    /// Removes the key.
    Remove,
    /// Removes a key written once since it was last removed, with a tombstone that
    /// vanishes with that write (see the `index` module).
    RemoveWeak,
}

/// The writes of one call to `commit`, in order, with their values encoded back to back
/// in one buffer (one allocation per call, not one per value).
#[derive(Default)]
struct Writes {
    /// Keyspace, key, and what to do to it (a value as its range in `values`).
    writes: Vec<(Space, Slice, Op<Range<usize>>)>,
    values: Vec<u8>,
}

impl Writes {
    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) {
        let start = self.values.len();
        self.values.extend_from_slice(value);
        self.writes
            .push((space, Slice::from(key), Op::Put(start..self.values.len())));
    }

    fn encode<T: Serialize>(
        &mut self,
        space: Space,
        key: &[u8],
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        let start = self.values.len();
        self.values =
            postcard::to_extend(value, std::mem::take(&mut self.values)).map_err(|e| {
                StoreError::Io {
                    detail: format!("cannot encode {}: {e}", what()),
                    source: cause(e),
                }
            })?;
        self.writes
            .push((space, Slice::from(key), Op::Put(start..self.values.len())));
        Ok(())
    }

    fn remove(&mut self, space: Space, key: &[u8]) {
        self.writes.push((space, Slice::from(key), Op::Remove));
    }

    fn remove_weak(&mut self, space: Space, key: &[u8]) {
        self.writes.push((space, Slice::from(key), Op::RemoveWeak));
    }

    /// The last write of each key, in order. Every write of a batch gets the same sequence
    /// number in fjall, so two writes of one key in one batch would not say which is
    /// newer: only the last one is kept. (Keys rarely repeat in a batch; finding out costs
    /// a hash per key, far less than sorting them.)
    fn into_last_writes(self) -> impl Iterator<Item = (Space, Slice, Op<Slice>)> {
        let Writes { writes, values } = self;
        let keep = {
            let mut last = FnvMap::with_capacity_and_hasher(writes.len(), Default::default());
            for (i, (space, key, _)) in writes.iter().enumerate() {
                last.insert((*space, &**key), i);
            }
            (last.len() < writes.len()).then(|| {
                let mut keep = vec![false; writes.len()];
                for i in last.into_values() {
                    keep[i] = true;
                }
                keep
            })
        };
        writes
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| keep.as_ref().is_none_or(|keep| keep[*i]))
            .map(move |(_, (space, key, op))| {
                let op = match op {
                    Op::Put(range) => Op::Put(Slice::from(&values[range])),
                    Op::Remove => Op::Remove,
                    Op::RemoveWeak => Op::RemoveWeak,
                };
                (space, key, op)
            })
    }
}

impl FjallStore {
    /// Writes `commits` as one fjall batch: the body of
    /// [`Store::commit`](crate::store::Store::commit).
    pub(super) fn write(&self, commits: &[Commit]) -> Result<(), StoreError> {
        if commits.iter().all(Commit::is_empty) {
            return Ok(());
        }
        let writes = Self::writes_of(commits)?;
        // Held from the reads below to the commit, so no other commit writes in between.
        let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.write_locked(commits, writes, writer)
    }

    /// The body of [`Store::remove_idle_entities`]: the checks and the removal under the
    /// writer lock, so no commit comes between them. Reads the whole work queue.
    pub(super) fn remove_idle(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidates = Vec::new();
        for id in ids {
            if self
                .instance(id)?
                .is_some_and(|record| is_empty_entity(&record))
            {
                candidates.push(id.as_str());
            }
        }
        {
            let leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            candidates.retain(|id| leases.instance_holder(id).is_none());
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        for guard in self.inner.work.iter() {
            let value = guard.value().map_err(self.io("reading"))?;
            let item: WorkItem = decode(&value, || "a work item (keyspace `work`)".to_owned())?;
            candidates.retain(|id| *id != addressee(&item));
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
        }
        let idle: Vec<String> = candidates.into_iter().map(str::to_owned).collect();
        let commits = [Commit {
            instances_removed: idle.clone(),
            ..Commit::default()
        }];
        let writes = Self::writes_of(&commits)?;
        self.write_locked(&commits, writes, writer)?;
        Ok(idle)
    }

    /// The record writes of `commits`, before the index writes that depend on what is
    /// stored.
    fn writes_of(commits: &[Commit]) -> Result<Writes, StoreError> {
        keys::check(commits)?;
        let mut writes = Writes::default();
        for commit in commits {
            for (id, len) in &commit.histories_removed {
                for index in 0..*len {
                    writes.remove(Space::History, &keys::history_key(id, index));
                }
            }
            for id in &commit.instances_removed {
                writes.remove(Space::Instances, id.as_bytes());
            }
            for (id, record) in &commit.instances {
                writes.encode(Space::Instances, id.as_bytes(), record, || {
                    format!("instance record `{id}`")
                })?;
            }
            for append in &commit.history {
                let id = &append.instance;
                // The keys of `keys::history_key`, built in one buffer.
                let mut key = keys::history_prefix(id);
                let prefix = key.len();
                for (index, event) in (append.first..=u32::MAX).zip(&append.events) {
                    key.truncate(prefix);
                    key.extend_from_slice(&index.to_be_bytes());
                    writes.encode(Space::History, &key, event, || {
                        format!("event #{index} of `{id}`")
                    })?;
                }
            }
            for work_id in &commit.dequeued {
                writes.remove(Space::Work, &work_id.to_be_bytes());
            }
            for (work_id, item) in &commit.enqueued {
                writes.encode(Space::Work, &work_id.to_be_bytes(), item, || {
                    format!("work item {work_id}")
                })?;
            }
            for (key, value) in &commit.progress {
                match value {
                    Some(value) => writes.put(Space::Progress, key.as_bytes(), value),
                    None => writes.remove(Space::Progress, key.as_bytes()),
                }
            }
        }
        Ok(writes)
    }

    /// Checks `commits` against the store and writes them with `writes` (their record
    /// writes) as one batch, under `_writer`, the writer lock.
    fn write_locked(
        &self,
        commits: &[Commit],
        mut writes: Writes,
        _writer: MutexGuard<'_, ()>,
    ) -> Result<(), StoreError> {
        let mode = match self.inner.durability {
            Durability::Sync => PersistMode::SyncAll,
            // Flushed to the OS, so the commit survives a crash of this process.
            Durability::Buffered => PersistMode::Buffer,
        };
        check_expected(
            commits,
            |id| (self.inner.instances.contains_key(id)).map_err(self.io("reading")),
            |id| Ok(self.instance(id)?.map(|record| record.incarnation)),
        )?;
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.check(commits, |id| {
            // Read only for an instance another live worker holds: a commit that lost it.
            self.instance(id)
                .ok()
                .flatten()
                .is_none_or(|record| record.status.is_terminal())
        })?;
        // The lease first: a worker that lost it learns that, not what changed since.
        let lengths = self.check_appends(commits)?;
        let (counts, changes) = self.index_writes(commits, &mut writes)?;
        let work_ids = self.work_removals(&mut writes);
        let mut batch = self.inner.db.batch().durability(Some(mode));
        for (space, key, op) in writes.into_last_writes() {
            match op {
                Op::Put(value) => batch.insert(self.keyspace(space), key, value),
                // Every activity result removes its progress checkpoint, and almost none
                // has one: a tombstone for each would be written, synced and compacted
                // for nothing.
                Op::Remove
                    if space == Space::Progress
                        && !self
                            .inner
                            .progress
                            .contains_key(&key)
                            .map_err(self.io("reading"))? => {}
                Op::Remove => batch.remove(self.keyspace(space), key),
                Op::RemoveWeak => batch.remove_weak(self.keyspace(space), key),
            }
        }
        batch.commit().map_err(self.write_error("writing to"))?;
        if leases.written(commits) {
            self.inner.signal.wake();
        }
        drop(leases);
        if let Some(counts) = counts {
            *self.inner.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        }
        *self
            .inner
            .work_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = work_ids;
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        for (id, entry) in changes.after() {
            match (entry, live.get_mut(id)) {
                (Some(entry), Some(kept)) if entry.is_live() => kept.entry = entry,
                (Some(entry), None) if entry.is_live() => {
                    let history = None;
                    live.insert(id.to_owned(), Live { entry, history });
                }
                _ => {
                    live.remove(id);
                }
            }
        }
        // Every change to a history goes through `lengths`, so a kept length stays right.
        for (id, length) in lengths {
            if let Some(kept) = live.get_mut(id) {
                kept.history = Some(length);
            }
        }
        Ok(())
    }

    /// Makes the work removals of `writes` weak where that is safe and adds the writes to
    /// `meta` that keep track (see the `work` module); returns the state after the call.
    /// Runs under the writer lock.
    fn work_removals(&self, writes: &mut Writes) -> WorkIds {
        let id = |key: &Slice| <[u8; 8]>::try_from(&**key).map(u64::from_be_bytes).ok();
        let (weak, meta, next) = {
            let current = self
                .inner
                .work_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let work = writes.writes.iter().filter_map(|(space, key, op)| {
                let id = id(key).filter(|_| *space == Space::Work)?;
                Some((id, matches!(op, Op::Put(_))))
            });
            current.plan(work)
        };
        let mut weak = weak.into_iter();
        for (space, key, op) in &mut writes.writes {
            if *space == Space::Work
                && id(key).is_some()
                && !matches!(op, Op::Put(_))
                && weak.next() == Some(true)
            {
                *op = Op::RemoveWeak;
            }
        }
        for write in meta {
            match write {
                MetaWrite::Put(key, value) => writes.put(Space::Meta, &key, &value),
                MetaWrite::Remove(key) => writes.remove(Space::Meta, &key),
            }
        }
        next
    }

    /// Adds to `writes` the index entries and counters the instance writes and removals
    /// of `commits` change; returns the new counters if they change, and the changes. Reads the records
    /// the commits replace, so it runs under the writer lock.
    fn index_writes<'a>(
        &self,
        commits: &'a [Commit],
        writes: &mut Writes,
    ) -> Result<(Option<[u64; StatusKind::ALL.len()]>, Changes<'a>), StoreError> {
        let changes = {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            Changes::of(commits, |id| match live.get(id) {
                Some(kept) => Ok(Some(kept.entry)),
                None => self.stored_entry(id),
            })?
        };
        let mut counts = *self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        let before = counts;
        for (id, old, new) in changes.changed() {
            let status_key = |entry: Option<Entry>| entry.and_then(|e| e.status_key(id));
            let orchestrator_key =
                |entry: Option<Entry>| entry.and_then(|e| e.orchestrator_key(id));
            for (space, old_key, new_key) in [
                (Space::ByStatus, status_key(old), status_key(new)),
                (
                    Space::ByOrchestrator,
                    orchestrator_key(old),
                    orchestrator_key(new),
                ),
            ] {
                // A key kept is not written again: it stays written once (see `index`).
                if old_key == new_key {
                    continue;
                }
                if let Some(key) = old_key {
                    writes.remove_weak(space, &key);
                }
                if let Some(key) = new_key {
                    writes.put(space, &key, &[]);
                }
            }
            // An entity removed takes the live entry an older build gave it along.
            if new.is_none()
                && let Some(key) = old.and_then(|e| e.legacy_entity_key(id))
            {
                writes.remove_weak(Space::ByStatus, &key);
            }
            if let Some(kind) = old.and_then(|e| e.counted()) {
                let count = &mut counts[slot(kind)];
                *count = count.saturating_sub(1);
            }
            if let Some(kind) = new.and_then(|e| e.counted()) {
                counts[slot(kind)] += 1;
            }
        }
        if counts == before {
            return Ok((None, changes));
        }
        for kind in StatusKind::ALL {
            if counts[slot(kind)] != before[slot(kind)] {
                writes.put(
                    Space::Meta,
                    &count_key(kind),
                    &counts[slot(kind)].to_be_bytes(),
                );
            }
        }
        Ok((Some(counts), changes))
    }

    /// The index entry of the stored record of `id`, if there is one.
    fn stored_entry(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        let Some(bytes) = self.inner.instances.get(id).map_err(self.io("reading"))? else {
            return Ok(None);
        };
        let record: InstanceRecord = decode(&bytes, || {
            format!("instance record `{id}` (keyspace `instances`)")
        })?;
        Ok(Some(Entry::of(&record)))
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        match space {
            Space::Meta => &self.inner.meta,
            Space::Instances => &self.inner.instances,
            Space::History => &self.inner.history,
            Space::Work => &self.inner.work,
            Space::Progress => &self.inner.progress,
            Space::ByStatus => &self.inner.by_status,
            Space::ByOrchestrator => &self.inner.by_orchestrator,
        }
    }
}
