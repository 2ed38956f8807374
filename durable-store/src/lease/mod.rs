//! The lease contract that lets several workers (runtimes, in one process or many) share
//! one store: each worker [joins](crate::Store::join) under a lease it
//! [renews](crate::Store::renew), [claims](crate::Store::claim) the work it will do, and
//! writes every commit under its lease ([`CommitLease`]), which the store checks.
//!
//! # Ownership
//!
//! The store records, for every live instance and every work item, the worker that holds
//! it (if any). A worker holds what it claimed, what its commits wrote, and the items its
//! commits enqueued, except the ones the commit names in [`CommitLease::unclaimed`]
//! (messages for instances another worker holds). Holdings end when the worker's lease
//! expires (by the store's clock: the database's for PostgreSQL, not the worker's) or the
//! worker [leaves](crate::Store::leave); another worker's claim then takes them over.
//!
//! # Fences
//!
//! A commit under a lease is refused whole, before anything is written, if
//! - the worker's lease has expired or it left ([`StoreError::LeaseExpired`]): a worker
//!   paused past its lease (a long GC pause, a frozen VM) writes nothing when it resumes;
//! - it writes or removes an instance, or removes a work item, that another worker holds
//!   under a live lease ([`StoreError::Fenced`]); an instance that has finished (or does
//!   not exist) may be written by anyone, who then holds it;
//! - a history append does not start where the stored history ends
//!   ([`StoreError::HistoryConflict`]): the second fence, on what was read.
//!
//! This follows the peers: Durable Task's SQL providers lock an instance with a lease
//! that a commit must still hold (durabletask-mssql `LockedBy`/`LockExpiration`), and
//! Temporal fences shard writes by a range id a takeover raises.
//!
//! [`StoreError::LeaseExpired`]: crate::StoreError::LeaseExpired
//! [`StoreError::Fenced`]: crate::StoreError::Fenced
//! [`StoreError::HistoryConflict`]: crate::StoreError::HistoryConflict

use std::collections::BTreeMap;
use std::time::Duration;

use crate::record::{Commit, InstanceRecord, WorkId, WorkItem};

mod limits;

pub use limits::{ActivityLimits, OrchestratorLimits, Rate, counts_as_running};

#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) mod local;

/// Identifies one worker for as long as its lease lives: given by
/// [`Store::join`](crate::Store::join), never 0, and never given again by the same store
/// (for a store one process holds, `MemoryStore` or [`FjallStore`](crate::FjallStore):
/// while it is open, since every lease ends with the process).
pub type WorkerId = u64;

/// The lease a commit is written under: which worker writes it, and which of the items it
/// enqueues that worker leaves for others to claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitLease {
    /// The worker writing the commit.
    pub worker: WorkerId,
    /// Enqueued items ([`Commit::enqueued`](crate::Commit::enqueued)) the worker does not
    /// keep: messages for instances it does not hold. Any worker's claim may take them;
    /// the worker keeps every other item it enqueues.
    pub unclaimed: Vec<WorkId>,
    /// Instances the commit writes that the worker does not hold: a sub-orchestration it
    /// starts of an orchestrator it does not have (a fleet in the middle of a rolling
    /// deploy). A worker that has it claims it with its first message; the worker holds
    /// every other instance it writes.
    pub released: Vec<String>,
}

/// What a [`Store::claim`](crate::Store::claim) may take.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimFilter {
    /// Take only instances of these orchestrators (the worker's registered ones), and only
    /// their messages and timers; `None` for every orchestrator.
    pub orchestrators: Option<Vec<String>>,
    /// Take only instances that run one of these versions of their orchestrator (the
    /// worker's registered `(name, version)` pairs), and only their messages and timers;
    /// `None` for every version. An instance keeps the version it started with
    /// ([`InstanceRecord::version`]), so in a rolling deploy a worker that has only
    /// version 1 of an orchestrator leaves the instances of version 2 to a worker that
    /// has it, rather than stalling them.
    pub versions: Option<Vec<(String, u32)>>,
    /// Take only tasks of these activities (the worker's registered ones); `None` for every
    /// activity. Items of instances that have finished or are gone are taken whatever
    /// they are, so the worker can remove them.
    pub activities: Option<Vec<String>>,
    /// The most instances one claim newly takes (0 counts as 1).
    pub max_instances: usize,
    /// The most work items one claim takes (0 counts as 1).
    pub max_items: usize,
    /// Flow control per activity name: a task of an activity limited here
    /// ([`ActivityLimits::is_limited`]) is taken only while the tasks of that activity held
    /// by live workers number fewer than its concurrency, and its starts in the last
    /// period fewer than its rate; waiting tasks are taken higher priority first, then in
    /// id order. Every worker sharing a store should give the same limits. Empty: no
    /// limits.
    pub activity_limits: BTreeMap<String, ActivityLimits>,
    /// Flow control per orchestrator name: a pending instance of an orchestrator limited
    /// here is taken (to start) only while its instances that run
    /// ([`counts_as_running`], or pending and held by a live worker) number fewer than
    /// its `max_running`; waiting instances are taken in creation order. Empty: no limits.
    pub orchestrator_limits: BTreeMap<String, OrchestratorLimits>,
}

impl Default for ClaimFilter {
    /// Everything, 1,000 instances and 10,000 items at a time.
    fn default() -> Self {
        Self {
            orchestrators: None,
            versions: None,
            activities: None,
            max_instances: 1_000,
            max_items: 10_000,
            activity_limits: BTreeMap::new(),
            orchestrator_limits: BTreeMap::new(),
        }
    }
}

