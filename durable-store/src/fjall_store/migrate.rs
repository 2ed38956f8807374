//! The migration of a store of format 2 to format 3, at open: the indexes and counters
//! format 3 adds are built from the instance records, once.

use fjall::PersistMode;

use super::index::{Entry, count_key, parse_rest, slot};
use super::open::FORMAT_KEY;
use super::work::STRONG_THROUGH_KEY;
use super::{Inner, decode, describe};
use crate::error::{StoreError, cause};
use crate::record::{InstanceRecord, StatusKind};

/// Index entries written per batch: memory stays bounded whatever the store holds.
const BATCH: usize = 10_000;

/// Builds the indexes and counters from every instance record, then marks the store with
/// `marker` (the current format) in the last, synced batch. A migration cut short leaves
/// the old marker, so the next open runs it again from the start: it keeps the entries
/// the cut one wrote that the records still want, removes the others, and writes only
/// the missing ones, so every index key is written once (see the `index` module).
///
/// # Errors
///
/// [`StoreError::Decode`] if a record does not decode, [`StoreError::Io`] if the store
/// cannot be read or written.
pub(super) fn build_indexes(inner: &Inner, marker: &str) -> Result<(), StoreError> {
    let io = |doing: &'static str| {
        move |e: fjall::Error| StoreError::Io {
            detail: format!(
                "{doing} the store at `{}` while building its indexes (format 3): {}",
                inner.path.display(),
                describe(&e)
            ),
            source: cause(e),
        }
    };
    tracing::info!(path = %inner.path.display(), "building the indexes of a format-2 store");
    // A cut migration's entries stay where the records still want them, and are not
    // written again: a weak removal of an entry written twice would drain both writes
    // at a flush while a table below kept the first, bringing it back.
    for (keyspace, head) in [(&inner.by_status, 0), (&inner.by_orchestrator, 8)] {
        let mut batch = inner.db.batch();
        for guard in keyspace.iter() {
            let key = guard.key().map_err(io("reading"))?;
            if wanted(inner, &key, head)?.as_deref() != Some(&*key) {
                batch.remove(keyspace, key);
            }
            if batch.len() >= BATCH {
                std::mem::replace(&mut batch, inner.db.batch())
                    .commit()
                    .map_err(io("writing"))?;
            }
        }
        batch.commit().map_err(io("writing"))?;
    }
    let mut counts = [0u64; StatusKind::ALL.len()];
    let mut batch = inner.db.batch();
    for guard in inner.instances.iter() {
        let (key, value) = guard.into_inner().map_err(io("reading"))?;
        let id = std::str::from_utf8(&key).map_err(|e| StoreError::Decode {
            what: format!("instance id {:?} (keyspace `instances`)", &*key),
            detail: e.to_string(),
            source: cause(e),
        })?;
        let record: InstanceRecord = decode(&value, || {
            format!("instance record `{id}` (keyspace `instances`)")
        })?;
        let entry = Entry::of(&record);
        for (keyspace, key) in [
            (&inner.by_status, entry.status_key(id)),
            (&inner.by_orchestrator, entry.orchestrator_key(id)),
        ] {
            if let Some(key) = key
                && !keyspace.contains_key(&key).map_err(io("reading"))?
            {
                batch.insert(keyspace, key, b"");
            }
        }
        if let Some(kind) = entry.counted() {
            counts[slot(kind)] += 1;
        }
        if batch.len() >= BATCH {
            std::mem::replace(&mut batch, inner.db.batch())
                .commit()
                .map_err(io("writing"))?;
        }
    }
    for kind in StatusKind::ALL {
        batch.insert(
            &inner.meta,
            count_key(kind),
            counts[slot(kind)].to_be_bytes(),
        );
    }
    // The work ids format 2 used are not known: their removals stay plain.
    batch.insert(&inner.meta, STRONG_THROUGH_KEY, u64::MAX.to_be_bytes());
    batch.insert(&inner.meta, FORMAT_KEY, marker.as_bytes());
    batch
        .durability(Some(PersistMode::SyncAll))
        .commit()
        .map_err(io("writing"))?;
    tracing::info!(
        instances = counts.iter().sum::<u64>(),
        "built the indexes: the store is of format 3"
    );
    Ok(())
}

