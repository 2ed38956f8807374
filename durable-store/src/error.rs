//! [`StoreError`]: what a store reports, each with what to do, and the cause it came from.
//!
//! The error is `Clone` (the engine hands one failed commit's error to every caller of the
//! group), so the underlying error is kept in an `Arc` and reached through
//! [`std::error::Error::source`].

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lease::WorkerId;

/// Errors of a store. Each says what is wrong and what to do.
///
/// [`source`](std::error::Error::source) returns the error of the storage engine, the
/// file system or the decoder behind [`Corrupt`](Self::Corrupt), [`Decode`](Self::Decode),
/// [`Poisoned`](Self::Poisoned) and [`Io`](Self::Io), when there is one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory exists and holds something that is not a durable store.
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// The store is already open, in another process or through another handle in this
    /// one: the storage engine locks its directory (fjall's `Error::Locked`).
    AlreadyOpen {
        /// The directory.
        path: PathBuf,
    },
    /// The store's files could not be read back.
    Corrupt {
        /// The directory.
        path: PathBuf,
        /// What the storage engine reported.
        detail: String,
        /// The storage engine's error, if it reported one.
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// The store was written in another version of the store's format, which this build
    /// does not read (format 1 stored user payloads in postcard; format 2, JSON).
    OtherFormat {
        /// The directory.
        path: PathBuf,
        /// The format the store is marked with.
        found: u32,
        /// The format this build reads and writes
        /// ([`FORMAT_VERSION`](crate::FORMAT_VERSION)).
        current: u32,
    },
    /// A stored record does not decode.
    Decode {
        /// Which record (keyspace and key).
        what: String,
        /// The decoder's message.
        detail: String,
        /// The decoder's error, if there is one (a key of the wrong shape has none).
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// The store refuses a key of the call: an empty or oversized instance id or progress
    /// key, or a history append past the last event index. The call wrote nothing.
    InvalidKey {
        /// What the key names.
        kind: KeyKind,
        /// The key, cut to its first 64 characters and `…` if longer.
        key: String,
        /// Why it is refused, and what to use instead.
        reason: String,
    },
    /// The store refuses every write since an earlier write or fsync failed, because it can
    /// no longer tell what reached the disk. The call wrote nothing; reads still work.
    ///
    /// Commits acknowledged before the failure are kept (with
    /// [`Durability::Buffered`](crate::Durability::Buffered), only those already synced are
    /// sure to be). The commit whose write failed may or may not be on disk. Drop every
    /// handle of the store and open it again (in practice: restart the process) to write
    /// again.
    Poisoned {
        /// The store's directory, if it has one.
        path: Option<PathBuf>,
        /// What the storage engine reported, and the failure that started it when known.
        detail: String,
        /// The error of the failure that started it, when known.
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// The database server of a store could not be used: it is out of reach, or it refused
    /// the connection or the schema (credentials, database, permissions).
    Server {
        /// The server and database, as `user@host:port/database` (never the password).
        server: String,
        /// What went wrong.
        problem: ServerProblem,
        /// What the server or the network reported.
        detail: String,
        /// The client library's error.
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
    /// The database holds durable's schema in another version than the one this build
    /// reads and writes.
    OtherSchema {
        /// The server and database, as `user@host:port/database`.
        server: String,
        /// The schema version the database is marked with.
        found: u32,
        /// The schema version this build reads and writes.
        current: u32,
    },
    /// The database holds no durable schema, and the store was opened to read what is
    /// there ([`PostgresStore::open_existing`](crate::PostgresStore::open_existing)), not
    /// to create it.
    NoSchema {
        /// The server and database, as `user@host:port/database`.
        server: String,
    },
    /// A history append does not start where the stored history ends: another writer
    /// changed the history since this one read it (the instance ran elsewhere). The call
    /// wrote nothing.
    HistoryConflict {
        /// The instance.
        instance: String,
        /// Where the append starts ([`HistoryAppend::first`](crate::HistoryAppend::first)).
        first: u32,
        /// How many events the stored history holds.
        stored: u32,
    },
    /// The worker's lease expired (or it left the store) before the call: the store
    /// refuses its commits, renewals and claims. Another worker may have taken over its
    /// work; nothing was written. A worker that gets this must drop what it holds and join
    /// again ([`Store::join`](crate::Store::join)).
    LeaseExpired {
        /// The worker whose lease is gone.
        worker: WorkerId,
    },
    /// A commit under the lease of `worker` writes an instance, or removes a work item,
    /// that another worker holds under a live lease: `worker` lost it (its lease lapsed
    /// and another took over). Nothing was written; drop the instance and read it again.
    Fenced {
        /// The worker whose commit was refused.
        worker: WorkerId,
        /// What it would have written: `instance `id`` or `work item N`.
        what: String,
        /// The worker that holds it.
        holder: WorkerId,
    },
    /// A commit expected an instance in one incarnation (or absent), and the store holds
    /// another ([`Commit::expected`](crate::Commit::expected)): another client or worker
    /// started, restarted or purged it since it was read. Nothing was written.
    InstanceChanged {
        /// The instance.
        instance: String,
        /// The incarnation the commit expected; `None` for absent.
        expected: Option<crate::Incarnation>,
        /// The incarnation stored; `None` for absent, or not known (a commit that
        /// expected the instance absent, refused on PostgreSQL because another transaction
        /// created it meanwhile).
        found: Option<crate::Incarnation>,
    },
    /// The storage engine failed to read or write.
    Io {
        /// What was being done, and what failed.
        detail: String,
        /// The error of the storage engine or the file system, if there is one (an
        /// injected fault of a test store has none).
        source: Option<Arc<dyn Error + Send + Sync>>,
    },
}

/// What the key of a [`StoreError::InvalidKey`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An instance id: of an instance record, or of a history removed or appended to.
    InstanceId,
    /// The key of an activity's progress checkpoint.
    ProgressKey,
    /// The event indices of a history append that runs past the last index a history
    /// holds (2^32 - 1); the key quoted is the instance id.
    EventIndex,
}

/// What kept a [`StoreError::Server`] from using its database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerProblem {
    /// Nothing answers at the address, or the connection broke.
    Unreachable,
    /// The server refused the user name or the password.
    Authentication,
    /// The database does not exist on the server.
    NoDatabase,
    /// The user may not do what the store needs (connect, create its schema, write).
    Permission,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::InstanceId => "instance id",
            KeyKind::ProgressKey => "progress key",
            KeyKind::EventIndex => "events of instance",
        })
    }
}

