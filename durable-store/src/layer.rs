//! [`StoreLayer`]: a test store that wraps another and changes a few of its calls (holds a
//! commit back, fails a claim, counts renewals), written as only the calls it changes.

use std::ops::Deref;
use std::time::Duration;

use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{InstanceCursor, InstanceFilter, InstancePage, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};
use crate::store::Store;

/// A store that wraps another: every [`Store`] call goes to [`inner`](Self::inner) unless
/// the layer overrides it. Run the runtime on [`Layered`]`(layer)`, which is the [`Store`].
///
/// ```
/// use durable_store::{Commit, Layered, MemoryStore, Store, StoreError, StoreLayer};
///
/// /// Counts commits; everything else is the memory store's.
/// #[derive(Default)]
/// struct Counting {
///     inner: MemoryStore,
///     commits: std::sync::atomic::AtomicU64,
/// }
///
/// impl StoreLayer for Counting {
///     fn inner(&self) -> &dyn Store {
///         &self.inner
///     }
///     fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
///         self.commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
///         self.inner.commit(commits)
///     }
/// }
///
/// let store = Layered(Counting::default());
/// store.commit(&[Commit::default()]).unwrap();
/// assert_eq!(store.commits.load(std::sync::atomic::Ordering::SeqCst), 1);
/// ```
pub trait StoreLayer: Send + Sync + 'static {
    /// The store this layer wraps.
    fn inner(&self) -> &dyn Store;

    /// [`Store::commit`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.inner().commit(commits)
    }
    /// [`Store::instance`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.inner().instance(id)
    }
    /// [`Store::instances`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.inner().instances()
    }
    /// [`Store::list_instances`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        self.inner().list_instances(filter, after, limit)
    }
    /// [`Store::count_by_status`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.inner().count_by_status()
    }
    /// [`Store::live_instances`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.inner().live_instances()
    }
    /// [`Store::instances_with_prefix`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.inner().instances_with_prefix(prefix, after, limit)
    }
    /// [`Store::remove_idle_entities`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.inner().remove_idle_entities(ids)
    }
    /// [`Store::history`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        self.inner().history(id)
    }
    /// [`Store::work_items`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.inner().work_items()
    }
    /// [`Store::progress`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner().progress(key)
    }
    /// [`Store::is_shared`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn is_shared(&self) -> bool {
        self.inner().is_shared()
    }
    /// [`Store::location`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn location(&self) -> Option<&std::path::Path> {
        self.inner().location()
    }
    /// [`Store::commit_concurrency`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn commit_concurrency(&self) -> usize {
        self.inner().commit_concurrency()
    }
    /// [`Store::join`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        self.inner().join(lease)
    }
    /// [`Store::renew`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.inner().renew(worker, lease)
    }
    /// [`Store::leave`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        self.inner().leave(worker)
    }
    /// [`Store::claim`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        self.inner().claim(worker, filter)
    }
    /// [`Store::claim_tasks`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        self.inner().claim_tasks(worker, tasks, filter)
    }
    /// [`Store::reserve_work_ids`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        self.inner().reserve_work_ids(count)
    }
    /// [`Store::wait_for_work`]; forwarded to [`inner`](Self::inner) unless overridden.
    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.inner().wait_for_work(timeout)
    }
}

/// The [`Store`] a [`StoreLayer`] makes; derefs to the layer, so a test reaches the
/// layer's own fields and methods through it.
#[derive(Debug, Clone, Default)]
pub struct Layered<L>(pub L);

impl<L> Deref for Layered<L> {
    type Target = L;

    fn deref(&self) -> &L {
        &self.0
    }
}

impl<L: StoreLayer> Store for Layered<L> {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        self.0.commit(commits)
    }
    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.0.instance(id)
    }
    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.0.instances()
    }
    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        self.0.list_instances(filter, after, limit)
    }
    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.0.count_by_status()
    }
    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.0.live_instances()
    }
    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.0.instances_with_prefix(prefix, after, limit)
    }
    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.0.remove_idle_entities(ids)
    }
    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        self.0.history(id)
    }
    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.0.work_items()
    }
    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.progress(key)
    }
    fn is_shared(&self) -> bool {
        self.0.is_shared()
    }
    fn location(&self) -> Option<&std::path::Path> {
        self.0.location()
    }
    fn commit_concurrency(&self) -> usize {
        self.0.commit_concurrency()
    }
    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        self.0.join(lease)
    }
    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.0.renew(worker, lease)
    }
    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        self.0.leave(worker)
    }
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        self.0.claim(worker, filter)
    }
    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        self.0.claim_tasks(worker, tasks, filter)
    }
    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        self.0.reserve_work_ids(count)
    }
    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.0.wait_for_work(timeout)
    }
}
