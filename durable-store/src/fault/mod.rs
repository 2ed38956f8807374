//! [`FaultyStore`]: a [`Store`] wrapper that fails chosen calls, for tests of what the
//! engine does when its storage fails.
//!
//! Calls are counted per kind ([`Call`]), from 1. A rule makes calls of one kind fail from
//! the k-th on, for one call or up to a later one, or for good; a shared [`FaultSwitch`]
//! breaks every call while it is on ("the disk is gone until healed"). A failing call
//! returns [`StoreError::Io`] with a message saying it was injected.
//!
//! Commits are counted one by one ([`Call::Commit`]), and the calls of [`Store::commit`]
//! that carry them as writes ([`Call::Write`], one fsync each): the engine's group commit
//! hands several commits to one call. A write fails if any commit it carries is to fail,
//! and then writes none of them, as a real batch would.
//!
//! By default a failed write writes nothing, as one that never reached the journal.
//! [`FaultyStore::written_anyway`] makes failed commits write first and fail after, as an
//! `fsync` that failed after the write: the caller is told the commit failed, yet it may
//! be on disk.
//!
//! By default the store goes on after a failed write, so a test can see what the engine
//! makes of it. fjall does not: after a failed write or fsync it refuses every write until
//! it is reopened. [`FaultyStore::poison_on_failure`] does the same: after the first
//! injected write failure every write returns [`StoreError::Poisoned`], for good; a new
//! `FaultyStore` over the same inner store is the restart.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::error::StoreError;
use crate::lease::{Claim, ClaimFilter, WorkerId};
use crate::query::{InstanceCursor, InstanceFilter, InstancePage, StatusCounts};
use crate::record::{Commit, Event, InstanceRecord, WorkId, WorkItem};
use crate::store::Store;

/// A kind of store call, as [`FaultyStore`] counts and fails them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// One commit handed to [`Store::commit`] (a call may carry several).
    Commit,
    /// A call of [`Store::commit`]: one write, one fsync.
    Write,
    /// Any read: one of the nine below.
    Read,
    /// [`Store::instance`].
    Instance,
    /// [`Store::instances`].
    Instances,
    /// [`Store::history`].
    History,
    /// [`Store::work_items`].
    WorkItems,
    /// [`Store::progress`].
    Progress,
    /// [`Store::list_instances`] and [`Store::instances_with_prefix`].
    ListInstances,
    /// [`Store::count_by_status`].
    CountByStatus,
    /// [`Store::live_instances`].
    LiveInstances,
    /// [`Store::claim`]: a read that takes work.
    Claim,
}

impl Call {
    fn index(self) -> usize {
        match self {
            Call::Commit => 0,
            Call::Write => 1,
            Call::Read => 2,
            Call::Instance => 3,
            Call::Instances => 4,
            Call::History => 5,
            Call::WorkItems => 6,
            Call::Progress => 7,
            Call::ListInstances => 8,
            Call::CountByStatus => 9,
            Call::LiveInstances => 10,
            Call::Claim => 11,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Commit => "commit",
            Call::Write => "write",
            Call::Read => "read",
            Call::Instance => "instance read",
            Call::Instances => "instances read",
            Call::History => "history read",
            Call::WorkItems => "work items read",
            Call::Progress => "progress read",
            Call::ListInstances => "instance listing",
            Call::CountByStatus => "count by status",
            Call::LiveInstances => "live instances read",
            Call::Claim => "claim",
        })
    }
}

/// Calls `from..until` (counted from 1 per kind) of kind `call` fail.
#[derive(Clone, Copy, Debug)]
struct Rule {
    call: Call,
    from: u64,
    /// The first call that succeeds again; `None` for never.
    until: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    counts: [AtomicU64; 12],
    injected: AtomicU64,
    broken: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    /// The failure that poisoned the store, under [`FaultyStore::poison_on_failure`].
    poisoned: OnceLock<String>,
}

impl State {
    fn rules(&self) -> MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shared handle of a [`FaultyStore`]: break and heal its "disk", add rules, and read
/// its counters while the store is owned by a runtime. Cheap to clone.
///
/// # Examples
///
/// ```
/// use durable_store::{Commit, FaultyStore, MemoryStore, Store};
///
/// let store = FaultyStore::new(MemoryStore::new());
/// let switch = store.switch();
/// switch.break_disk();
/// assert!(store.commit(&[Commit::default()]).is_err());
/// switch.heal();
/// assert!(store.commit(&[Commit::default()]).is_ok());
/// assert_eq!(switch.injected(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch {
    state: Arc<State>,
}

