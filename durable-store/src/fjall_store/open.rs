//! How a [`FjallStore`] is opened: the directory checked, a new store created atomically,
//! the format marker read or written, the keyspaces opened.

use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use fjall::{Database, KeyspaceCreateOptions, PersistMode};

use super::index::{BY_ORCHESTRATOR, BY_STATUS, count_key, slot};
use super::work::WorkIds;
use super::{Inner, describe, migrate, panic_message};
use crate::error::{StoreError, cause};
use crate::record::StatusKind;
use crate::store::Durability;

/// The key of the format marker in `meta`.
pub(super) const FORMAT_KEY: &[u8] = b"format";
/// The version of the format this code reads and writes. Bump it whenever what is stored
/// changes incompatibly (a record's fields or variants, the payload encoding); a store
/// marked with another version is then refused at open with [`StoreError::OtherFormat`].
///
/// 1: user payloads in postcard. 2: user payloads in JSON; `Event::EventSetAside`; an
/// incarnation on instances, deliveries and parent links; an attempt timeout on activity
/// tasks. 3: the indexes `by_status` and `by_orchestrator` and the counters by status
/// (a store of format 2 is migrated when opened: its indexes are built once).
pub const FORMAT_VERSION: u32 = 3;
/// The format a store is migrated from at open, by building what format 3 adds.
const MIGRATED_FROM: u32 = 2;
/// The marker of a store of format `version`.
fn format_marker(version: u32) -> String {
    format!("durable-store/{version}")
}
/// The memtable size of the index keyspaces, in bytes (fjall's default is 64 MiB).
const INDEX_MEMTABLE_BYTES: u64 = 1024 * 1024;
/// The memtable size of `meta`, in bytes.
const META_MEMTABLE_BYTES: u64 = 256 * 1024;
/// Every keyspace of a store. `meta` is created (and its marker synced) before the others.
const KEYSPACES: [&str; 7] = [
    "meta",
    "instances",
    "history",
    "work",
    "progress",
    BY_STATUS,
    BY_ORCHESTRATOR,
];

/// Opens the store in `path`, creating it if `path` does not exist or is an empty
/// directory: the body of [`FjallStore::open_with`](super::FjallStore::open_with).
pub(super) fn open(path: &Path, durability: Durability) -> Result<Inner, StoreError> {
    if check_directory(path)? == Found::Nothing {
        create(path)?;
    }
    // fjall may panic on files it cannot make sense of; a bad directory is an error here.
    match catch_unwind(AssertUnwindSafe(|| open_database(path, durability))) {
        Ok(opened) => opened,
        Err(panic) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the storage engine panicked while opening it ({})",
                panic_message(panic.as_ref())
            ),
            source: None,
        }),
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
    let io = |doing: &str, e: std::io::Error| StoreError::Io {
        detail: format!("{doing} for the store at `{}`: {e}", path.display()),
        source: cause(e),
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
                .map_err(|e| StoreError::Io {
                    detail: format!(
                        "syncing the new store at `{}`: {}",
                        staging.display(),
                        describe(&e)
                    ),
                    source: cause(e),
                })
        })
    }));
    match built {
        Ok(result) => result?,
        Err(panic) => {
            return Err(StoreError::Io {
                detail: format!(
                    "creating the store at `{}`: the storage engine panicked ({})",
                    path.display(),
                    panic_message(panic.as_ref())
                ),
                source: None,
            });
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
    let cannot_read = |e: std::io::Error| StoreError::Io {
        detail: format!("cannot read the directory `{}`: {e}", path.display()),
        source: cause(e),
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
            source: None,
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
        fjall::Error::Locked => StoreError::AlreadyOpen {
            path: path.to_path_buf(),
        },
        e => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("fjall cannot open it: {}", describe(&e)),
            source: cause(e),
        },
    };
    let db = Database::builder(path).open().map_err(corrupt)?;
    let open = |name: &str| {
        db.keyspace(name, || {
            let options = KeyspaceCreateOptions::default();
            match name {
                // Small memtables, flushed often: a flush drops the entries of instances
                // that started and finished within it with their weak tombstones (see
                // `index`), so a scan of the live range, and its replay at open, meets few.
                BY_STATUS | BY_ORCHESTRATOR => options.max_memtable_size(INDEX_MEMTABLE_BYTES),
                // The counters change in most batches; a memtable that flushes rarely
                // would keep every journal file since its last flush for the next open to
                // replay.
                "meta" => options.max_memtable_size(META_MEMTABLE_BYTES),
                _ => options,
            }
        })
        .map_err(corrupt)
    };
    let marker = if db.keyspace_exists("meta") {
        open("meta")?.get(FORMAT_KEY).map_err(corrupt)?
    } else {
        None
    };
    let current = format_marker(FORMAT_VERSION);
    let mut migrating = false;
    match marker {
        Some(found) if *found == *current.as_bytes() => {}
        Some(found) if *found == *format_marker(MIGRATED_FROM).as_bytes() => migrating = true,
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
                    source: None,
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
    let [
        meta,
        instances,
        history,
        work,
        progress,
        by_status,
        by_orchestrator,
    ] = KEYSPACES;
    let inner = Inner {
        path: path.to_path_buf(),
        durability,
        writer: Mutex::new(()),
        write_failure: OnceLock::new(),
        counts: Mutex::new([0; StatusKind::ALL.len()]),
        work_ids: Mutex::new(WorkIds::default()),
        live: Mutex::new(Default::default()),
        leases: Mutex::new(Default::default()),
        signal: Default::default(),
        next_work_id: Mutex::new(None),
        meta: open(meta)?,
        instances: open(instances)?,
        history: open(history)?,
        work: open(work)?,
        progress: open(progress)?,
        by_status: open(by_status)?,
        by_orchestrator: open(by_orchestrator)?,
        db,
    };
    if migrating {
        migrate::build_indexes(&inner, &current)?;
    }
    let mut counts = [0; StatusKind::ALL.len()];
    for kind in StatusKind::ALL {
        if let Some(bytes) = inner.meta.get(count_key(kind)).map_err(corrupt)? {
            let bytes = <[u8; 8]>::try_from(&*bytes).map_err(|_| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("the counter of {kind} instances (keyspace `meta`) is not a u64"),
                source: None,
            })?;
            counts[slot(kind)] = u64::from_be_bytes(bytes);
        }
    }
    *inner.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
    *inner.work_ids.lock().unwrap_or_else(|p| p.into_inner()) =
        WorkIds::load(&inner.meta).map_err(corrupt)?;
    // The journal's replay put back in memory every work item written and removed since
    // the last flush, each with its weak tombstone: a flush drops both (see `work`), so
    // recovery's scan of the queue meets only the items still queued. (Kept in a large
    // memtable while running: work flushes carry payloads, and the queue is scanned only
    // at start.)
    inner.work.rotate_memtable_and_wait().map_err(corrupt)?;
    Ok(inner)
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
        source: None,
    })
}
