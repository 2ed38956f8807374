//! The engine: the state a runtime, its clients and its activity contexts share, and the
//! hub the job files call. It owns the store and the group commit, the per-instance
//! inboxes ([`super::inbox`]), the cache of live instances between turns, the activity
//! slots, the waiters of finished instances and the set of ids being started, each behind
//! methods; its fields are private.
//!
//! The engine names no job file: an instance's turn task, which it spawns when an inbox
//! gets work, is the function [`EngineParts::turn_task`] the runtime's builder hands it
//! ([`super::turns::turn_task`]).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use durable_store::{ClaimFilter, StoreError, WorkId, WorkItem, WorkerId};
use durable_store::{Commit, Event, Failure, Incarnation, InstanceRecord, Store};
use lru::LruCache;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::task::TaskTracker;

use super::group_commit::{CommitStats, GroupCommit};
use super::inbox::{Delivery, HandOver, Inboxes, Outgoing};
use super::unregistered::{Unregistered, UnregisteredCallee};
use crate::clock::{Clock, millis};
use crate::error::Error;
use crate::handle::BoxFuture;
use crate::payload;
use crate::registry::Registry;
use crate::replay::execution::Execution;

mod flow;
mod held;
mod holdings;
mod send;
mod waiters;

pub(in crate::runtime) use flow::QueuedActivity;
use flow::{Flow, Slots};
use held::Holdings;
pub(in crate::runtime) use holdings::{Leases, WORK_ID_BLOCK, WorkIds};

/// The run a message is for, as [`Engine::send_message`] takes it.
pub(crate) use super::inbox::Recipient;

/// How long a turn or an activity result waits before retrying a failed store write.
pub(in crate::runtime) const RETRY_DELAY: Duration = Duration::from_millis(200);

/// The task that turns an instance until its inbox is empty: `(engine, instance, busy)`.
pub(in crate::runtime) type TurnTask = fn(Arc<Engine>, String, Busy) -> BoxFuture<()>;

/// What the runtime's builder hands [`Engine::new`].
pub(in crate::runtime) struct EngineParts {
    pub(in crate::runtime) store: Arc<dyn Store>,
    pub(in crate::runtime) registry: Registry,
    pub(in crate::runtime) unregistered: Unregistered,
    /// The largest payload instances may store, in bytes.
    pub(in crate::runtime) max_payload: usize,
    pub(in crate::runtime) clock: Arc<dyn Clock>,
    pub(in crate::runtime) orchestrator_concurrency: usize,
    pub(in crate::runtime) activity_concurrency: usize,
    pub(in crate::runtime) cache_capacity: usize,
    /// What [`RuntimeBuilder::start`](super::RuntimeBuilder::start) found missing.
    pub(in crate::runtime) unregistered_callees: Vec<UnregisteredCallee>,
    /// The task an instance's work runs in.
    pub(in crate::runtime) turn_task: TurnTask,
    /// The worker this runtime is on the store.
    pub(in crate::runtime) worker: WorkerId,
    /// The first block of work ids, reserved at start.
    pub(in crate::runtime) work_ids: WorkIds,
    /// Whether the engine is a tool's ([`crate::Client::open`]): no worker, no lease, and
    /// nothing delivered or run here (see `runtime/tool.rs`).
    pub(in crate::runtime) tool: bool,
}

/// A cached live instance between turns: its record as last committed, and the execution
/// that replayed its history (`None` for an instance this worker just created, whose first
/// turn starts it: nothing to replay).
pub(in crate::runtime) struct Cached {
    pub(in crate::runtime) execution: Option<Execution>,
    pub(in crate::runtime) record: InstanceRecord,
}

/// Work a runtime has in hand (see [`Clock::work_began`]); done when dropped.
pub(in crate::runtime) struct Busy(Arc<dyn Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.work_done();
    }
}