impl FaultSwitch {
    /// From now on every read and write fails, until [`heal`](Self::heal).
    pub fn break_disk(&self) {
        self.state.broken.store(true, Ordering::SeqCst);
    }

    /// Ends [`break_disk`](Self::break_disk) and removes every rule: calls succeed again.
    pub fn heal(&self) {
        self.state.broken.store(false, Ordering::SeqCst);
        self.state.rules().clear();
    }

    /// Whether the disk is broken.
    pub fn is_broken(&self) -> bool {
        self.state.broken.load(Ordering::SeqCst)
    }

    /// Whether the store refuses every write, under [`FaultyStore::poison_on_failure`]
    /// after an injected write failure. [`heal`](Self::heal) does not end it.
    pub fn is_poisoned(&self) -> bool {
        self.state.poisoned.get().is_some()
    }

    /// Makes calls of kind `call` fail from the `from`-th (counted from 1 since the store
    /// was made) until the `until`-th, which succeeds again (`None`: for good).
    pub fn fail(&self, call: Call, from: u64, until: Option<u64>) {
        self.state.rules().push(Rule { call, from, until });
    }

    /// How many calls of kind `call` were made so far (commits: how many commits were
    /// handed to the store), failed ones included.
    pub fn count(&self, call: Call) -> u64 {
        self.state.counts[call.index()].load(Ordering::SeqCst)
    }

    /// How many calls failed because of a fault (not counting the writes a poisoned store
    /// refused after it).
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Counts a read of kind `call` and says whether it is to fail.
    fn check_read(&self, call: Call) -> Result<(), StoreError> {
        let numbers = [call, Call::Read].map(|kind| (kind, self.next(kind, 1)));
        self.verdict(&numbers, call)
    }

    /// Counts a write carrying `commits` commits and says whether it is to fail: refused
    /// with [`StoreError::Poisoned`] if the store is poisoned, else with an injected fault,
    /// which poisons the store if `poison` is set.
    fn check_write(&self, commits: u64, poison: bool) -> Result<(), StoreError> {
        let write = self.next(Call::Write, 1);
        let first = self.next(Call::Commit, commits);
        if let Some(failure) = self.state.poisoned.get() {
            return Err(StoreError::Poisoned {
                path: None,
                detail: format!("the first failure: {failure}"),
                source: None,
            });
        }
        // The commit a rule names, if the write carries it; else the write itself.
        let numbers: Vec<(Call, std::ops::Range<u64>)> = vec![
            (Call::Write, write..write + 1),
            (Call::Commit, first..first + commits),
        ];
        let failing = self.state.rules().iter().find_map(|rule| {
            let (kind, range) = numbers.iter().find(|(kind, _)| *kind == rule.call)?;
            let until = rule.until.unwrap_or(u64::MAX);
            let n = range.start.max(rule.from);
            (n < range.end && n < until).then_some((*kind, n))
        });
        let failing = failing.or_else(|| self.is_broken().then_some((Call::Write, write)));
        let Some((kind, n)) = failing else {
            return Ok(());
        };
        let fault = self.injected_fault(kind, n);
        if poison {
            let _ = self.state.poisoned.set(fault.clone());
        }
        Err(StoreError::Io {
            detail: fault,
            source: None,
        })
    }

    /// Numbers the next `n` calls of kind `kind`; returns the first number.
    fn next(&self, kind: Call, n: u64) -> u64 {
        self.state.counts[kind.index()].fetch_add(n, Ordering::SeqCst) + 1
    }

    fn verdict(&self, numbers: &[(Call, u64)], call: Call) -> Result<(), StoreError> {
        let ruled = self.state.rules().iter().any(|rule| {
            numbers.iter().any(|(kind, n)| {
                *kind == rule.call && *n >= rule.from && rule.until.is_none_or(|until| *n < until)
            })
        });
        if !ruled && !self.is_broken() {
            return Ok(());
        }
        Err(StoreError::Io {
            detail: self.injected_fault(call, numbers[0].1),
            source: None,
        })
    }

    /// Counts an injected fault; returns its message.
    fn injected_fault(&self, call: Call, n: u64) -> String {
        self.state.injected.fetch_add(1, Ordering::SeqCst);
        format!("injected fault: {call} #{n} failed")
    }
}