impl StoreError {
    /// Whether retrying the same call cannot succeed until the store is reopened or the call
    /// is changed: a caller should fail fast instead of retrying.
    ///
    /// True for [`InvalidKey`](Self::InvalidKey) (change the key), [`Poisoned`](Self::Poisoned)
    /// (reopen the store), [`AlreadyOpen`](Self::AlreadyOpen) (close the other handle),
    /// [`NotAStore`](Self::NotAStore), [`OtherFormat`](Self::OtherFormat) and
    /// [`Corrupt`](Self::Corrupt) (fix the directory), and [`Decode`](Self::Decode) (the
    /// record reads the same every time; other records may still read). False for
    /// [`Io`](Self::Io), which may pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use durable_store::{Commit, FjallStore, KeyKind, Store, StoreError};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = FjallStore::open(dir.path())?;
    /// let err = store
    ///     .commit(&[Commit {
    ///         progress: vec![(String::new(), Some(vec![1]))],
    ///         ..Commit::default()
    ///     }])
    ///     .unwrap_err();
    /// assert!(matches!(err, StoreError::InvalidKey { kind: KeyKind::ProgressKey, .. }));
    /// assert!(err.is_permanent());
    /// let busy = StoreError::Io {
    ///     detail: "disk busy".to_owned(),
    ///     source: None,
    /// };
    /// assert!(!busy.is_permanent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::NotAStore { .. }
            | StoreError::AlreadyOpen { .. }
            | StoreError::OtherFormat { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Decode { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::Poisoned { .. }
            | StoreError::OtherSchema { .. }
            | StoreError::NoSchema { .. }
            | StoreError::HistoryConflict { .. }
            | StoreError::LeaseExpired { .. }
            | StoreError::Fenced { .. }
            | StoreError::InstanceChanged { .. } => true,
            StoreError::Server { problem, .. } => *problem != ServerProblem::Unreachable,
            StoreError::Io { .. } => false,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotAStore { path } => write!(
                f,
                "`{}` is not a durable store (it holds other files); point the store at an \
                 empty or new directory",
                path.display()
            ),
            StoreError::AlreadyOpen { path } => write!(
                f,
                "the durable store at `{}` is already open (in another process, or through \
                 another handle in this one); close it first, share the open handle (clones \
                 of a store share it), or use another directory",
                path.display()
            ),
            StoreError::Corrupt { path, detail, .. } => write!(
                f,
                "the durable store at `{}` is corrupt or unreadable: {detail}; restore it from \
                 a backup or move it aside",
                path.display()
            ),
            StoreError::OtherFormat {
                path,
                found,
                current,
            } => write!(
                f,
                "the durable store at `{}` is in format {found}, and this build of durable \
                 reads format {current}{}",
                path.display(),
                other_format_advice(*found, *current)
            ),
            StoreError::Decode { what, detail, .. } => write!(
                f,
                "stored {what} does not decode ({detail}); the store was written by an \
                 incompatible version or is damaged"
            ),
            StoreError::InvalidKey { kind, key, reason } => {
                write!(f, "cannot store {kind} {key:?}: {reason}")
            }
            StoreError::Poisoned { path, detail, .. } => write!(
                f,
                "the durable store{} refused further writes after a failed disk write \
                 ({detail}); restart the process (reopen the store) to continue: what was \
                 acknowledged before the failure is kept (with `Durability::Buffered`, only \
                 what was synced)",
                at(path.as_deref())
            ),
            StoreError::Server {
                server,
                problem,
                detail,
                ..
            } => write!(f, "{} ({detail})", server_advice(server, *problem)),
            StoreError::OtherSchema {
                server,
                found,
                current,
            } => write!(
                f,
                "the database {server} holds durable's schema version {found}, and this build \
                 of durable reads version {current}; {}",
                if found > current {
                    "it was written by a newer durable: run that version, or point this one at \
                     another database"
                } else {
                    "open it once with this build's `PostgresStore::open` (an application's \
                     start does), which migrates it, or point this one at another database"
                }
            ),
            StoreError::NoSchema { server } => write!(
                f,
                "the database {server} holds no durable schema: no application has kept a \
                 store there (check the URL's database; an application's \
                 `PostgresStore::open` creates it)"
            ),
            StoreError::HistoryConflict {
                instance,
                first,
                stored,
            } => write!(
                f,
                "the history of instance `{instance}` holds {stored} events, and the commit \
                 appends at index {first}: another writer changed it since it was read; \
                 nothing was written: read the instance again"
            ),
            StoreError::LeaseExpired { worker } => write!(
                f,
                "the lease of worker {worker} expired (or it left): the store refuses its \
                 writes, and another worker may have taken its work over; nothing was \
                 written: join the store again"
            ),
            StoreError::Fenced {
                worker,
                what,
                holder,
            } => write!(
                f,
                "worker {worker} no longer holds {what}: worker {holder} took it over under \
                 a live lease; nothing was written: drop it and read it again"
            ),
            StoreError::InstanceChanged {
                instance,
                expected,
                found,
            } => {
                match (expected, found) {
                    (None, _) => write!(
                        f,
                        "instance `{instance}` was expected absent, and another client or \
                         worker created it"
                    )?,
                    (Some(expected), Some(found)) => write!(
                        f,
                        "instance `{instance}` was expected in incarnation {expected:#x}, and \
                         is in {found:#x}: another client or worker restarted it"
                    )?,
                    (Some(expected), None) => write!(
                        f,
                        "instance `{instance}` was expected in incarnation {expected:#x}, and \
                         is gone: another client or worker purged it"
                    )?,
                }
                f.write_str(" since it was read; nothing was written: read it again")
            }
            StoreError::Io { detail, .. } => write!(f, "storage I/O failed: {detail}"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StoreError::Corrupt { source, .. }
            | StoreError::Decode { source, .. }
            | StoreError::Poisoned { source, .. }
            | StoreError::Server { source, .. }
            | StoreError::Io { source, .. } => source.as_deref().map(|e| e as _),
            StoreError::OtherSchema { .. }
            | StoreError::NoSchema { .. }
            | StoreError::HistoryConflict { .. }
            | StoreError::LeaseExpired { .. }
            | StoreError::Fenced { .. }
            | StoreError::InstanceChanged { .. } => None,
            StoreError::NotAStore { .. }
            | StoreError::AlreadyOpen { .. }
            | StoreError::OtherFormat { .. }
            | StoreError::InvalidKey { .. } => None,
        }
    }
}

/// `error` as the cause of a [`StoreError`].
pub(crate) fn cause(
    error: impl Error + Send + Sync + 'static,
) -> Option<Arc<dyn Error + Send + Sync>> {
    Some(Arc::new(error))
}

/// What to do with a store of format `found` that a build reading `current` refuses.
fn other_format_advice(found: u32, current: u32) -> &'static str {
    if found > current {
        "; it was written by a newer durable: open it with that version"
    } else if found == 1 {
        " (format 1 stored user payloads in postcard, which no longer decodes; format 2 stores \
         JSON); finish or terminate its instances with the durable that wrote it, then start \
         this version on a new directory"
    } else {
        "; finish or terminate its instances with the durable that wrote it, then start this \
         version on a new directory"
    }
}

/// What a [`StoreError::Server`] says is wrong with `server`, and what to do.
fn server_advice(server: &str, problem: ServerProblem) -> String {
    match problem {
        ServerProblem::Unreachable => format!(
            "cannot reach the PostgreSQL server for {server}: check that it runs and that the \
             host and port are right"
        ),
        ServerProblem::Authentication => format!(
            "the PostgreSQL server refused the credentials for {server}: check the user name \
             and password of the URL"
        ),
        ServerProblem::NoDatabase => format!(
            "the database of {server} does not exist: create it (`createdb`, or `CREATE \
             DATABASE`) or name another in the URL"
        ),
        ServerProblem::Permission => format!(
            "the user of {server} lacks a permission the store needs: grant it CONNECT on the \
             database and CREATE on it (for the `durable` schema), or use another user"
        ),
    }
}

/// The words that name the store's directory in a message, if it has one.
fn at(path: Option<&Path>) -> String {
    path.map(|path| format!(" at `{}`", path.display()))
        .unwrap_or_default()
}
