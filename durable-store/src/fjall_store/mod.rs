//! [`FjallStore`]: the [`Store`] on an embedded fjall database.
//!
//! One fjall `Database` holds seven keyspaces: five of records, and two indexes described
//! in the `index` module (`by_status`, `by_orchestrator`):
//!
//! | keyspace    | key                                              | value                     |
//! |-------------|--------------------------------------------------|---------------------------|
//! | `meta`      | `format`                                         | `durable-store/3`         |
//! | `meta`      | `count/<status>`                                 | orchestrations (u64 BE)   |
//! | `instances` | instance id                                      | postcard `InstanceRecord` |
//! | `history`   | id length (u16 BE) ++ id ++ event index (u32 BE) | postcard `Event`          |
//! | `work`      | `WorkId` (u64 BE)                                | postcard `WorkItem`       |
//! | `progress`  | progress key                                     | raw bytes                 |
//!
//! Big-endian numbers make fjall's byte order the numeric order, so scans return histories
//! and the work queue in order.

mod commit;
mod index;
mod lease;
mod migrate;
mod open;
#[cfg(test)]
mod tests;
mod work;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use fjall::{Database, Keyspace, PersistMode};

use crate::error::{KeyKind, StoreError, cause};
use crate::keys;
use crate::lease::local::{Leases, WorkSignal};
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{InstanceCursor, InstanceFilter, InstancePage, LIVE_STATUSES, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem, decode};
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
    counts: Mutex<[u64; crate::record::StatusKind::ALL.len()]>,
    /// Which work removals may be weak (see `work`): what `meta` holds. Written under
    /// `writer`, after the batch that stores it.
    work_ids: Mutex<work::WorkIds>,
    /// The index entries of the live instances a commit touched since the store was
    /// opened, as stored: a turn's commit finds its instance's entry here instead of
    /// reading and decoding the record it replaces, and its history's length (the
    /// history fence's expected length) instead of seeking it. Written under `writer`,
    /// after the batch that stores them.
    live: Mutex<crate::hash::FnvMap<String, Live>>,
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

/// What the store keeps of a live instance a commit touched since it was opened.
#[derive(Clone, Copy, Debug)]
struct Live {
    /// Its index entry, as stored.
    entry: index::Entry,
    /// The number of events in its history, as stored, once a commit has appended to it
    /// or removed it.
    history: Option<u64>,
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

/// The event index a history key of instance `id` ends in, after its `prefix` bytes.
///
/// # Errors
///
/// [`StoreError::Decode`] if the key does not end in a 4-byte index.
fn event_index(id: &str, prefix: usize, key: &[u8]) -> Result<u32, StoreError> {
    key.get(prefix..)
        .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| StoreError::Decode {
            what: format!("history key {key:?} of `{id}` (keyspace `history`)"),
            detail: "the key does not end in a 4-byte event index".to_owned(),
            source: None,
        })
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

    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.with_prefix(prefix, after, limit)
    }

    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.remove_idle(ids)
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
            let index = event_index(id, prefix.len(), &key)?;
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
        self.claim_work(worker, filter)
    }

    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        lock(&self.inner.leases).claim_tasks(worker, tasks, filter)
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        self.reserve(count)
    }

    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.inner.signal.wait(timeout);
        Ok(())
    }

    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.inner.work.iter() {
            let (key, value) = guard.into_inner().map_err(self.io("reading"))?;
            let work_id = lease::work_id(&key)?;
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

    fn location(&self) -> Option<&Path> {
        Some(self.path())
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