impl ClaimFilter {
    /// Takes only instances of `names` and their messages and timers.
    pub fn orchestrators(mut self, names: Vec<String>) -> Self {
        self.orchestrators = Some(names);
        self
    }

    /// Takes only instances of the orchestrator versions `versions` (`(name, version)`
    /// pairs) and their messages and timers.
    pub fn versions(mut self, versions: Vec<(String, u32)>) -> Self {
        self.versions = Some(versions);
        self
    }

    /// Takes only tasks of the activities `names`.
    pub fn activities(mut self, names: Vec<String>) -> Self {
        self.activities = Some(names);
        self
    }

    /// Takes at most `instances` instances and `items` work items per claim.
    pub fn limits(mut self, instances: usize, items: usize) -> Self {
        self.max_instances = instances;
        self.max_items = items;
        self
    }

    /// Limits the tasks of the activities in `limits` (name to limits); those that limit
    /// nothing ([`ActivityLimits::is_limited`] false) are left out.
    pub fn activity_limits(mut self, limits: BTreeMap<String, ActivityLimits>) -> Self {
        self.activity_limits = limits
            .into_iter()
            .filter(|(_, limits)| limits.is_limited())
            .collect();
        self
    }

    /// The limits of `activity`, if the filter limits it.
    pub fn limits_of(&self, activity: &str) -> Option<&ActivityLimits> {
        self.activity_limits
            .get(activity)
            .filter(|limits| limits.is_limited())
    }

    /// Limits the instances of the orchestrators in `limits` (name to limits); those that
    /// limit nothing are left out.
    pub fn orchestrator_limits(mut self, limits: BTreeMap<String, OrchestratorLimits>) -> Self {
        self.orchestrator_limits = limits
            .into_iter()
            .filter(|(_, limits)| limits.is_limited())
            .collect();
        self
    }

    /// The most running instances of `orchestrator`, if the filter limits it.
    pub fn max_running_of(&self, orchestrator: &str) -> Option<u32> {
        self.orchestrator_limits.get(orchestrator)?.max_running
    }

    /// Whether the start of the instance recorded as `record` waits for its
    /// orchestrator's limit: it is pending, and the filter limits its orchestrator.
    pub fn limits_start(&self, record: &InstanceRecord) -> bool {
        !self.orchestrator_limits.is_empty()
            && matches!(record.status, crate::record::Status::Pending)
            && self.max_running_of(&record.orchestrator).is_some()
    }

    /// Whether the filter takes instances of `orchestrator`.
    pub fn takes_orchestrator(&self, orchestrator: &str) -> bool {
        self.orchestrators
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == orchestrator))
    }

    /// Whether the filter takes the instance recorded as `record`: its orchestrator, and
    /// the version it runs.
    pub fn takes_instance(&self, record: &InstanceRecord) -> bool {
        let name = record.orchestrator.as_str();
        self.takes_orchestrator(name)
            && self.versions.as_ref().is_none_or(|versions| {
                (versions.iter()).any(|(n, version)| n == name && *version == record.version)
            })
    }

    /// Whether the filter takes tasks of `activity`.
    pub fn takes_activity(&self, activity: &str) -> bool {
        self.activities
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == activity))
    }
}

/// How the claiming worker stands with an instance of a [`Claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// This claim took it: no live worker held it. The worker runs its turns from now on.
    Claimed,
    /// The worker held it already; the claim took new items for it (messages other
    /// workers sent).
    Held,
    /// The claim did not take it: another worker holds it under a live lease, or the
    /// filter leaves its orchestrator out, or the claim's instance limit was reached. The
    /// claim took only its activity tasks, whose results go to it as messages.
    Other,
}

/// One live instance a [`Claim`] took or names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedInstance {
    /// The instance id.
    pub id: String,
    /// Its record, as stored when claimed.
    pub record: InstanceRecord,
    /// How the worker stands with it.
    pub holding: Holding,
}

/// What one [`Store::claim`](crate::Store::claim) took for a worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The live instances the claim took ([`Holding::Claimed`]), and the live instances
    /// it met (those its items are for, and others whose items it left to their holder),
    /// in creation order. An item whose instance is not here is for an instance that
    /// finished or is gone.
    pub instances: Vec<ClaimedInstance>,
    /// The work items the worker now holds, in id order: the messages and timers of the
    /// instances it holds that no live worker held, activity tasks, and items of
    /// instances that finished or are gone.
    pub items: Vec<(WorkId, WorkItem)>,
    /// When tasks the claim left for a rate limit ([`ClaimFilter::activity_limits`]) may
    /// be taken, from now: the soonest a window of a rate-limited activity with waiting
    /// tasks opens. `None` if no task waits for a rate (tasks waiting for a concurrency
    /// slot are woken by the commit that frees it: [`Store::wait_for_work`]).
    ///
    /// [`Store::wait_for_work`]: crate::Store::wait_for_work
    pub retry_after: Option<Duration>,
}

impl Claim {
    /// Whether the claim took nothing: no work item, and no instance
    /// ([`Holding::Claimed`]). Its `instances` may still name instances it met and did not
    /// take.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
            && !self
                .instances
                .iter()
                .any(|instance| instance.holding == Holding::Claimed)
    }
}

/// The instances `commit` writes or removes (records and histories): those its lease must
/// hold, and that its worker holds once it is written.
pub(crate) fn written_instances(commit: &Commit) -> impl Iterator<Item = &str> {
    commit
        .instances
        .iter()
        .map(|(id, _)| id.as_str())
        .chain(commit.history.iter().map(|append| append.instance.as_str()))
        .chain(commit.histories_removed.iter().map(|(id, _)| id.as_str()))
        .chain(commit.instances_removed.iter().map(String::as_str))
}