/// State shared by the runtime, its client and the contexts.
pub(crate) struct Engine {
    store: Arc<dyn Store>,
    registry: Registry,
    /// What this worker claims, made once: the registry does not change.
    claim_filter: Arc<ClaimFilter>,
    unregistered: Unregistered,
    /// The largest payload instances may store, in bytes.
    max_payload: usize,
    clock: Arc<dyn Clock>,
    commits: GroupCommit,
    work_ids: Arc<Mutex<WorkIds>>,
    /// This runtime's worker on the store (see `durable_store::lease`): its current
    /// lease, 0 while it joins again after one lapsed (see `holdings.rs`).
    worker: Arc<Leases>,
    /// The live instances this worker holds: their turns run here, and messages for them
    /// are delivered here in memory. Messages for any other instance are left in the store
    /// for the worker that holds it (or will claim it).
    /// With the status each had as this worker last wrote it (see [`Engine::runs_here`]).
    holdings: Arc<Holdings>,
    /// The messages this worker's commits left in the store for a claim (their instance
    /// was not held here, or messages left so before them wait for the claim: see
    /// `held.rs`): a claim delivers them, not the commit's sender.
    left: Arc<Mutex<HashSet<WorkId>>>,
    /// The task that renews the lease and claims work (see [`super::lease`]).
    claim_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
    inboxes: Inboxes,
    cache: Mutex<LruCache<String, Cached>>,
    activities: Mutex<Slots>,
    /// Flow control of limited activities (see `flow.rs`).
    flow: Flow,
    turns: Arc<Semaphore>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Option<InstanceRecord>>>>>,
    /// Suspended instances that wait for an activity this runtime does not have: resuming
    /// one stalls it with this failure.
    waiting_for_code: Mutex<HashMap<String, Failure>>,
    /// Instance ids whose creation is being committed, so concurrent starts of one id
    /// create it once.
    starting: Mutex<HashSet<String>>,
    started: Notify,
    tracker: TaskTracker,
    shutting_down: AtomicBool,
    replays: AtomicU64,
    unregistered_callees: Vec<UnregisteredCallee>,
    turn_task: TurnTask,
    /// A tool's engine (see [`EngineParts::tool`]).
    tool: bool,
    /// The instances under watch after a recovery (`runtime/dead_letter.rs`).
    recovery_watch: super::dead_letter::Watch,
}

impl Drop for Engine {
    /// A runtime gone (shut down, or dropped with its tokio runtime as a crash would
    /// end it) holds nothing: its lease ends, so the next runtime on the store takes its
    /// work at once. Leaving after a shutdown left is not an error.
    fn drop(&mut self) {
        let worker = self.worker();
        if worker == 0 {
            return;
        }
        if let Err(e) = self.store.leave(worker) {
            tracing::warn!(error = %e, "could not end the worker's lease; it expires");
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Locks `m`, whether or not a panic poisoned it.
pub(in crate::runtime) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// An engine over `parts`, its commit thread started.
    pub(in crate::runtime) fn new(parts: EngineParts) -> Self {
        let claim_filter = Arc::new(holdings::claim_filter(&*parts.store, &parts.registry));
        let flow = Flow::new(&parts.registry);
        Self {
            commits: GroupCommit::start(parts.store.clone()),
            store: parts.store,
            registry: parts.registry,
            claim_filter,
            unregistered: parts.unregistered,
            max_payload: parts.max_payload,
            clock: parts.clock,
            work_ids: Arc::new(Mutex::new(parts.work_ids)),
            worker: Arc::new(Leases::new(parts.worker)),
            holdings: Arc::default(),
            left: Arc::default(),
            claim_loop: Mutex::new(None),
            inboxes: Inboxes::new(parts.worker),
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(parts.cache_capacity).expect("capacity is at least 1"),
            )),
            activities: Mutex::new(Slots::new(parts.activity_concurrency)),
            flow,
            turns: Arc::new(Semaphore::new(parts.orchestrator_concurrency)),
            waiters: Mutex::new(HashMap::new()),
            waiting_for_code: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            started: Notify::new(),
            tracker: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            replays: AtomicU64::new(0),
            unregistered_callees: parts.unregistered_callees,
            turn_task: parts.turn_task,
            tool: parts.tool,
            recovery_watch: Default::default(),
        }
    }

