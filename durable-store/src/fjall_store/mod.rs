//! [`FjallStore`]: the [`Store`] on an embedded fjall database.
//!
//! One fjall `Database` holds seven keyspaces: five of records, and two indexes described
//! in the `index` module (`by_status`, `by_orchestrator`):
//!
//! | keyspace    | key                                              | value                     |
//! |-------------|--------------------------------------------------|---------------------------|
//! | `meta`      | `format`                                         | `durable-store/3`         |
//! | `meta`      | `count/<status>`                                 | instances (u64 BE)        |
//! | `instances` | instance id                                      | postcard `InstanceRecord` |
//! | `history`   | id length (u16 BE) ++ id ++ event index (u32 BE) | postcard `Event`          |
//! | `work`      | `WorkId` (u64 BE)                                | postcard `WorkItem`       |
//! | `progress`  | progress key                                     | raw bytes                 |
//!
//! Big-endian numbers make fjall's byte order the numeric order, so scans return histories
//! and the work queue in order.

mod commit;
mod index;
mod migrate;
mod open;
mod work;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{KeyKind, StoreError, cause};
use crate::keys;
use crate::lease::local::{ClaimSources, Leases, WorkSignal};
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{InstanceCursor, InstanceFilter, InstancePage, LIVE_STATUSES, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, StatusKind, WorkId, WorkItem, decode};
use crate::store::{Durability, Store};

pub use open::FORMAT_VERSION;

/// A [`Store`] on an embedded fjall database in one directory.
///
/// Cheap to clone: clones share the database, which closes when the last clone drops.
///
/// An instance that has finished is written live again only under a new incarnation
/// (as a restart does): the status index removes its entries with weak tombstones, and
/// a live entry written twice could come back after a flush.
///
/// A write or fsync that fails poisons the store, as fjall does: that commit returns
/// [`StoreError::Io`], and every later commit [`StoreError::Poisoned`] until all clones
/// are dropped and the store is opened again. Reads go on working.
///
/// # Examples
///
/// ```
/// use durable_store::{Commit, FjallStore, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = FjallStore::open(dir.path())?;
/// store.commit(&[Commit {
///     progress: vec![("step".to_owned(), Some(b"42".to_vec()))],
///     ..Commit::default()
/// }])?;
/// assert_eq!(store.progress("step")?, Some(b"42".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FjallStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    /// Serialises `commit`, which reads the keys it may leave out.
    writer: Mutex<()>,
    /// The first write or sync that failed, and its error: fjall refuses every write after
    /// it, and its refusal does not say why.
    write_failure: OnceLock<(String, Arc<dyn Error + Send + Sync>)>,
    /// The instances in each status, by [`index::slot`]: what `meta` holds, kept here so
    /// a count reads nothing. Written under `writer`, after the batch that stores it.
    counts: Mutex<[u64; 7]>,
    /// Which work removals may be weak (see `work`): what `meta` holds. Written under
    /// `writer`, after the batch that stores it.
    work_ids: Mutex<work::WorkIds>,
    /// The index entries of the live instances a commit touched since the store was
    /// opened, as stored: a turn's commit finds its instance's entry here instead of
    /// reading and decoding the record it replaces. Written under `writer`, after the
    /// batch that stores them.
    live: Mutex<index::FnvMap<String, index::Entry>>,
    /// Who holds what: in memory, since one process holds the store (see
    /// [`crate::lease::local`]). Locked after `writer`, and across a commit's check and
    /// write.
    leases: Mutex<Leases>,
    /// Wakes `wait_for_work`.
    signal: WorkSignal,
    /// The first work id not reserved yet; `None` until the first reservation reads the
    /// queue's highest.
    next_work_id: Mutex<Option<WorkId>>,
    db: Database,
    meta: Keyspace,
    instances: Keyspace,
    history: Keyspace,
    work: Keyspace,
    progress: Keyspace,
    by_status: Keyspace,
    by_orchestrator: Keyspace,
}