/// A [`Store`] that makes chosen calls of the store it wraps fail with [`StoreError::Io`].
/// For tests: sweep the failing call over a workflow and check what the engine does.
///
/// # Examples
///
/// The second commit fails and writes nothing; the third succeeds:
///
/// ```
/// use durable_store::{Commit, FaultyStore, MemoryStore, Store, StoreError};
///
/// let store = FaultyStore::new(MemoryStore::new()).fail_commit(2);
/// let put = |key: &str| Commit {
///     progress: vec![(key.to_owned(), Some(vec![1]))],
///     ..Commit::default()
/// };
/// store.commit(&[put("a")])?;
/// assert!(matches!(store.commit(&[put("b")]), Err(StoreError::Io { .. })));
/// store.commit(&[put("c")])?;
/// assert_eq!(store.progress("b")?, None);
/// assert_eq!(store.progress("c")?, Some(vec![1]));
/// # Ok::<(), StoreError>(())
/// ```
///
/// Reads 3 to 5 fail, whatever they read:
///
/// ```
/// use durable_store::{FaultyStore, MemoryStore, Store};
///
/// let store = FaultyStore::new(MemoryStore::new()).fail_reads_from(3).until(6);
/// let failed: Vec<bool> = (0..7).map(|_| store.instances().is_err()).collect();
/// assert_eq!(failed, [false, false, true, true, true, false, false]);
/// ```
#[derive(Clone, Debug)]
pub struct FaultyStore<S> {
    inner: S,
    switch: FaultSwitch,
    written_anyway: bool,
    poison_on_failure: bool,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`; no call fails until a rule or the switch says so.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            switch: FaultSwitch::default(),
            written_anyway: false,
            poison_on_failure: false,
        }
    }

    /// The shared switch: break or heal the disk and read the counters later.
    pub fn switch(&self) -> FaultSwitch {
        self.switch.clone()
    }

    /// The wrapped store, to look at what really was written.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The write carrying the `k`-th commit (from 1) fails.
    pub fn fail_commit(self, k: u64) -> Self {
        self.rule(Call::Commit, k, Some(k.saturating_add(1)))
    }

    /// Every write carrying the `k`-th commit or a later one fails; bound it with
    /// [`until`](Self::until).
    pub fn fail_commits_from(self, k: u64) -> Self {
        self.rule(Call::Commit, k, None)
    }

    /// The `k`-th read of any kind fails.
    pub fn fail_read(self, k: u64) -> Self {
        self.rule(Call::Read, k, Some(k.saturating_add(1)))
    }

    /// Every read from the `k`-th on fails; bound it with [`until`](Self::until).
    pub fn fail_reads_from(self, k: u64) -> Self {
        self.rule(Call::Read, k, None)
    }

    /// The `k`-th call of kind `call` fails.
    pub fn fail_call(self, call: Call, k: u64) -> Self {
        self.rule(call, k, Some(k.saturating_add(1)))
    }

    /// Ends the last rule added: its calls succeed again from the `k`-th on (counted as
    /// the rule counts, from 1). Without a rule, it does nothing.
    pub fn until(self, k: u64) -> Self {
        if let Some(rule) = self.switch.state.rules().last_mut() {
            rule.until = Some(k);
        }
        self
    }

    /// Failed writes are written before they fail, as when `fsync` fails after the
    /// write: the engine is told a commit failed that may be durable.
    pub fn written_anyway(mut self) -> Self {
        self.written_anyway = true;
        self
    }

    /// The first write that fails poisons the store, as in fjall: from then on every write
    /// returns [`StoreError::Poisoned`] and writes nothing, whatever the rules and the
    /// switch say, until this store and its clones are dropped. Reads are left to the rules
    /// and the switch (fjall goes on reading). The failing write itself returns its
    /// injected [`StoreError::Io`], and with [`written_anyway`](Self::written_anyway) is
    /// written first.
    ///
    /// # Examples
    ///
    /// The second commit fails and poisons the store; the restart is a new wrapper:
    ///
    /// ```
    /// use durable_store::{Commit, FaultyStore, MemoryStore, Store, StoreError};
    ///
    /// let disk = MemoryStore::new();
    /// let store = FaultyStore::new(disk.clone())
    ///     .fail_commit(2)
    ///     .poison_on_failure();
    /// let put = |key: &str| Commit {
    ///     progress: vec![(key.to_owned(), Some(vec![1]))],
    ///     ..Commit::default()
    /// };
    /// store.commit(&[put("a")])?;
    /// assert!(matches!(store.commit(&[put("b")]), Err(StoreError::Io { .. })));
    /// let err = store.commit(&[put("c")]).unwrap_err();
    /// assert!(matches!(err, StoreError::Poisoned { .. }) && err.is_permanent());
    /// assert_eq!(store.progress("a")?, Some(vec![1]), "reads go on");
    ///
    /// let store = FaultyStore::new(disk);
    /// store.commit(&[put("c")])?;
    /// assert_eq!(store.progress("c")?, Some(vec![1]));
    /// # Ok::<(), StoreError>(())
    /// ```
    pub fn poison_on_failure(mut self) -> Self {
        self.poison_on_failure = true;
        self
    }

