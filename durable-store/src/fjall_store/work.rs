//! Which removals of work items may be weak, so the work queue stays quick to scan.
//!
//! Every work item is written and removed once, so a store that ran a million instances
//! holds millions of removed work keys. A plain tombstone of each stays until compaction
//! carries it to fjall's last level, and [`Store::work_items`](crate::store::Store::work_items)
//! (what recovery reads at start) steps over every one. A weak tombstone vanishes with the
//! insert it cancels at the first flush or compaction that meets both; but it drains
//! every older version of its key it meets, so it is only safe for a key written exactly
//! once. The runtime may write a work id twice: it rewrites a task (its attempt counted
//! at recovery, or uncounted at shutdown), and after a restart it numbers new work from
//! the highest id still queued, reusing ids of work removed before.
//!
//! So the store keeps, in `meta`: the highest work id ever written (`work/highest`); each
//! id written again while it was at or below that (`work/rewritten/<id>`, until the item
//! is removed); and for a store migrated from format 2, whose earlier ids are unknown,
//! `work/strong-through` = `u64::MAX`. The removal of an id written once, above the
//! highest before it, is weak; every other removal is a plain one.

use std::collections::HashSet;

use fjall::Keyspace;

use crate::hash::FnvSet;
use crate::record::WorkId;

/// The key of the highest work id written, in `meta`.
const HIGHEST_KEY: &[u8] = b"work/highest";
/// The key below which every removal is plain, in `meta`.
pub(super) const STRONG_THROUGH_KEY: &[u8] = b"work/strong-through";
/// The prefix of the marks of ids written more than once, in `meta`.
const REWRITTEN_PREFIX: &[u8] = b"work/rewritten/";

/// What decides how a work id is removed; see the module docs.
#[derive(Clone, Debug, Default)]
pub(super) struct WorkIds {
    /// Ids at or below it are always removed plainly.
    strong_through: Option<WorkId>,
    /// The highest id written.
    highest: Option<WorkId>,
    /// Ids written more than once and not removed since.
    rewritten: FnvSet<WorkId>,
}

/// A change to `meta` that [`WorkIds::plan`] asks for.
pub(super) enum MetaWrite {
    /// Write `value` at `key`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Remove(Vec<u8>),
}

fn rewritten_key(id: WorkId) -> Vec<u8> {
    [REWRITTEN_PREFIX, &id.to_be_bytes()].concat()
}

fn read_id(bytes: &[u8]) -> Option<WorkId> {
    <[u8; 8]>::try_from(bytes).ok().map(WorkId::from_be_bytes)
}

impl WorkIds {
    /// Reads the state from `meta`.
    pub(super) fn load(meta: &Keyspace) -> fjall::Result<Self> {
        let get = |key: &[u8]| -> fjall::Result<Option<WorkId>> {
            Ok(meta.get(key)?.as_deref().and_then(read_id))
        };
        let mut rewritten = HashSet::default();
        for guard in meta.prefix(REWRITTEN_PREFIX) {
            let key = guard.key()?;
            if let Some(id) = read_id(&key[REWRITTEN_PREFIX.len()..]) {
                rewritten.insert(id);
            }
        }
        Ok(Self {
            strong_through: get(STRONG_THROUGH_KEY)?,
            highest: get(HIGHEST_KEY)?,
            rewritten,
        })
    }

    /// The highest work id written, if the store knows it (a store migrated from format
    /// 2 does not until it writes one).
    pub(super) fn highest(&self) -> Option<WorkId> {
        self.highest
    }

    /// Plans one call's work writes: `writes` gives, in order, each work id written
    /// (`true`) or removed (`false`). Returns, for each removal in that order, whether it
    /// may be weak; the writes to `meta`; and the state after the call.
    pub(super) fn plan(
        &self,
        writes: impl Iterator<Item = (WorkId, bool)>,
    ) -> (Vec<bool>, Vec<MetaWrite>, WorkIds) {
        let mut next = self.clone();
        let mut weak = Vec::new();
        let mut meta = Vec::new();
        for (id, written) in writes {
            let plain = self.strong_through.is_some_and(|through| id <= through);
            if written {
                let again = next.highest.is_some_and(|highest| id <= highest);
                if again && !plain && next.rewritten.insert(id) {
                    meta.push(MetaWrite::Put(rewritten_key(id), Vec::new()));
                }
                next.highest = next.highest.max(Some(id));
            } else {
                let marked = next.rewritten.remove(&id);
                if marked {
                    meta.push(MetaWrite::Remove(rewritten_key(id)));
                }
                // An id above the highest before the call was written in this call (or
                // never): the write and the removal meet in one batch, so fjall keeps
                // only the removal, with nothing for a weak one to cancel.
                let written_now = self.highest.is_none_or(|highest| id > highest);
                weak.push(!plain && !marked && !written_now);
            }
        }
        if next.highest != self.highest
            && let Some(highest) = next.highest
        {
            meta.push(MetaWrite::Put(
                HIGHEST_KEY.to_vec(),
                highest.to_be_bytes().to_vec(),
            ));
        }
        (weak, meta, next)
    }
}

