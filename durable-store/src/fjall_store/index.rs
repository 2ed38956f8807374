//! The secondary indexes of [`FjallStore`] and the listings that read them.
//!
//! | keyspace          | key                                                              |
//! |-------------------|------------------------------------------------------------------|
//! | `by_status`       | class (1 byte) ++ `created_ms` (u64 BE) ++ id (escaped) ++ incarnation (u64 BE) |
//! | `by_orchestrator` | FNV-1a of the orchestrator name (u64 BE) ++ the `by_status` key, finished instances only |
//!
//! The class is the status for a finished instance (completed, failed, terminated) and one
//! class, *live*, for every other status (pending, running, suspended, stalled): the live
//! instances are one range of `by_status`, which recovery reads, and a turn that moves an
//! instance between live statuses writes no index entry. Live instances have no entry in
//! `by_orchestrator`: a listing by orchestrator reads the live range whole (the live
//! work), so an instance's start and finish write one key less. Listings check each entry's
//! record against the filter, so a listing of running instances reads the live range.
//! The id is escaped so keys sort by id and end where it ends (NUL as `00 FF`, then `00
//! 01`). Values are empty. Counters by status live in `meta` under `count/<status>` (u64
//! BE). Each commit writes the index entries and counters of the records it changes in
//! the same batch as the records, so they never disagree.
//!
//! Entities ([`is_entity`]) have no entry in either index and no place in the counters:
//! the listings and counts are of orchestrations, and an entity is listed by its id in
//! `instances` (`Store::instances_with_prefix`). A store written by the build that
//! brought entities, before this rule, holds an entry in the live range for each entity
//! it made then: a listing reads its record and skips it, and the commit that removes
//! the entity removes the entry too (its key is known from the record); the counters of
//! such a store count those entities, as live, until it is rebuilt.
//!
//! An index key is written once and removed once, never written again: the incarnation
//! in it is new for every run of an id (a restart, a start after a purge), and an
//! instance leaves the live class only to finish, and leaves a finished class only to be
//! purged or restarted. So its removal is a *weak* tombstone, which fjall drops together
//! with the insert it cancels at the flush or compaction that meets both: an instance
//! that starts and finishes within a memtable leaves nothing in the live range, and
//! listing the live instances of a store that ran a million does not step over a million
//! tombstones. A caller of `commit` must therefore not write a finished instance live
//! again under the same incarnation (the runtime never does). (`Batch::remove_weak` is
//! marked experimental in fjall 3; its rule, a key written once, is what this module
//! keeps: a weak tombstone drains every older version of its key that it meets, so a key
//! written again could bring back an old insert.)

use crate::hash::FnvMap;
use std::ops::Bound;

use fjall::{Readable, Slice};

use super::{FjallStore, decode};
use crate::error::StoreError;
use crate::query::{
    InstanceCursor, InstanceFilter, InstancePage, StatusCounts, is_entity, page_of,
};
use crate::record::{Commit, InstanceRecord, StatusKind};

/// The keyspace of the status index.
pub(super) const BY_STATUS: &str = "by_status";
/// The keyspace of the orchestrator index.
pub(super) const BY_ORCHESTRATOR: &str = "by_orchestrator";

/// The position of a status among the counters.
fn status_byte(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Pending => 0,
        StatusKind::Running => 1,
        StatusKind::Completed => 2,
        StatusKind::Failed => 3,
        StatusKind::Stalled => 4,
        StatusKind::Terminated => 5,
        StatusKind::Suspended => 6,
        StatusKind::DeadLettered => 7,
    }
}

/// The class byte of the index keys of an instance of status `kind`. Stored: never
/// renumber.
fn class_byte(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Completed => 2,
        StatusKind::Failed => 3,
        StatusKind::Terminated => 5,
        _ => LIVE,
    }
}

/// The class of the unfinished statuses.
const LIVE: u8 = 0;

