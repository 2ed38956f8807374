//! [`FjallStore`]: the [`Store`] on an embedded fjall database.
//!
//! One fjall `Database` holds five keyspaces:
//!
//! | keyspace    | key                                              | value                     |
//! |-------------|--------------------------------------------------|---------------------------|
//! | `meta`      | `format`                                         | `durable-store/2`         |
//! | `instances` | instance id                                      | postcard `InstanceRecord` |
//! | `history`   | id length (u16 BE) ++ id ++ event index (u32 BE) | postcard `Event`          |
//! | `work`      | `WorkId` (u64 BE)                                | postcard `WorkItem`       |
//! | `progress`  | progress key                                     | raw bytes                 |
//!
//! Big-endian numbers make fjall's byte order the numeric order, so scans return histories
//! and the work queue in order.

use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys;
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};
use crate::store::{Durability, Store, StoreError};

/// The key of the format marker in `meta`.
const FORMAT_KEY: &[u8] = b"format";
/// The version of the format this code reads and writes. Bump it whenever what is stored
/// changes incompatibly (a record's fields or variants, the payload encoding); a store
/// marked with another version is then refused at open with [`StoreError::OtherFormat`].
///
/// 1: user payloads in postcard. 2: user payloads in JSON; `Event::EventSetAside`; an
/// incarnation on instances, deliveries and parent links; an attempt timeout on activity
/// tasks.
pub const FORMAT_VERSION: u32 = 2;
/// The marker of a store of format `version`.
fn format_marker(version: u32) -> String {
    format!("durable-store/{version}")
}
/// Every keyspace of a store. `meta` is created (and its marker synced) before the others.
const KEYSPACES: [&str; 5] = ["meta", "instances", "history", "work", "progress"];

/// A [`Store`] on an embedded fjall database in one directory.
///
/// Cheap to clone: clones share the database, which closes when the last clone drops.
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
    /// The first write or sync that failed: fjall refuses every write after it, and its
    /// refusal does not say why.
    write_failure: OnceLock<String>,
    db: Database,
    instances: Keyspace,
    history: Keyspace,
    work: Keyspace,
    progress: Keyspace,
}

/// The keyspace a write goes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Space {
    Instances,
    History,
    Work,
    Progress,
}

/// The writes of one call to `commit`, in order, with their values encoded back to back
/// in one buffer (one allocation per call, not one per value).
#[derive(Default)]
struct Writes {
    /// Keyspace, key, and the value's range in `values` (`None` removes the key).
    writes: Vec<(Space, Slice, Option<Range<usize>>)>,
    values: Vec<u8>,
}

impl Writes {
    fn put(&mut self, space: Space, key: &[u8], value: &[u8]) {
        let start = self.values.len();
        self.values.extend_from_slice(value);
        self.writes
            .push((space, Slice::from(key), Some(start..self.values.len())));
    }

    fn encode<T: Serialize>(
        &mut self,
        space: Space,
        key: &[u8],
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        let start = self.values.len();
        self.values = postcard::to_extend(value, std::mem::take(&mut self.values))
            .map_err(|e| StoreError::Io(format!("cannot encode {}: {e}", what())))?;
        self.writes
            .push((space, Slice::from(key), Some(start..self.values.len())));
        Ok(())
    }

    fn remove(&mut self, space: Space, key: &[u8]) {
        self.writes.push((space, Slice::from(key), None));
    }

    /// The last write of each key, in order. Every write of a batch gets the same sequence
    /// number in fjall, so two writes of one key in one batch would not say which is
    /// newer: only the last one is kept. (Keys rarely repeat in a batch; finding out costs
    /// a hash per key, far less than sorting them.)
    fn into_last_writes(self) -> impl Iterator<Item = (Space, Slice, Option<Slice>)> {
        let Writes { writes, values } = self;
        let keep = {
            let mut last = HashMap::with_capacity(writes.len());
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
            .map(move |(_, (space, key, value))| {
                (space, key, value.map(|range| Slice::from(&values[range])))
            })
    }
}

impl FjallStore {
    /// Opens the store in `path` with [`Durability::Sync`], creating it if `path` does not
    /// exist or is an empty directory.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotAStore`] if `path` holds something else, [`StoreError::Corrupt`] if
    /// the store's files cannot be read back, [`StoreError::Io`] if the store is already open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::default())
    }

