//! The `Store` trait: what the engine needs from durable storage.

use std::time::Duration;

use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{self, InstanceCursor, InstanceFilter, InstancePage, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};

/// Whether a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
/// `durable_store::conformance::run` (with the `testing` feature) against an implementation
/// to check it.
pub trait Store: Send + Sync + 'static {
    /// Applies `commits` atomically, in order, as one write (one fsync for all of them).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] if a key of any commit cannot be stored (nothing is
    /// written), [`StoreError::Poisoned`] if the store refuses writes since an earlier one
    /// failed, [`StoreError::Io`] if the write fails.
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError>;

    /// The record of one instance; `None` if there is none (or `id` is a key the store
    /// cannot hold).
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if the record does not decode, [`StoreError::Io`] if the read
    /// fails.
    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Every instance record, in id order. Reads the whole `instances` keyspace: its cost
    /// grows with the number of instances stored, finished ones included. Prefer
    /// [`list_instances`](Self::list_instances), [`count_by_status`](Self::count_by_status)
    /// or [`live_instances`](Self::live_instances).
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if an id or a record does not decode, [`StoreError::Io`] if
    /// the read fails.
    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError>;

    /// One page of the orchestration instances `filter` matches (never an entity's:
    /// [`InstanceFilter::matches`]), in creation order (`created_ms`, then
    /// id), starting after `after` (the [`InstancePage::next`] of the page before; `None`
    /// for the first page): at most `limit` instances (a limit of 0 counts as 1).
    ///
    /// The default implementation filters and sorts [`instances`](Self::instances): a full
    /// scan, whatever the page size. [`FjallStore`](crate::FjallStore) and `MemoryStore`
    /// read an index by status (and orchestrator, and creation time) instead: a page
    /// costs what it holds, plus the entries of the chosen statuses its filter skips
    /// (`finished_before_ms` is checked on the records).
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if a record or an index entry does not decode,
    /// [`StoreError::Io`] if the read fails.
    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        query::list_by_scan(self, filter, after, limit)
    }

    /// How many orchestration instances the store holds in each status (every
    /// [`StatusKind`](crate::StatusKind), zeros included); entities
    /// ([`is_entity`](crate::is_entity)) are not counted.
    ///
    /// The default implementation counts [`instances`](Self::instances): a full scan.
    /// [`FjallStore`](crate::FjallStore) and `MemoryStore` keep counters, updated in the
    /// commits that change statuses.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if a record or a counter does not decode,
    /// [`StoreError::Io`] if the read fails.
    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        query::count_by_scan(self)
    }

    /// Every orchestration instance that has not finished (entities are left out;
    /// pending, running, suspended or stalled:
    /// [`LIVE_STATUSES`](crate::LIVE_STATUSES)), in creation order: what recovery looks at.
    ///
    /// The default implementation filters [`instances`](Self::instances): a full scan.
    /// [`FjallStore`](crate::FjallStore) and `MemoryStore` read the live statuses of their
    /// status index: the cost grows with the live instances, not the finished ones.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if a record or an index entry does not decode,
    /// [`StoreError::Io`] if the read fails.
    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        query::live_by_scan(self)
    }

    /// Up to `limit` instances whose id starts with `prefix`, in id order (byte order),
    /// after the id `after` (the last id of the page before; `None` for the first page).
    /// Entities ([`is_entity`](crate::is_entity)) included: it is how they are listed,
    /// by their ids `@Name@key` (prefix `@Name@`).
    ///
    /// The default implementation filters [`instances`](Self::instances): a full scan.
    /// [`FjallStore`](crate::FjallStore), `MemoryStore` and `PostgresStore` read their
    /// primary key from `prefix` (or `after`) on: a page costs what it holds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if an id or a record does not decode, [`StoreError::Io`] if
    /// the read fails.
    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        query::prefix_by_scan(self, prefix, after, limit)
    }

    /// Removes, of the instances `ids`, the records of the idle entities, and returns
    /// their ids: an entity's record with no state and no lock owner
    /// ([`is_empty_entity`](crate::is_empty_entity)), that no live worker holds, and to
    /// which no work item is addressed. The check and the removal are one step: no
    /// commit comes between them. An entity is made again by the next operation sent to
    /// it; a sender that read its record before the removal and commits its message
    /// after it must expect the record ([`Commit::expected`]), so that the store refuses
    /// it and the sender makes the entity again.
    ///
    /// The default implementation removes nothing: a store removes only what it can check
    /// and remove in one step. [`FjallStore`](crate::FjallStore) and `MemoryStore` read
    /// their whole work queue once per call, under the lock commits take; `PostgresStore`
    /// locks the records' rows and reads the queue by `instance_id` (a scan of `work`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if a record or a work item does not decode,
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the read or write fails.
    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let _ = ids;
        Ok(Vec::new())
    }

    /// The full history of one instance, in order; empty if it has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if an event or its key does not decode, [`StoreError::Io`] if
    /// the read fails.
    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError>;

    /// Every work item not yet acknowledged, in id order. Reads the whole queue.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decode`] if an item or its key does not decode, [`StoreError::Io`] if
    /// the read fails.
    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError>;

    /// The progress checkpoint saved under `key`; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the read fails.
    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether other processes may share the store ([`PostgresStore`](crate::PostgresStore)),
    /// rather than one process holding it alone ([`FjallStore`](crate::FjallStore),
    /// `MemoryStore`). A runtime on a shared store claims only work for the code it has,
    /// leaving the rest to workers that have it.
    fn is_shared(&self) -> bool {
        false
    }

    /// The directory the store keeps its files in, for a store on local disk
    /// ([`FjallStore`](crate::FjallStore)); `None` (the default) for one elsewhere.
    /// Tools place files beside the store there, such as the dashboard's
    /// `durable-admin.url`.
    fn location(&self) -> Option<&std::path::Path> {
        None
    }

    /// How many calls to [`commit`](Store::commit) the store serves at once, each on a
    /// connection of its own: a runtime writes that many group-commit batches at a time.
    /// 1 (the default) for a store with one journal (fjall, memory), where a second writer
    /// would only wait for the first; more for a database server, where one batch is
    /// built and sent while another is applied and flushed.
    ///
    /// Concurrent calls carry commits that do not depend on each other: a runtime commits
    /// a turn, a result or a request only once what it builds on is durable.
    fn commit_concurrency(&self) -> usize {
        1
    }

    /// Starts a worker's lease, `lease` long from now by the store's clock: returns its id,
    /// which its claims and commits name (see [`crate::lease`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the write fails.
    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError>;

    /// Extends the lease of `worker` to `lease` from now, by the store's clock.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if its lease already expired or it left: a lapsed
    /// lease is never extended, since others may have taken its work over.
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the write fails.
    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError>;

    /// Ends the lease of `worker` now: everything it holds may be claimed by others at
    /// once. Leaving twice, or after the lease expired, is not an error.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the write fails.
    fn leave(&self, worker: WorkerId) -> Result<(), StoreError>;

    /// Takes, for `worker`, work no live worker holds, as `filter` allows: live instances
    /// no live worker holds that have work items no live worker holds (of any kind), or
    /// that are stalled (their turns from now on), with their messages and timers; items
    /// other workers sent to instances `worker` holds; activity tasks (whoever holds their
    /// instance); and the items of instances that finished or are gone. What
    /// it returns, `worker` holds until its lease ends or a commit consumes it. Workers
    /// claiming at once never take the same thing.
    ///
    /// Flow control (`filter`'s [`activity_limits`](crate::ClaimFilter::activity_limits)
    /// and [`orchestrator_limits`](crate::ClaimFilter::orchestrator_limits)): a task of a
    /// limited activity is taken only while its activity's tasks held by live workers
    /// number fewer than its concurrency and its starts in the last period fewer than its
    /// rate (higher priority first, then in id order); a pending instance of a limited
    /// orchestrator only while its running instances number fewer than its limit (in
    /// creation order). Workers claiming at once never exceed a limit together. A commit
    /// that removes a held task of a limited activity, or finishes an instance of a
    /// limited orchestrator, wakes [`wait_for_work`](Self::wait_for_work);
    /// [`Claim::retry_after`](crate::Claim::retry_after) says when a rate window opens.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if the lease of `worker` has expired,
    /// [`StoreError::Decode`] if a record does not decode, [`StoreError::Io`] (or
    /// [`StoreError::Server`]) if the read or write fails.
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError>;

    /// Takes for `worker`, at once, tasks of limited activities that its own commit (now
    /// durable) left unclaimed, `tasks` (work id and activity name), as far as `filter`'s
    /// limits allow them to start now, as [`claim`](Self::claim) would take them; returns
    /// the ids taken, which `worker` then holds. The others wait for a claim. A cheaper
    /// path than a claim for a task whose limit has room: it reads nothing. The default
    /// takes none (every task waits for a claim).
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseExpired`] if the lease of `worker` has expired.
    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        let _ = (worker, tasks, filter);
        Ok(Vec::new())
    }

    /// Reserves `count` work ids no other caller gets: returns the first of
    /// `first..first + count`, above every id the store holds or reserved before.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the write fails.
    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError>;

    /// Blocks until another writer may have left work to claim (a commit enqueued items it
    /// does not keep, or a worker left), or `timeout` passes: the wake-up a claim loop
    /// waits on between polls. The default sleeps `timeout`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (or [`StoreError::Server`]) if the store cannot wait.
    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        std::thread::sleep(timeout);
        Ok(())
    }
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
    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        (**self).list_instances(filter, after, limit)
    }
    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        (**self).count_by_status()
    }
    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        (**self).live_instances()
    }
    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        (**self).instances_with_prefix(prefix, after, limit)
    }
    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        (**self).remove_idle_entities(ids)
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
    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
    fn location(&self) -> Option<&std::path::Path> {
        (**self).location()
    }
    fn commit_concurrency(&self) -> usize {
        (**self).commit_concurrency()
    }
    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        (**self).join(lease)
    }
    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        (**self).renew(worker, lease)
    }
    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        (**self).leave(worker)
    }
    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        (**self).claim(worker, filter)
    }
    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        (**self).claim_tasks(worker, tasks, filter)
    }
    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        (**self).reserve_work_ids(count)
    }
    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        (**self).wait_for_work(timeout)
    }
}