impl FjallStore {
    /// Opens the store in `path` with [`Durability::Sync`], creating it if `path` does not
    /// exist or is an empty directory.
    ///
    /// A store of format 2 (written before the indexes) is migrated: its indexes and
    /// counters are built from its instance records, once, in batches (a scan of its
    /// instances, a few seconds per million), and it is marked as format 3.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] if `path` holds something else, [`StoreError::AlreadyOpen`]
    /// if the store is open in another process or through another handle in this one,
    /// [`StoreError::Corrupt`] if the store's files cannot be read back,
    /// [`StoreError::OtherFormat`] if it is marked with another format than
    /// [`FORMAT_VERSION`] or 2, [`StoreError::Io`] if the directory cannot be read or the store
    /// cannot be created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::default())
    }

    /// Opens the store in `path` with the given durability of commits.
    ///
    /// # Errors
    ///
    /// As [`FjallStore::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let inner = open::open(path.as_ref(), durability)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The durability of commits.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Bytes the store occupies on disk (journal and tables).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the sizes cannot be read.
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        self.inner.db.disk_space().map_err(self.io("measuring"))
    }

    /// Waits until every commit so far is on disk. Useful with [`Durability::Buffered`]
    /// before a planned shutdown; dropping the last handle does it too.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the journal cannot be synced, [`StoreError::Poisoned`] if an
    /// earlier write or sync failed.
    pub fn persist(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(self.write_error("syncing"))
    }

    /// Maps a fjall error of `doing` something to [`StoreError::Io`], or to
    /// [`StoreError::Poisoned`] when fjall refuses to write at all.
    fn io<'a>(&'a self, doing: &'a str) -> impl FnOnce(fjall::Error) -> StoreError + 'a {
        move |e| self.fjall_error(doing, Arc::new(e))
    }

    /// As [`io`](Self::io) for a write or sync, which poisons fjall when it fails: keeps the
    /// first failure, to say later why writes are refused.
    fn write_error<'a>(&'a self, doing: &'a str) -> impl FnOnce(fjall::Error) -> StoreError + 'a {
        move |e| {
            let e = Arc::new(e);
            if !matches!(*e, fjall::Error::Poisoned) {
                let failure = format!("{doing} it: {}", describe(&e));
                let _ = self.inner.write_failure.set((failure, e.clone()));
            }
            self.fjall_error(doing, e)
        }
    }

    fn fjall_error(&self, doing: &str, e: Arc<fjall::Error>) -> StoreError {
        if !matches!(*e, fjall::Error::Poisoned) {
            return StoreError::Io {
                detail: format!(
                    "{doing} the store at `{}`: {}",
                    self.inner.path.display(),
                    describe(&e)
                ),
                source: Some(e),
            };
        }
        let (detail, source) = match self.inner.write_failure.get() {
            Some((failure, first)) => (format!("the first failure: {failure}"), first.clone()),
            // fjall also poisons the database when a background flush panics.
            None => (
                "fjall refuses writes after a failed write, fsync or background flush".to_owned(),
                e as Arc<dyn Error + Send + Sync>,
            ),
        };
        StoreError::Poisoned {
            path: Some(self.inner.path.clone()),
            detail,
            source: Some(source),
        }
    }
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

/// Locks `m`, whether or not a panic poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store for FjallStore {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.write(commits)
    }

    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        if !keys::is_storable(KeyKind::InstanceId, id) {
            return Ok(None);
        }
        let Some(bytes) = self.inner.instances.get(id).map_err(self.io("reading"))? else {
            return Ok(None);
        };
        decode(&bytes, || {
            format!("instance record `{id}` (keyspace `instances`)")
        })
        .map(Some)
    }

    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.inner.instances.iter() {
            let (key, value) = guard.into_inner().map_err(self.io("reading"))?;
            let id = String::from_utf8(key.to_vec()).map_err(|e| StoreError::Decode {
                what: format!("instance id {:?} (keyspace `instances`)", &*key),
                detail: e.to_string(),
                source: cause(e),
            })?;
            let record = decode(&value, || {
                format!("instance record `{id}` (keyspace `instances`)")
            })?;
            out.push((id, record));
        }
        Ok(out)
    }

    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        self.list(filter, after, limit)
    }

    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        Ok(self.counts())
    }

    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        let live = InstanceFilter {
            statuses: LIVE_STATUSES.to_vec(),
            ..InstanceFilter::default()
        };
        let found = self.scan(&live, None, usize::MAX)?;
        Ok(found
            .into_iter()
            .map(|(cursor, record)| (cursor.id, record))
            .collect())
    }

    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        if !keys::is_storable(KeyKind::InstanceId, id) {
            return Ok(Vec::new());
        }
        let prefix = keys::history_prefix(id);
        let mut out = Vec::new();
        for guard in self.inner.history.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(self.io("reading"))?;
            let index = key
                .get(prefix.len()..)
                .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| StoreError::Decode {
                    what: format!("history key {:?} of `{id}` (keyspace `history`)", &*key),
                    detail: "the key does not end in a 4-byte event index".to_owned(),
                    source: None,
                })?;
            out.push(decode(&value, || {
                format!("event #{index} of `{id}` (keyspace `history`)")
            })?);
        }
        Ok(out)
    }

    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        Ok(lock(&self.inner.leases).join(lease))
    }

    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        lock(&self.inner.leases).renew(worker, lease)
    }

    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        lock(&self.inner.leases).leave(worker);
        self.inner.signal.wake();
        Ok(())
    }

    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        let mut leases = lock(&self.inner.leases);
        leases.alive(worker)?;
        let stalled = InstanceFilter {
            statuses: vec![StatusKind::Stalled],
            ..InstanceFilter::default()
        };
        let stalled = self.list_instances(&stalled, None, usize::MAX)?;
        let sources = ClaimSources {
            items: self.work_items()?.into_iter().map(Ok),
            stalled: stalled.instances.into_iter().map(|(id, _)| Ok(id)),
            record: |id: &str| self.instance(id),
        };
        leases.claim(worker, filter, sources)
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        let mut next = lock(&self.inner.next_work_id);
        let first = match *next {
            Some(first) => first,
            None => self.work_items()?.last().map_or(0, |(id, _)| id + 1),
        };
        *next = Some(first.saturating_add(count));
        Ok(first)
    }

    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.inner.signal.wait(timeout);
        Ok(())
    }

    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.inner.work.iter() {
            let (key, value) = guard.into_inner().map_err(self.io("reading"))?;
            let work_id = <[u8; 8]>::try_from(&*key)
                .map(WorkId::from_be_bytes)
                .map_err(|_| StoreError::Decode {
                    what: format!("work key {:?} (keyspace `work`)", &*key),
                    detail: "the key is not an 8-byte work id".to_owned(),
                    source: None,
                })?;
            let item = decode(&value, || format!("work item {work_id} (keyspace `work`)"))?;
            out.push((work_id, item));
        }
        Ok(out)
    }

    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !keys::is_storable(KeyKind::ProgressKey, key) {
            return Ok(None);
        }
        let value = self.inner.progress.get(key).map_err(self.io("reading"))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }
}