    /// Opens the store in `path` with the given durability of commits.
    ///
    /// # Errors
    ///
    /// As [`FjallStore::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if check_directory(&path)? == Found::Nothing {
            create(&path)?;
        }
        // fjall may panic on files it cannot make sense of; a bad directory is an error here.
        let inner = match catch_unwind(AssertUnwindSafe(|| open_database(&path, durability))) {
            Ok(opened) => opened?,
            Err(panic) => {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "the storage engine panicked while opening it ({})",
                        panic_message(panic.as_ref())
                    ),
                    path,
                });
            }
        };
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

    fn keyspace(&self, space: Space) -> &Keyspace {
        match space {
            Space::Instances => &self.inner.instances,
            Space::History => &self.inner.history,
            Space::Work => &self.inner.work,
            Space::Progress => &self.inner.progress,
        }
    }

    /// Maps a fjall error of `doing` something to [`StoreError::Io`], or to
    /// [`StoreError::Poisoned`] when fjall refuses to write at all.
    fn io<'a>(&'a self, doing: &'a str) -> impl FnOnce(fjall::Error) -> StoreError + 'a {
        move |e| match e {
            fjall::Error::Poisoned => StoreError::Poisoned {
                path: Some(self.inner.path.clone()),
                detail: match self.inner.write_failure.get() {
                    Some(failure) => format!("the first failure: {failure}"),
                    // fjall also poisons the database when a background flush panics.
                    None => "fjall refuses writes after a failed write, fsync or background \
                             flush"
                        .to_owned(),
                },
            },
            e => StoreError::Io(format!(
                "{doing} the store at `{}`: {}",
                self.inner.path.display(),
                describe(&e)
            )),
        }
    }

    /// As [`io`](Self::io) for a write or sync, which poisons fjall when it fails: keeps the
    /// first failure, to say later why writes are refused.
    fn write_error<'a>(&'a self, doing: &'a str) -> impl FnOnce(fjall::Error) -> StoreError + 'a {
        move |e| {
            if !matches!(e, fjall::Error::Poisoned) {
                let _ = self
                    .inner
                    .write_failure
                    .set(format!("{doing} it: {}", describe(&e)));
            }
            self.io(doing)(e)
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

impl Store for FjallStore {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        if commits.iter().all(Commit::is_empty) {
            return Ok(());
        }
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
        let mode = match self.inner.durability {
            Durability::Sync => PersistMode::SyncAll,
            // Flushed to the OS, so the commit survives a crash of this process.
            Durability::Buffered => PersistMode::Buffer,
        };
        // Held from the reads below to the commit, so no other commit writes in between.
        let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self.inner.db.batch().durability(Some(mode));
        for (space, key, value) in writes.into_last_writes() {
            match value {
                Some(value) => batch.insert(self.keyspace(space), key, value),
                // Every activity result removes its progress checkpoint, and almost none
                // has one: a tombstone for each would be written, synced and compacted
                // for nothing.
                None if space == Space::Progress
                    && !self
                        .inner
                        .progress
                        .contains_key(&key)
                        .map_err(self.io("reading"))? => {}
                None => batch.remove(self.keyspace(space), key),
            }
        }
        batch.commit().map_err(self.write_error("writing to"))
    }

    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        if !keys::is_storable(id) {
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
            })?;
            let record = decode(&value, || {
                format!("instance record `{id}` (keyspace `instances`)")
            })?;
            out.push((id, record));
        }
        Ok(out)
    }

    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        if !keys::is_storable(id) {
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
                })?;
            out.push(decode(&value, || {
                format!("event #{index} of `{id}` (keyspace `history`)")
            })?);
        }
        Ok(out)
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
                })?;
            let item = decode(&value, || format!("work item {work_id} (keyspace `work`)"))?;
            out.push((work_id, item));
        }
        Ok(out)
    }

    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !keys::is_storable(key) {
            return Ok(None);
        }
        let value = self.inner.progress.get(key).map_err(self.io("reading"))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }
}

/// What [`check_directory`] found at the store's path.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// No directory, or an empty one: the store is to be created.
    Nothing,
    /// A fjall database.
    Database,
}