/// The key of the index entry that the record of the instance named in `key` (an index
/// key whose first `head` bytes precede the `by_status` key) wants in its keyspace, if
/// there is such a record and it wants one.
fn wanted(inner: &Inner, key: &[u8], head: usize) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(id) = key
        .get(head + 1..)
        .and_then(|rest| parse_rest(rest).ok())
        .map(|cursor| cursor.id)
    else {
        return Ok(None);
    };
    let Some(bytes) = inner.instances.get(&id).map_err(|e| StoreError::Io {
        detail: format!(
            "reading the store at `{}` while building its indexes (format 3): {}",
            inner.path.display(),
            describe(&e)
        ),
        source: cause(e),
    })?
    else {
        return Ok(None);
    };
    let record: InstanceRecord = decode(&bytes, || {
        format!("instance record `{id}` (keyspace `instances`)")
    })?;
    let entry = Entry::of(&record);
    Ok(if head == 0 {
        entry.status_key(&id)
    } else {
        entry.orchestrator_key(&id)
    })
}

#[cfg(test)]
mod tests {
    use crate::query::InstanceFilter;
    use crate::record::{Commit, InstanceRecord, Status, StatusKind};
    use crate::store::Store;

    use super::super::FjallStore;
    use super::super::open::FORMAT_KEY;

    fn ids(store: &FjallStore, status: StatusKind) -> Vec<String> {
        let filter = InstanceFilter {
            statuses: vec![status],
            ..InstanceFilter::default()
        };
        let page = store.list_instances(&filter, None, 100).unwrap();
        page.instances.into_iter().map(|(id, _)| id).collect()
    }

    /// Every instance, whatever its status.
    fn listed(store: &FjallStore) -> Vec<String> {
        let page = store
            .list_instances(&InstanceFilter::default(), None, 100)
            .unwrap();
        page.instances.into_iter().map(|(id, _)| id).collect()
    }

    /// A migration cut short after some of its index entries reached a table, run again
    /// at the next open, leaves no entry that a later weak removal uncovers: the instance
    /// finishes after the migration and is listed as finished only, across a flush, a
    /// compaction and a reopen.
    #[test]
    fn a_migration_run_again_after_a_crash_brings_back_no_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = InstanceRecord::pending("flow".into(), 1, vec![], 7, 9, None);
        record.status = Status::Running;
        {
            let store = FjallStore::open(dir.path()).unwrap();
            store
                .commit(&[Commit {
                    instances: vec![("x".into(), record.clone())],
                    ..Commit::default()
                }])
                .unwrap();
            // The entries of a cut migration on disk, the store still marked format 2.
            store.inner.by_status.rotate_memtable_and_wait().unwrap();
            store
                .inner
                .meta
                .insert(FORMAT_KEY, "durable-store/2")
                .unwrap();
            store.persist().unwrap();
        }
        let store = FjallStore::open(dir.path()).unwrap();
        assert_eq!(ids(&store, StatusKind::Running), ["x"]);
        record.status = Status::Completed { output: vec![] };
        store
            .commit(&[Commit {
                instances: vec![("x".into(), record.clone())],
                ..Commit::default()
            }])
            .unwrap();
        store.inner.by_status.rotate_memtable_and_wait().unwrap();
        assert_eq!(listed(&store), ["x"], "after a flush");
        assert_eq!(store.inner.by_status.len().unwrap(), 1, "after a flush");
        store.inner.by_status.major_compact().unwrap();
        assert_eq!(
            store.inner.by_status.len().unwrap(),
            1,
            "after a compaction"
        );
        assert_eq!(ids(&store, StatusKind::Completed), ["x"]);
        drop(store);
        let store = FjallStore::open(dir.path()).unwrap();
        assert!(
            ids(&store, StatusKind::Running).is_empty(),
            "after a reopen"
        );
        assert_eq!(ids(&store, StatusKind::Completed), ["x"]);
        assert_eq!(store.live_instances().unwrap(), vec![]);
        assert_eq!(listed(&store), ["x"]);
        store
            .commit(&[Commit {
                instances_removed: vec!["x".into()],
                ..Commit::default()
            }])
            .unwrap();
        assert_eq!(listed(&store), Vec::<String>::new(), "after a purge");
    }
}