    fn rule(self, call: Call, from: u64, until: Option<u64>) -> Self {
        self.switch.fail(call, from, until);
        self
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn commit(&self, commits: &[Commit]) -> Result<(), StoreError> {
        match self
            .switch
            .check_write(commits.len() as u64, self.poison_on_failure)
        {
            Ok(()) => self.inner.commit(commits),
            Err(fault @ StoreError::Io { .. }) if self.written_anyway => {
                self.inner.commit(commits)?;
                Err(fault)
            }
            Err(fault) => Err(fault),
        }
    }

    fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.switch.check_read(Call::Instance)?;
        self.inner.instance(id)
    }

    fn instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.switch.check_read(Call::Instances)?;
        self.inner.instances()
    }

    fn list_instances(
        &self,
        filter: &InstanceFilter,
        after: Option<&InstanceCursor>,
        limit: usize,
    ) -> Result<InstancePage, StoreError> {
        self.switch.check_read(Call::ListInstances)?;
        self.inner.list_instances(filter, after, limit)
    }

    fn instances_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.switch.check_read(Call::ListInstances)?;
        self.inner.instances_with_prefix(prefix, after, limit)
    }

    fn remove_idle_entities(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        // A write of one commit, as a purge's is.
        self.switch.check_write(1, self.poison_on_failure)?;
        self.inner.remove_idle_entities(ids)
    }

    fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.switch.check_read(Call::CountByStatus)?;
        self.inner.count_by_status()
    }

    fn live_instances(&self) -> Result<Vec<(String, InstanceRecord)>, StoreError> {
        self.switch.check_read(Call::LiveInstances)?;
        self.inner.live_instances()
    }

    fn history(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        self.switch.check_read(Call::History)?;
        self.inner.history(id)
    }

    fn work_items(&self) -> Result<Vec<(WorkId, WorkItem)>, StoreError> {
        self.switch.check_read(Call::WorkItems)?;
        self.inner.work_items()
    }

    fn progress(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.switch.check_read(Call::Progress)?;
        self.inner.progress(key)
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn location(&self) -> Option<&std::path::Path> {
        self.inner.location()
    }

    fn commit_concurrency(&self) -> usize {
        self.inner.commit_concurrency()
    }

    fn join(&self, lease: Duration) -> Result<WorkerId, StoreError> {
        self.inner.join(lease)
    }

    fn renew(&self, worker: WorkerId, lease: Duration) -> Result<(), StoreError> {
        self.inner.renew(worker, lease)
    }

    fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        self.inner.leave(worker)
    }

    fn claim(&self, worker: WorkerId, filter: &ClaimFilter) -> Result<Claim, StoreError> {
        self.switch.check_read(Call::Claim)?;
        self.inner.claim(worker, filter)
    }

    fn claim_tasks(
        &self,
        worker: WorkerId,
        tasks: &[(WorkId, &str)],
        filter: &ClaimFilter,
    ) -> Result<Vec<WorkId>, StoreError> {
        self.switch.check_read(Call::Claim)?;
        self.inner.claim_tasks(worker, tasks, filter)
    }

    fn reserve_work_ids(&self, count: u64) -> Result<WorkId, StoreError> {
        self.inner.reserve_work_ids(count)
    }

    fn wait_for_work(&self, timeout: Duration) -> Result<(), StoreError> {
        self.inner.wait_for_work(timeout)
    }
}

#[cfg(test)]
mod tests;
