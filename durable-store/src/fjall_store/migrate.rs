//! The migration of a store of format 2 to format 3, at open: the indexes and counters
//! format 3 adds are built from the instance records, once.

use fjall::PersistMode;

use super::index::{Entry, count_key, slot};
use super::open::FORMAT_KEY;
use super::work::STRONG_THROUGH_KEY;
use super::{Inner, decode, describe};
use crate::error::{StoreError, cause};
use crate::record::{InstanceRecord, StatusKind};

/// Index entries written per batch: memory stays bounded whatever the store holds.
const BATCH: usize = 10_000;

/// Builds the indexes and counters from every instance record, then marks the store with
/// `marker` (the current format) in the last, synced batch. A migration cut short leaves
/// the old marker, so the next open runs it again from the start: it first clears what
/// the cut one wrote, so every index key is written once (see the `index` module).
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
    for keyspace in [&inner.by_status, &inner.by_orchestrator] {
        let mut batch = inner.db.batch();
        for guard in keyspace.iter() {
            batch.remove(keyspace, guard.key().map_err(io("reading"))?);
            if batch.len() >= BATCH {
                std::mem::replace(&mut batch, inner.db.batch())
                    .commit()
                    .map_err(io("writing"))?;
            }
        }
        batch.commit().map_err(io("writing"))?;
    }
    let mut counts = [0u64; 7];
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
        batch.insert(&inner.by_status, entry.status_key(id), b"");
        if let Some(key) = entry.orchestrator_key(id) {
            batch.insert(&inner.by_orchestrator, key, b"");
        }
        counts[slot(entry.status())] += 1;
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