    /// The instances under watch after a recovery, and the runtime's limit on recoveries.
    pub(in crate::runtime) fn recovery_watch(&self) -> &super::dead_letter::Watch {
        &self.recovery_watch
    }

    /// Whether this is a tool's engine ([`crate::Client::open`]): it writes its commits
    /// under no lease, leaving every item they enqueue for a worker's claim, and delivers,
    /// dispatches and runs nothing.
    pub(crate) fn is_tool(&self) -> bool {
        self.tool
    }

    /// The store.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The orchestrators, activities and application state this runtime has.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What the runtime does with work for code it does not have.
    pub(in crate::runtime) fn unregistered(&self) -> Unregistered {
        self.unregistered
    }

    /// The largest payload instances may store, in bytes.
    pub(in crate::runtime) fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The runtime's clock.
    pub(in crate::runtime) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// What [`RuntimeBuilder::start`](super::RuntimeBuilder::start) found missing.
    pub(in crate::runtime) fn unregistered_callees(&self) -> &[UnregisteredCallee] {
        &self.unregistered_callees
    }

    /// The runtime clock's time, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.clock.now())
    }

    /// Whether an instance waits for `activity` rather than calling it: the runtime does
    /// not have it, and waits for missing code.
    ///
    /// Not on a store other processes share: there the task is scheduled and left for a
    /// worker that has the activity (a fleet in the middle of a rolling deploy).
    pub(in crate::runtime) fn waits_for_activity(&self, activity: &str) -> bool {
        self.unregistered == Unregistered::Wait
            && !self.registry.has_activity(activity)
            && !self.store.is_shared()
    }

    /// Whether an instance waits for version `version` of `orchestrator` rather than
    /// starting it: the runtime does not have it, and waits for missing code.
    pub(in crate::runtime) fn waits_for_orchestrator(
        &self,
        orchestrator: &str,
        version: u32,
    ) -> bool {
        self.unregistered == Unregistered::Wait
            && self.registry.orchestrator(orchestrator, version).is_none()
            && !self.store.is_shared()
    }

    /// Checks that `bytes`, the payload `what` names, fits the payload limit.
    pub(crate) fn check_payload(
        &self,
        what: impl FnOnce() -> String,
        bytes: &[u8],
    ) -> Result<(), Error> {
        Ok(payload::check_size(what, bytes, self.max_payload)?)
    }

    /// A new incarnation for an instance id whose run `replaced` (if any) it replaces: 64
    /// random bits, never 0 and never `replaced`.
    pub(crate) fn new_incarnation(replaced: Option<Incarnation>) -> Incarnation {
        loop {
            let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
            let incarnation = high ^ low.rotate_left(32);
            if incarnation != 0 && Some(incarnation) != replaced {
                return incarnation;
            }
        }
    }

    // The commit path.

    /// Writes `commit` in the next batch; resolves once it is durable.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store refuses the write; [`Error::ShutDown`] once the
    /// runtime has stopped.
    pub(crate) async fn commit(&self, commit: Commit) -> Result<(), Error> {
        self.commit_leased(commit).await.map(drop)
    }

    /// The error the store refuses every write with, once it does (not a lapsed lease).
    pub(crate) fn halted(&self) -> Option<&StoreError> {
        self.commits.halted()
    }

    /// Resolves when the store starts refusing every write (see [`GroupCommit::on_halt`]).
    pub(crate) fn on_halt(&self) -> impl Future<Output = ()> + '_ {
        self.commits.on_halt()
    }

    /// Counters of the commit path.
    pub(in crate::runtime) fn commit_stats(&self) -> CommitStats {
        self.commits.stats()
    }

    /// Whether the runtime takes no more work: it is shutting down, or halted because
    /// the store refuses every write.
    pub(in crate::runtime) fn takes_no_work(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst) || self.commits.halted().is_some()
    }

    /// Stops taking work and waits for the running turn and activity tasks to end.
    pub(in crate::runtime) async fn stop_tasks(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Writes what is queued, then stops the commit thread.
    pub(in crate::runtime) async fn stop_commits(&self) {
        self.commits.stop().await;
    }

    // Messages, and the inboxes they go to.

    /// Adds a message for `instance` to `commit`, and to `outbox` to deliver once the
    /// commit is durable. `to` is the run it is for.
    pub(in crate::runtime) fn enqueue_message(
        &self,
        instance: &str,
        to: Recipient,
        event: Event,
        commit: &mut Commit,
        outbox: &mut Vec<Outgoing>,
    ) {
        let id = self.work_id();
        commit.enqueued.push((
            id,
            WorkItem::Message {
                instance: instance.to_string(),
                incarnation: to.incarnation,
                generation: to.generation,
                event: event.clone(),
            },
        ));
        outbox.push(Outgoing {
            instance: instance.to_string(),
            delivery: Delivery::message(id, to, event),
        });
    }

    /// Queues an event for `instance` and makes sure a turn task will take it (see
    /// [`deliver_under`](Self::deliver_under)).
    pub(in crate::runtime) fn deliver(self: &Arc<Self>, instance: String, delivery: Delivery) {
        self.deliver_under(self.lease_in_hand(), instance, delivery);
    }

    /// Queues `deliveries` for `instance` ahead of the events already waiting, but after
    /// the client requests at their head (a terminate must not wait behind an instance
    /// that continues as new forever), and makes sure a turn task will take them.
    pub(in crate::runtime) fn deliver_first(
        self: &Arc<Self>,
        instance: &str,
        deliveries: impl IntoIterator<Item = Delivery>,
    ) {
        let (deliveries, lease) = (deliveries.into_iter(), self.lease_in_hand());
        let deliveries = deliveries.filter(|d| !self.left_in_store(d.id));
        if self.holds(instance) && self.inboxes.push_first(instance, deliveries, lease) {
            self.spawn_turns(instance.to_string());
        }
    }

    /// Runs a turn for `instance` even without new events (to retry a stalled instance).
    pub(in crate::runtime) fn poke(self: &Arc<Self>, instance: String) {
        if self.holds(&instance) && self.inboxes.retry(&instance) {
            self.spawn_turns(instance);
        }
    }

    /// Hands an activity result to `instance` if it will turn soon: `None`. Otherwise
    /// (the instance is suspended or stalled, or the runtime takes no work) gives it
    /// back, to be stored as a message.
    pub(in crate::runtime) fn hand_over(
        self: &Arc<Self>,
        instance: String,
        delivery: Delivery,
    ) -> Option<Outgoing> {
        // A result for an instance another worker holds is stored, for it to claim.
        let takes = !self.takes_no_work() && self.holds(&instance);
        match self.inboxes.hand_over(&instance, delivery, takes) {
            HandOver::Queued { spawn_turns } => {
                if spawn_turns {
                    self.spawn_turns(instance);
                }
                None
            }
            HandOver::Refused(delivery) => Some(Outgoing { instance, delivery }),
        }
    }

    /// The inboxes, for the turn task and the jobs that record what happened to an
    /// instance (stalled, suspended, a request committed).
    pub(in crate::runtime) fn inboxes(&self) -> &Inboxes {
        &self.inboxes
    }

    fn spawn_turns(self: &Arc<Self>, instance: String) {
        // A tool's engine holds no instance, so nothing is ever delivered to it.
        if self.tool {
            return;
        }
        let busy = self.busy();
        self.tracker
            .spawn((self.turn_task)(self.clone(), instance, busy));
    }

    /// Spawns a turn or activity task, its future boxed.
    ///
    /// A tokio task is one 128-byte aligned allocation holding the future, which glibc's
    /// malloc serves through its memalign path: no per-thread cache, the request padded
    /// and the unaligned ends split off and freed. With tasks of several hundred bytes
    /// spawned and freed by the tens of thousands, how badly that fragments the heap
    /// turns on their exact sizes: the `chain` bench ran 15-25% slower with the activity
    /// task at 768 bytes than at 896 (more page faults and allocator lock contention,
    /// and, with less CPU left to the commit thread, smaller group-commit batches).
    /// Boxed, the aligned allocation is small and the same whatever the future holds, and
    /// the future's state is an ordinary allocation.
    pub(in crate::runtime) fn spawn_boxed(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(Box::pin(task));
    }

    /// Work in hand, from now until the returned guard drops: a clock that skips time
    /// holds still meanwhile.
    pub(in crate::runtime) fn busy(&self) -> Busy {
        self.clock.work_began();
        Busy(self.clock.clone())
    }

    /// A slot among the turns that compute at once; `None` once the runtime stops.
    pub(in crate::runtime) async fn turn_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.turns.clone().acquire_owned().await.ok()
    }

    // The instance cache.

    /// Takes the cached execution of `instance`, if any.
    pub(in crate::runtime) fn take_cached(&self, instance: &str) -> Option<Cached> {
        lock(&self.cache).pop(instance)
    }

    /// Keeps the execution of `instance` for its next turn.
    pub(in crate::runtime) fn keep_cached(&self, instance: &str, cached: Cached) {
        // Not from a turn whose lease lapsed since: the cache was cleared with it.
        if super::lease::turn_lease().is_some_and(|lease| lease != self.worker()) {
            return;
        }
        lock(&self.cache).put(instance.to_string(), cached);
    }

    /// Counts a replay of an instance's history (a cache miss).
    pub(in crate::runtime) fn count_replay(&self) {
        self.replays.fetch_add(1, Ordering::Relaxed);
    }

    /// How many replays were counted.
    pub(in crate::runtime) fn replay_count(&self) -> u64 {
        self.replays.load(Ordering::Relaxed)
    }

    /// Forgets everything held in memory about `instance` (after a purge).
    pub(crate) fn forget(&self, instance: &str) {
        lock(&self.cache).pop(instance);
        lock(&self.waiting_for_code).remove(instance);
    }

    // Instances that wait for missing code.

    /// Suspended `instance` waits for missing code: resuming it stalls it with `failure`.
    pub(in crate::runtime) fn start_waiting_for_code(&self, instance: String, failure: Failure) {
        lock(&self.waiting_for_code).insert(instance, failure);
    }

    /// The failure that stalls `instance` when resumed, if it waits for missing code.
    pub(in crate::runtime) fn missing_code_of(&self, instance: &str) -> Option<Failure> {
        lock(&self.waiting_for_code).get(instance).cloned()
    }

    /// `instance` waits for no code any more (resumed or terminated).
    pub(in crate::runtime) fn stop_waiting_for_code(&self, instance: &str) {
        lock(&self.waiting_for_code).remove(instance);
    }

    // Starts of new instances.

    /// Resolves when a start releases its id; created before [`claim_start`] is tried,
    /// so a release in between is not missed.
    ///
    /// [`claim_start`]: Self::claim_start
    pub(crate) fn start_released(&self) -> Notified<'_> {
        self.started.notified()
    }

    /// Claims id `id` for a start: false if another start holds it.
    pub(crate) fn claim_start(&self, id: &str) -> bool {
        lock(&self.starting).insert(id.to_string())
    }

    /// Releases id `id`, claimed by a start, and wakes the starts waiting for it.
    pub(crate) fn release_start(&self, id: &str) {
        lock(&self.starting).remove(id);
        self.started.notify_waiters();
    }
}