/// Creates a new store at `path` so that a crash at any moment leaves either no store or a
/// complete one: the database is built in a sibling staging directory, synced, and renamed
/// into place. (A database killed halfway through fjall's own creation would otherwise be
/// left without its `version` file, which no later open can tell from corruption.)
fn create(path: &Path) -> Result<(), StoreError> {
    let io = |doing: &str, e: std::io::Error| {
        StoreError::Io(format!(
            "{doing} for the store at `{}`: {e}",
            path.display()
        ))
    };
    let name = path.file_name().ok_or_else(|| StoreError::NotAStore {
        path: path.to_path_buf(),
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io("creating the parent directory", e))?;
    let mut staging_name = name.to_os_string();
    staging_name.push(".creating");
    let staging = parent.join(staging_name);
    if staging.exists() {
        // Left by a creation that was interrupted: it never became the store.
        std::fs::remove_dir_all(&staging).map_err(|e| io("removing an unfinished creation", e))?;
    }
    let built = catch_unwind(AssertUnwindSafe(|| {
        open_database(&staging, Durability::Sync).and_then(|inner| {
            inner
                .db
                .persist(PersistMode::SyncAll)
                .map_err(|e| StoreError::Io(describe(&e)))
        })
    }));
    match built {
        Ok(result) => result?,
        Err(panic) => {
            return Err(StoreError::Io(format!(
                "creating the store at `{}`: the storage engine panicked ({})",
                path.display(),
                panic_message(panic.as_ref())
            )));
        }
    }
    // An empty directory at `path` is replaced; rename(2) allows that for directories.
    std::fs::rename(&staging, path).map_err(|e| io("moving the new store into place", e))?;
    std::fs::File::open(&parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io("syncing the parent directory", e))
}

/// Refuses a `path` that holds something other than a fjall database, before fjall writes
/// into it.
fn check_directory(path: &Path) -> Result<Found, StoreError> {
    let cannot_read = |e: std::io::Error| {
        StoreError::Io(format!(
            "cannot read the directory `{}`: {e}",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(cannot_read(e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {}
    }
    let names = std::fs::read_dir(path)
        .map_err(cannot_read)?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<Vec<OsString>, _>>()
        .map_err(cannot_read)?;
    let has = |name: &str| names.iter().any(|n| n == name);
    if names.is_empty() {
        return Ok(Found::Nothing);
    }
    if has("version") && has("keyspaces") {
        return Ok(Found::Database);
    }
    // The names fjall 3 creates at the top of its directory.
    let is_fjalls = |name: &OsString| {
        let name = name.to_string_lossy();
        matches!(&*name, "version" | "lock" | "keyspaces") || name.ends_with(".jnl")
    };
    if names.iter().all(is_fjalls) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "the fjall database has lost its `version` file or `keyspaces` directory"
                .to_owned(),
        });
    }
    Err(StoreError::NotAStore {
        path: path.to_path_buf(),
    })
}

/// Opens the database and its keyspaces, refusing a fjall database that is not a durable
/// store.
fn open_database(path: &Path, durability: Durability) -> Result<Inner, StoreError> {
    let corrupt = |e: fjall::Error| match e {
        fjall::Error::Locked => StoreError::Io(format!(
            "the durable store at `{}` is already open (in another process, or through another \
             handle in this one); close it first or use another directory",
            path.display()
        )),
        e => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("fjall cannot open it: {}", describe(&e)),
        },
    };
    let db = Database::builder(path).open().map_err(corrupt)?;
    let open = |name: &str| {
        db.keyspace(name, KeyspaceCreateOptions::default)
            .map_err(corrupt)
    };
    let marker = if db.keyspace_exists("meta") {
        open("meta")?.get(FORMAT_KEY).map_err(corrupt)?
    } else {
        None
    };
    let current = format_marker(FORMAT_VERSION);
    match marker {
        Some(found) if *found == *current.as_bytes() => {}
        Some(found) => {
            let found = String::from_utf8_lossy(&found).into_owned();
            let version = found
                .strip_prefix("durable-store/")
                .and_then(|v| v.parse::<u32>().ok());
            return Err(match version {
                Some(version) => StoreError::OtherFormat {
                    path: path.to_path_buf(),
                    found: version,
                    current: FORMAT_VERSION,
                },
                None => StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!(
                        "it is marked as format `{found}`, which is not a durable-store format"
                    ),
                },
            });
        }
        None => {
            check_unmarked(&db, path)?;
            let meta = open("meta")?;
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&meta, FORMAT_KEY, current.as_bytes());
            batch.commit().map_err(corrupt)?;
        }
    }
    let [_, instances, history, work, progress] = KEYSPACES;
    Ok(Inner {
        path: path.to_path_buf(),
        durability,
        writer: Mutex::new(()),
        write_failure: OnceLock::new(),
        instances: open(instances)?,
        history: open(history)?,
        work: open(work)?,
        progress: open(progress)?,
        db,
    })
}

/// Accepts a database without a format marker only if it is new: no keyspaces, or just the
/// empty `meta` of a first open that was interrupted before it wrote the marker.
fn check_unmarked(db: &Database, path: &Path) -> Result<(), StoreError> {
    let names = db.list_keyspace_names();
    if names.iter().any(|name| !KEYSPACES.contains(&&**name)) {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        });
    }
    let fresh = match &names[..] {
        [] => true,
        [only] if &**only == "meta" => db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .and_then(|meta| meta.is_empty())
            .unwrap_or(false),
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: "its format marker (`format` in keyspace `meta`) is missing".to_owned(),
    })
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        what: what(),
        detail: e.to_string(),
    })
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