/// Appends `id` so that keys sort by id and the id's end is found: NUL as `00 FF`, then
/// `00 01`.
fn push_escaped(key: &mut Vec<u8>, id: &str) {
    for &byte in id.as_bytes() {
        key.push(byte);
        if byte == 0 {
            key.push(0xFF);
        }
    }
    key.extend_from_slice(&[0, 1]);
}

/// The key of the counter of `kind` in `meta`.
pub(super) fn count_key(kind: StatusKind) -> Vec<u8> {
    format!("count/{}", kind.as_str()).into_bytes()
}

/// The position of `kind` in [`StatusKind::ALL`]: its slot in an array of counters.
pub(super) fn slot(kind: StatusKind) -> usize {
    usize::from(status_byte(kind))
}

/// 64-bit FNV-1a: a stable hash of an orchestrator name, so the orchestrator index holds
/// 8 bytes whatever the name's length. Two names with one hash share a range; listings
/// check every record against the filter, so they only cost a skipped entry.
fn orchestrator_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the index entries of one instance are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// Whether the record is an entity's: no index entry, not counted.
    entity: bool,
    status: StatusKind,
    orchestrator: u64,
    created_ms: u64,
    incarnation: u64,
}

impl Entry {
    pub(super) fn of(record: &InstanceRecord) -> Self {
        Self {
            entity: is_entity(record),
            status: record.status.kind(),
            orchestrator: orchestrator_hash(&record.orchestrator),
            created_ms: record.created_ms,
            incarnation: record.incarnation,
        }
    }

    /// The status the counters count the instance under; `None` for an entity, which
    /// they do not count.
    pub(super) fn counted(&self) -> Option<StatusKind> {
        (!self.entity).then_some(self.status)
    }

    /// Whether the instance has not finished: the entries [`FjallStore`] keeps in memory.
    pub(super) fn is_live(&self) -> bool {
        class_byte(self.status) == LIVE
    }

    /// The `by_status` key of instance `id`; `None` for an entity.
    pub(super) fn status_key(&self, id: &str) -> Option<Vec<u8>> {
        (!self.entity).then(|| self.key_in_status(id))
    }

    /// The key an entity's record had in the live range of `by_status` when written by
    /// the build that brought entities (see the module doc): removed with the entity.
    pub(super) fn legacy_entity_key(&self, id: &str) -> Option<Vec<u8>> {
        self.entity.then(|| self.key_in_status(id))
    }

    /// The key of instance `id` in `by_status`, were it indexed.
    fn key_in_status(&self, id: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(19 + id.len());
        key.push(class_byte(self.status));
        key.extend_from_slice(&self.created_ms.to_be_bytes());
        push_escaped(&mut key, id);
        key.extend_from_slice(&self.incarnation.to_be_bytes());
        key
    }

    /// The `by_orchestrator` key of instance `id`; `None` while it is live (listings by
    /// orchestrator read the live range whole: it holds the live work, and a turn's start
    /// and finish write one key less).
    pub(super) fn orchestrator_key(&self, id: &str) -> Option<Vec<u8>> {
        if self.is_live() || self.entity {
            return None;
        }
        let mut key = Vec::with_capacity(27 + id.len());
        key.extend_from_slice(&self.orchestrator.to_be_bytes());
        key.extend_from_slice(&self.key_in_status(id));
        Some(key)
    }
}

/// How a call to `commit` changes the instances' index entries: for each instance it
/// touches, its entry before the call and after it.
#[derive(Default)]
pub(super) struct Changes<'a> {
    entries: FnvMap<&'a str, (Option<Entry>, Option<Entry>)>,
}

impl<'a> Changes<'a> {
    /// Follows the instance writes and removals of `commits`, in order; `stored` reads an
    /// instance's entry before the call.
    pub(super) fn of(
        commits: &'a [Commit],
        mut stored: impl FnMut(&str) -> Result<Option<Entry>, StoreError>,
    ) -> Result<Self, StoreError> {
        let mut changes = Self::default();
        for commit in commits {
            for id in &commit.instances_removed {
                changes.set(id, None, &mut stored)?;
            }
            for (id, record) in &commit.instances {
                changes.set(id, Some(Entry::of(record)), &mut stored)?;
            }
        }
        Ok(changes)
    }

