//! The `Store` trait: what the engine needs from durable storage.

use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};

/// Whether a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsync'd before it returns (the default): an acknowledged turn survives
    /// power loss.
    #[default]
    Sync,
    /// Commits are written to the journal without fsync: they survive a crash of the process,
    /// not of the machine.
    Buffered,
}

/// Errors of a store. Each says what is wrong and what to do.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory exists and holds something that is not a durable store.
    #[error(
        "`{path}` is not a durable store (it holds other files); point the store at an empty or new directory"
    )]
    NotAStore {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// The store's files could not be read back.
    #[error(
        "the durable store at `{path}` is corrupt or unreadable: {detail}; restore it from a backup or move it aside"
    )]
    Corrupt {
        /// The directory.
        path: std::path::PathBuf,
        /// What the storage engine reported.
        detail: String,
    },
    /// The store was written in another version of the store's format, which this build
    /// does not read (format 1 stored user payloads in postcard; format 2, JSON).
    #[error(
        "the durable store at `{path}` is in format {found}, and this build of durable reads format {current}{}",
        other_format_advice(*.found, *.current)
    )]
    OtherFormat {
        /// The directory.
        path: std::path::PathBuf,
        /// The format the store is marked with.
        found: u32,
        /// The format this build reads and writes
        /// ([`FORMAT_VERSION`](crate::FORMAT_VERSION)).
        current: u32,
    },
    /// A stored record does not decode.
    #[error(
        "stored {what} does not decode ({detail}); the store was written by an incompatible version or is damaged"
    )]
    Decode {
        /// Which record (keyspace and key).
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// The store refuses a key of the call: an empty or oversized instance id or progress
    /// key, or a history append past the last event index. The call wrote nothing.
    #[error("cannot store {what} {key:?}: {reason}")]
    InvalidKey {
        /// What the key names: `"instance id"`, `"progress key"`, or `"events of instance"`
        /// for an append past the end of a history.
        what: &'static str,
        /// The key, cut to its first 64 characters and `…` if longer.
        key: String,
        /// Why it is refused, and what to use instead.
        reason: String,
    },
    /// The store refuses every write since an earlier write or fsync failed, because it can
    /// no longer tell what reached the disk. The call wrote nothing; reads still work.
    ///
    /// Commits acknowledged before the failure are kept (with [`Durability::Buffered`], only
    /// those already synced are sure to be). The commit whose write failed may or may not be
    /// on disk. Drop every handle of the store and open it again (in practice: restart the
    /// process) to write again.
    #[error(
        "the durable store{} refused further writes after a failed disk write ({detail}); restart the process (reopen the store) to continue: what was acknowledged before the failure is kept (with `Durability::Buffered`, only what was synced)",
        at(.path.as_deref())
    )]
    Poisoned {
        /// The store's directory, if it has one.
        path: Option<std::path::PathBuf>,
        /// What the storage engine reported, and the failure that started it when known.
        detail: String,
    },
    /// The storage engine failed to read or write.
    #[error("storage I/O failed: {0}")]
    Io(String),
}

impl StoreError {
    /// Whether retrying the same call cannot succeed until the store is reopened or the call
    /// is changed: a caller should fail fast instead of retrying.
    ///
    /// True for [`InvalidKey`](Self::InvalidKey) (change the key), [`Poisoned`](Self::Poisoned)
    /// (reopen the store), [`NotAStore`](Self::NotAStore), [`OtherFormat`](Self::OtherFormat)
    /// and [`Corrupt`](Self::Corrupt) (fix the directory), and [`Decode`](Self::Decode) (the record reads the same every
    /// time; other records may still read). False for [`Io`](Self::Io), which may pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use durable_store::{Commit, MemoryStore, Store, StoreError};
    ///
    /// let store = MemoryStore::new();
    /// let err = store
    ///     .commit(&[Commit {
    ///         progress: vec![(String::new(), Some(vec![1]))],
    ///         ..Commit::default()
    ///     }])
    ///     .unwrap_err();
    /// assert!(matches!(err, StoreError::InvalidKey { what: "progress key", .. }));
    /// assert!(err.is_permanent());
    /// assert!(!StoreError::Io("disk busy".to_owned()).is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::NotAStore { .. }
            | StoreError::OtherFormat { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Decode { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::Poisoned { .. } => true,
            StoreError::Io(_) => false,
        }
    }
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

/// The words that name the store's directory in a message, if it has one.
fn at(path: Option<&std::path::Path>) -> String {
    path.map(|path| format!(" at `{}`", path.display()))
        .unwrap_or_default()
}

/// Durable storage for instances, their histories, the work queue and activity progress.
///
/// Implementations must make each call to [`Store::commit`] atomic (all of its commits or
/// none) and, with [`Durability::Sync`], durable before it returns. Run
/// [`crate::conformance::run`] against an implementation to check it.
pub trait Store: Send + Sync + 'static {
    /// Applies `commits` atomically, in order, as one write (one fsync for all of them).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] if a key of any commit cannot be stored (nothing is
    /// written), [`StoreError::Poisoned`] if the store refuses writes since an earlier one
    /// failed, [`StoreError::Io`] if the write fails.
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError>;

    /// The record of one instance.
    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Every instance record, in id order.
    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError>;

    /// The full history of one instance, in order.
    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError>;

    /// Every work item not yet acknowledged, in id order.
    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError>;

    /// The progress checkpoint saved under `key`.
    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        (**self).commit(commits)
    }
    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        (**self).instance(id)
    }
    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        (**self).instances()
    }
    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        (**self).history(id)
    }
    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        (**self).work_items()
    }
    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).progress(key)
    }
}
