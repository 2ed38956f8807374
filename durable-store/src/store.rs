//! The `Store` trait: what the engine needs from durable storage.

use crate::error::StoreError;
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