    fn set(
        &mut self,
        id: &'a str,
        entry: Option<Entry>,
        stored: &mut impl FnMut(&str) -> Result<Option<Entry>, StoreError>,
    ) -> Result<(), StoreError> {
        match self.entries.get_mut(id) {
            Some((_, after)) => *after = entry,
            None => {
                let before = stored(id)?;
                self.entries.insert(id, (before, entry));
            }
        }
        Ok(())
    }

    /// Every instance the call touches, with its entry after the call.
    pub(super) fn after(&self) -> impl Iterator<Item = (&'a str, Option<Entry>)> + '_ {
        self.entries.iter().map(|(id, (_, after))| (*id, *after))
    }

    /// The instances whose entries change: id, entry before, entry after.
    pub(super) fn changed(
        &self,
    ) -> impl Iterator<Item = (&'a str, Option<Entry>, Option<Entry>)> + '_ {
        self.entries
            .iter()
            .filter(|(_, (before, after))| before != after)
            .map(|(id, (before, after))| (*id, *before, *after))
    }
}

/// One status range of an index, read from a snapshot in key order.
struct Stream {
    /// The length of the range's prefix: the key's rest is `created_ms` ++ id.
    prefix: usize,
    iter: fjall::Iter,
    head: Option<Slice>,
}

impl Stream {
    fn advance(&mut self, store: &FjallStore) -> Result<(), StoreError> {
        self.head = match self.iter.next() {
            Some(guard) => Some(guard.key().map_err(store.io("reading"))?),
            None => None,
        };
        Ok(())
    }

    fn rest(&self) -> Option<&[u8]> {
        self.head.as_deref().map(|key| &key[self.prefix..])
    }
}

impl FjallStore {
    /// The body of [`Store::list_instances`](crate::store::Store::list_instances).
    pub(super) fn list(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        let limit = limit.max(1);
        let found = self.scan(filter, after, limit.saturating_add(1))?;
        Ok(page_of(found, limit))
    }

    /// Up to `max` instances `filter` matches after `after`, in creation order: the index
    /// ranges of the filter's statuses, merged, each entry checked against its record.
    pub(super) fn scan(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        max: usize,
    ) -> Result<Vec<(InstanceCursor, InstanceRecord)>, StoreError> {
        let snapshot = self.inner.db.snapshot();
        let mut classes: Vec<u8> = filter.status_kinds().into_iter().map(class_byte).collect();
        classes.sort_unstable();
        classes.dedup();
        let mut streams = Vec::new();
        for class in classes {
            // The live class has no orchestrator index: its range is read whole.
            let (keyspace, mut prefix) = match &filter.orchestrator {
                Some(name) if class != LIVE => (
                    &self.inner.by_orchestrator,
                    orchestrator_hash(name).to_be_bytes().to_vec(),
                ),
                _ => (&self.inner.by_status, Vec::new()),
            };
            prefix.push(class);
            let at = |rest: &[u8]| [&prefix[..], rest].concat();
            let created_from = filter.created_from_ms.unwrap_or(0);
            let start = match after {
                Some(after) if after.created_ms >= created_from => {
                    // Past every entry of that id, whatever its incarnation.
                    let mut rest = after.created_ms.to_be_bytes().to_vec();
                    push_escaped(&mut rest, &after.id);
                    rest.extend_from_slice(&[0xFF; 8]);
                    Bound::Excluded(at(&rest))
                }
                _ => Bound::Included(at(&created_from.to_be_bytes())),
            };
            let end = match filter.created_before_ms {
                Some(before) => at(&before.to_be_bytes()),
                None => {
                    let mut end = prefix.clone();
                    *end.last_mut().expect("a prefix ends with its class") += 1;
                    end
                }
            };
            let mut stream = Stream {
                prefix: prefix.len(),
                iter: snapshot.range(keyspace, (start, Bound::Excluded(end))),
                head: None,
            };
            stream.advance(self)?;
            streams.push(stream);
        }
        let mut found = Vec::new();
        while found.len() < max {
            let Some(next) = streams
                .iter_mut()
                .filter(|stream| stream.head.is_some())
                .min_by(|a, b| a.rest().cmp(&b.rest()))
            else {
                break;
            };
            let rest = next.rest().expect("only streams with a head are chosen");
            let cursor = parse_rest(rest)?;
            next.advance(self)?;
            let Some(bytes) = snapshot
                .get(&self.inner.instances, cursor.id.as_bytes())
                .map_err(self.io("reading"))?
            else {
                return Err(StoreError::Decode {
                    what: format!("index entry of `{}` (keyspace `{BY_STATUS}`)", cursor.id),
                    detail: "the instance it points to has no record".to_owned(),
                    source: None,
                });
            };
            let record: InstanceRecord = decode(&bytes, || {
                format!("instance record `{}` (keyspace `instances`)", cursor.id)
            })?;
            if filter.matches(&record) {
                found.push((cursor, record));
            }
        }
        Ok(found)
    }

    /// The body of [`Store::instances_with_prefix`](crate::store::Store::instances_with_prefix):
    /// a range of `instances`, whose keys are the ids.
    pub(super) fn with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.as_bytes().to_vec()),
            _ => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let snapshot = self.inner.db.snapshot();
        let mut found = Vec::new();
        for guard in snapshot.range(&self.inner.instances, (start, Bound::Unbounded)) {
            if found.len() >= limit {
                break;
            }
            let (key, value) = guard.into_inner().map_err(self.io("reading"))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let id = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Decode {
                what: format!("instance id {:?} (keyspace `instances`)", &*key),
                detail: "not UTF-8".to_owned(),
                source: None,
            })?;
            let record = decode(&value, || {
                format!("instance record `{id}` (keyspace `instances`)")
            })?;
            found.push((id, record));
        }
        Ok(found)
    }

    /// The counters by status, as kept in memory.
    pub(super) fn counts(&self) -> StatusCounts {
        let counts = *self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        StatusKind::ALL
            .into_iter()
            .map(|kind| (kind, counts[slot(kind)]))
            .collect()
    }
}