/// A readable account of a fjall error (fjall's own `Display` is its `Debug`).
fn describe(e: &fjall::Error) -> String {
    use fjall::{Error, LsmError};
    match e {
        Error::Io(e) | Error::Storage(LsmError::Io(e)) => e.to_string(),
        Error::Poisoned => "an earlier write did not reach the disk, so the database refuses \
                           further writes; restart the process"
            .to_owned(),
        Error::Locked => "the database is open elsewhere".to_owned(),
        Error::InvalidVersion(None) => "its fjall `version` file is damaged".to_owned(),
        Error::InvalidVersion(Some(version)) => {
            format!("it was written in fjall format {version:?}, and this build reads fjall 3")
        }
        Error::Unrecoverable | Error::Storage(LsmError::Unrecoverable) => {
            "some of its files could not be recovered".to_owned()
        }
        Error::JournalRecovery(e) => format!("its journal is damaged ({e:?})"),
        Error::Storage(LsmError::ChecksumMismatch { .. }) => {
            "a checksum does not match: a file is damaged".to_owned()
        }
        other => format!("{other:?}"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::query::{InstanceFilter, LIVE_STATUSES};
    use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status, StatusKind};
    use crate::store::Store;

    use super::FjallStore;

    /// Checks listings, counters, the live instances and the raw index keyspaces against
    /// a full scan of the records.
    fn check(store: &FjallStore, step: u32) {
        let records: BTreeMap<String, InstanceRecord> =
            store.instances().unwrap().into_iter().collect();
        let list = |statuses: Vec<StatusKind>| {
            let filter = InstanceFilter {
                statuses,
                ..InstanceFilter::default()
            };
            let mut ids: Vec<String> = (store.list_instances(&filter, None, 10_000).unwrap())
                .instances
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            ids
        };
        let of = |kinds: &[StatusKind]| -> Vec<String> {
            let kinds = kinds.to_vec();
            (records.iter())
                .filter(|(_, r)| kinds.contains(&r.status.kind()))
                .map(|(id, _)| id.clone())
                .collect()
        };
        assert_eq!(list(vec![]), of(&StatusKind::ALL), "step {step}: all");
        let counts = store.count_by_status().unwrap();
        for kind in StatusKind::ALL {
            assert_eq!(list(vec![kind]), of(&[kind]), "step {step}: {kind}");
            assert_eq!(
                counts[&kind],
                of(&[kind]).len() as u64,
                "step {step}: {kind}"
            );
        }
        let mut live: Vec<String> = (store.live_instances().unwrap().into_iter())
            .map(|(id, _)| id)
            .collect();
        live.sort();
        assert_eq!(live, of(&LIVE_STATUSES), "step {step}: live");
        let finished = records.values().filter(|r| r.status.is_terminal()).count();
        assert_eq!(
            store.inner.by_status.len().unwrap(),
            records.len(),
            "step {step}"
        );
        assert_eq!(
            store.inner.by_orchestrator.len().unwrap(),
            finished,
            "step {step}"
        );
    }

    /// Instances started, moved between live statuses, finished, purged and restarted as
    /// the runtime does (a new incarnation for every run), several per call, with flushes,
    /// compactions and reopens at seeded moments: the indexes and counters always agree
    /// with the records.
    #[test]
    fn indexes_and_counters_agree_with_the_records_through_flushes_compactions_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FjallStore::open(dir.path()).unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut incarnation = 0;
        let mut model: BTreeMap<String, InstanceRecord> = BTreeMap::new();
        let failed = Status::Failed {
            failure: Failure {
                kind: FailureKind::Panicked,
                message: "boom".into(),
            },
        };
        for step in 0..600u32 {
            let mut commits = Vec::new();
            for _ in 0..=next(3) {
                let id = format!("i{}", next(12));
                let mut commit = Commit::default();
                match model.get(&id).cloned() {
                    None => {
                        incarnation += 1;
                        let record = InstanceRecord::pending(
                            format!("o{}", next(2)),
                            1,
                            vec![],
                            next(5),
                            incarnation,
                            None,
                        );
                        commit.instances.push((id.clone(), record));
                    }
                    Some(mut record) if record.status.is_terminal() => {
                        if next(2) == 0 {
                            commit.instances_removed.push(id.clone());
                        } else {
                            incarnation += 1;
                            record.incarnation = incarnation;
                            record.status = Status::Pending;
                            commit.instances.push((id.clone(), record));
                        }
                    }
                    Some(mut record) => {
                        record.status = match next(6) {
                            0 => Status::Running,
                            1 => Status::Suspended { reason: "r".into() },
                            2 => Status::Stalled {
                                failure: Failure {
                                    kind: FailureKind::Panicked,
                                    message: "s".into(),
                                },
                            },
                            3 => Status::Completed { output: vec![] },
                            4 => failed.clone(),
                            _ => Status::Terminated { reason: "t".into() },
                        };
                        commit.instances.push((id.clone(), record));
                    }
                }
                for id in &commit.instances_removed {
                    model.remove(id);
                }
                for (id, record) in &commit.instances {
                    model.insert(id.clone(), record.clone());
                }
                commits.push(commit);
            }
            store.commit(&commits).unwrap();
            match next(8) {
                0 => {
                    store.inner.by_status.rotate_memtable_and_wait().unwrap();
                    store
                        .inner
                        .by_orchestrator
                        .rotate_memtable_and_wait()
                        .unwrap();
                }
                1 => {
                    store.inner.by_status.major_compact().unwrap();
                    store.inner.by_orchestrator.major_compact().unwrap();
                }
                2 if step % 5 == 0 => {
                    drop(store);
                    store = FjallStore::open(dir.path()).unwrap();
                }
                _ => {}
            }
            check(&store, step);
        }
    }

    /// A call applied twice (written, reported failed, retried: `FaultyStore`'s
    /// `written_anyway`) leaves the work queue, indexes and counters as once, across
    /// flushes, compactions and a reopen.
    #[test]
    fn a_call_applied_twice_leaves_what_one_leaves() {
        use crate::record::{Event, WorkItem};
        let dir = tempfile::tempdir().unwrap();
        let message = WorkItem::Message {
            instance: "x".into(),
            incarnation: 1,
            generation: None,
            event: Event::ResumeRequested,
        };
        let mut record = InstanceRecord::pending("o".into(), 1, vec![], 3, 1, None);
        let store = FjallStore::open(dir.path()).unwrap();
        store
            .commit(&[Commit {
                instances: vec![("x".into(), record.clone())],
                enqueued: vec![(1, message.clone())],
                ..Commit::default()
            }])
            .unwrap();
        store.inner.work.rotate_memtable_and_wait().unwrap();
        record.status = Status::Completed { output: vec![] };
        let finish = Commit {
            instances: vec![("x".into(), record)],
            dequeued: vec![1],
            enqueued: vec![(2, message.clone())],
            ..Commit::default()
        };
        store.commit(std::slice::from_ref(&finish)).unwrap();
        store.inner.work.rotate_memtable_and_wait().unwrap();
        store.commit(&[finish]).unwrap();
        check(&store, 0);
        store
            .commit(&[Commit {
                dequeued: vec![2],
                ..Commit::default()
            }])
            .unwrap();
        for keyspace in [&store.inner.work, &store.inner.by_status] {
            keyspace.rotate_memtable_and_wait().unwrap();
        }
        assert_eq!(store.work_items().unwrap(), vec![]);
        check(&store, 1);
        store.inner.work.major_compact().unwrap();
        assert_eq!(store.work_items().unwrap(), vec![]);
        drop(store);
        let store = FjallStore::open(dir.path()).unwrap();
        assert_eq!(store.work_items().unwrap(), vec![]);
        check(&store, 2);
        assert_eq!(store.count_by_status().unwrap()[&StatusKind::Completed], 1);
    }
}