#[cfg(test)]
mod tests {
    use crate::record::{Commit, Event, WorkItem};
    use crate::store::Store;

    use super::super::FjallStore;

    fn item(n: u64) -> WorkItem {
        WorkItem::Message {
            instance: format!("i{n}"),
            incarnation: 1,
            generation: None,
            event: Event::ResumeRequested,
        }
    }

    fn commit(store: &FjallStore, enqueued: &[u64], dequeued: &[u64]) {
        store
            .commit(&[Commit {
                enqueued: enqueued.iter().map(|&n| (n, item(n))).collect(),
                dequeued: dequeued.to_vec(),
                ..Commit::default()
            }])
            .unwrap();
    }

    fn settle(store: &FjallStore, step: u32) {
        match step % 3 {
            0 => store.inner.work.rotate_memtable_and_wait().unwrap(),
            1 => store.inner.work.major_compact().unwrap(),
            _ => {}
        }
    }

    /// Work ids written again (a task rewritten, an id reused after a reopen) are never
    /// brought back by a weak removal, whatever is flushed and compacted when.
    #[test]
    fn rewritten_and_reused_work_ids_stay_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u64> = (0..20).collect();
        for round in 0..4u32 {
            let store = FjallStore::open(dir.path()).unwrap();
            commit(&store, &ids, &[]);
            settle(&store, round);
            // Half rewritten in place, as recovery counts an attempt.
            commit(&store, &ids[..10], &[]);
            settle(&store, round + 1);
            commit(&store, &[], &ids);
            settle(&store, round + 2);
            assert_eq!(store.work_items().unwrap(), vec![], "round {round}");
            // Enqueued and dequeued in one call.
            let id = 100 + u64::from(round);
            let enqueue = Commit {
                enqueued: vec![(id, item(id))],
                ..Commit::default()
            };
            let dequeue = Commit {
                dequeued: vec![id],
                ..Commit::default()
            };
            store.commit(&[enqueue, dequeue]).unwrap();
            store.inner.work.rotate_memtable_and_wait().unwrap();
            store.inner.work.major_compact().unwrap();
            assert_eq!(store.work_items().unwrap(), vec![], "round {round}");
        }
        let store = FjallStore::open(dir.path()).unwrap();
        assert_eq!(store.work_items().unwrap(), vec![]);
        commit(&store, &[3], &[]);
        assert_eq!(store.work_items().unwrap(), vec![(3, item(3))]);
    }

    /// An id dequeued and written again in one call (an activity result stored as a
    /// message under its task's id), then dequeued, stays removed whatever is flushed
    /// and compacted in between, and across a reopen.
    #[test]
    fn an_id_dequeued_and_written_again_in_one_call_stays_removed() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..6u32 {
            let store = FjallStore::open(dir.path()).unwrap();
            let id = 10 * u64::from(round);
            commit(&store, &[id], &[]);
            settle(&store, round);
            commit(&store, &[id], &[id]);
            assert_eq!(store.work_items().unwrap(), vec![(id, item(id))]);
            settle(&store, round + 1);
            commit(&store, &[], &[id]);
            settle(&store, round + 2);
            assert_eq!(store.work_items().unwrap(), vec![], "round {round}");
            store.inner.work.rotate_memtable_and_wait().unwrap();
            store.inner.work.major_compact().unwrap();
            assert_eq!(store.work_items().unwrap(), vec![], "round {round}");
        }
        let store = FjallStore::open(dir.path()).unwrap();
        assert_eq!(store.work_items().unwrap(), vec![]);
    }
}