/// The cursor of an index entry from its key's rest (`created_ms` ++ escaped id ++
/// incarnation).
pub(super) fn parse_rest(rest: &[u8]) -> Result<InstanceCursor, StoreError> {
    let bad = |detail: &str| StoreError::Decode {
        what: format!("index key {rest:?} (keyspace `{BY_STATUS}` or `{BY_ORCHESTRATOR}`)"),
        detail: detail.to_owned(),
        source: None,
    };
    let (created, mut escaped) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("the key is too short"))?;
    let mut id = Vec::with_capacity(escaped.len());
    loop {
        match escaped {
            [0, 1, incarnation @ ..] if incarnation.len() == 8 => break,
            [0, 0xFF, more @ ..] => {
                id.push(0);
                escaped = more;
            }
            [0, ..] | [] => return Err(bad("the id in the key is not escaped")),
            [byte, more @ ..] => {
                id.push(*byte);
                escaped = more;
            }
        }
    }
    let id = String::from_utf8(id).map_err(|_| bad("the id in the key is not UTF-8"))?;
    Ok(InstanceCursor {
        created_ms: u64::from_be_bytes(*created),
        id,
    })
}

#[cfg(test)]
mod tests {
    use crate::query::InstanceFilter;
    use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status, StatusKind};
    use crate::store::Store;

    use super::{FjallStore, parse_rest, push_escaped};

    fn record(status: Status, incarnation: u64) -> InstanceRecord {
        let mut record = InstanceRecord::pending("flow".into(), 1, vec![], 7, incarnation, None);
        record.status = status;
        record
    }

    fn ids(store: &FjallStore, status: StatusKind) -> Vec<String> {
        let filter = InstanceFilter {
            statuses: vec![status],
            ..InstanceFilter::default()
        };
        let page = store.list_instances(&filter, None, 100).unwrap();
        page.instances.into_iter().map(|(id, _)| id).collect()
    }

    /// The weak tombstones of the indexes never bring back an entry: an instance that
    /// fails and is restarted again and again, its entries flushed and compacted at every
    /// point of the cycle, is listed under its status only.
    #[test]
    fn index_entries_removed_weakly_stay_removed_across_flushes_and_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        let failed = || Status::Failed {
            failure: Failure {
                kind: FailureKind::Panicked,
                message: "boom".into(),
            },
        };
        let mut step = 0;
        for incarnation in 1..=4 {
            for (status, kind) in [
                (Status::Pending, StatusKind::Pending),
                (Status::Running, StatusKind::Running),
                (
                    Status::Suspended { reason: "r".into() },
                    StatusKind::Suspended,
                ),
                (
                    Status::DeadLettered { reason: "r".into() },
                    StatusKind::DeadLettered,
                ),
                (failed(), StatusKind::Failed),
            ] {
                store
                    .commit(&[Commit {
                        instances: vec![("x".into(), record(status, incarnation))],
                        ..Commit::default()
                    }])
                    .unwrap();
                step += 1;
                let inner = &store.inner;
                match step % 3 {
                    0 => inner.by_status.rotate_memtable_and_wait().unwrap(),
                    1 => inner.by_status.major_compact().unwrap(),
                    _ => {}
                }
                for other in StatusKind::ALL {
                    let want: &[&str] = if other == kind { &["x"] } else { &[] };
                    assert_eq!(
                        ids(&store, other),
                        want,
                        "step {step}: {other} after {kind}"
                    );
                }
            }
        }
        store.inner.by_status.rotate_memtable_and_wait().unwrap();
        store.inner.by_status.major_compact().unwrap();
        assert!(ids(&store, StatusKind::Running).is_empty());
        assert_eq!(ids(&store, StatusKind::Failed), ["x"]);
        drop(store);
        let store = FjallStore::open(dir.path()).unwrap();
        assert!(ids(&store, StatusKind::Pending).is_empty());
        assert_eq!(ids(&store, StatusKind::Failed), ["x"]);
        assert_eq!(store.count_by_status().unwrap()[&StatusKind::Failed], 1);
    }

    /// Escaped ids keep their order and come back whole, NULs included.
    #[test]
    fn escaped_ids_sort_as_ids_and_parse_back() {
        let mut ids = ["a", "ab", "a\0", "a\0b", "\0", "b", "a\0\0", "ä"];
        let key = |id: &str| {
            let mut key = 5u64.to_be_bytes().to_vec();
            push_escaped(&mut key, id);
            key.extend_from_slice(&u64::MAX.to_be_bytes());
            key
        };
        for id in ids {
            assert_eq!(parse_rest(&key(id)).unwrap().id, id);
        }
        let mut by_key = ids;
        by_key.sort_by_key(|id| key(id));
        ids.sort_unstable();
        assert_eq!(by_key, ids);
    }

    /// A filter whose time bounds cross, or a cursor past its end, lists nothing.
    #[test]
    fn empty_time_ranges_list_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        store
            .commit(&[Commit {
                instances: vec![("x".into(), record(Status::Running, 1))],
                ..Commit::default()
            }])
            .unwrap();
        let filter = InstanceFilter {
            created_from_ms: Some(50),
            created_before_ms: Some(10),
            ..InstanceFilter::default()
        };
        assert!(
            store
                .list_instances(&filter, None, 10)
                .unwrap()
                .instances
                .is_empty()
        );
        let filter = InstanceFilter {
            created_before_ms: Some(10),
            ..InstanceFilter::default()
        };
        let after = crate::query::InstanceCursor {
            created_ms: 60,
            id: "z".into(),
        };
        let page = store.list_instances(&filter, Some(&after), 10).unwrap();
        assert!(page.instances.is_empty());
    }
}
