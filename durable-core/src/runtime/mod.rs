//! The runtime: dispatches orchestration turns and activities on tokio, commits each step
//! through group commit, and recovers unfinished work on start (`recovery.rs`).
//!
//! Work items (events for instances, activities to run, timers) live in the store until
//! the commit that consumes them deletes them. A running process holds the items it has
//! handed out in memory, which is its lease on them: if it dies, the lease dies with it,
//! and the next runtime on the store redelivers every item still there. An activity is
//! therefore run at least once; its result is recorded exactly once, in the same atomic
//! commit that deletes its work item. That commit is the turn of its instance that takes
//! the result (handed over in memory), so an activity costs no commit of its own; a result
//! no turn will take soon (a suspended or stalled instance, a shutdown) is stored as a
//! message instead.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use durable_store::{ActivityTask, Event, Failure, Incarnation, InstanceRecord, Store, WorkId};
use lru::LruCache;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::activity_worker::Slots;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Error;
use crate::client::Client;
use crate::clock::{Clock, SystemClock, millis};
use crate::group_commit::{CommitStats, GroupCommit};
use crate::handle::{Activity, Callee, Orchestrator};
use crate::payload;
use crate::registry::Registry;
use crate::replay::Execution;

/// How long a turn or an activity result waits before retrying a failed store write.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Configures and starts a [`Runtime`].
pub struct RuntimeBuilder {
    store: Arc<dyn Store>,
    registry: Registry,
    orchestrator_concurrency: usize,
    activity_concurrency: usize,
    cache_capacity: usize,
    unregistered: Unregistered,
    max_payload: usize,
    clock: Arc<dyn Clock>,
}

/// The default of [`RuntimeBuilder::max_payload_bytes`]: 2 MiB, as Temporal's.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 2 << 20;

/// What the runtime does with work for code it does not have: an orchestrator, an
/// orchestrator version or an activity that is not registered with it, as after a deploy
/// that removed one. Set with [`RuntimeBuilder::on_unregistered`]. Either way the other
/// instances keep running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unregistered {
    /// The instance waits (the default): it is stalled, its status names what is missing
    /// ([`FailureKind::Unregistered`](crate::record::FailureKind::Unregistered)), and all
    /// it holds stays in the store. A runtime started with the code registered resumes it
    /// where it stopped.
    #[default]
    Wait,
    /// The call fails: an activity or sub-orchestration call returns its error
    /// ([`ActivityError`](crate::ActivityError),
    /// [`SubOrchestrationError`](crate::SubOrchestrationError)) to the orchestrator, which
    /// may handle it; an instance whose own orchestrator is missing fails.
    Fail,
}

/// A call that a registered orchestrator's body makes to an activity or orchestrator this
/// runtime does not have ([`Orchestrator::callees`]). [`RuntimeBuilder::start`] reports
/// each: under [`Unregistered::Wait`] as a warning (and
/// [`Runtime::unregistered_callees`]), under [`Unregistered::Fail`] as
/// [`Error::UnregisteredCallees`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnregisteredCallee {
    /// The registered name of the orchestrator whose body makes the call.
    pub orchestrator: &'static str,
    /// The version of that orchestrator.
    pub version: u32,
    /// What it calls.
    pub callee: Callee,
}

impl std::fmt::Display for UnregisteredCallee {
    /// `orchestrator `checkout` calls activity `charge`, which is not registered; add it
    /// with `RuntimeBuilder::activity``.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version != 1 {
            write!(f, "version {} of ", self.version)?;
        }
        let method = match self.callee {
            Callee::CallActivity { .. } => "activity",
            Callee::CallSubOrchestrator { .. } => "orchestrator",
        };
        write!(
            f,
            "orchestrator `{}` calls {}, which is not registered; add it with `RuntimeBuilder::{method}`",
            self.orchestrator, self.callee
        )
    }
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("registry", &self.registry)
            .field("orchestrator_concurrency", &self.orchestrator_concurrency)
            .field("activity_concurrency", &self.activity_concurrency)
            .field("cache_capacity", &self.cache_capacity)
            .field("unregistered", &self.unregistered)
            .field("max_payload", &self.max_payload)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Registers an orchestrator by its handle (the function `#[orchestrator]` annotates).
    pub fn orchestrator<O: Orchestrator>(mut self, _orchestrator: O) -> Self {
        self.registry.add_orchestrator::<O>();
        self
    }

    /// Registers an activity by its handle (the function `#[activity]` annotates).
    pub fn activity<A: Activity>(mut self, _activity: A) -> Self {
        self.registry.add_activity::<A>();
        self
    }

    /// Registers application state that activities read with
    /// [`ActivityContext::state`](crate::ActivityContext::state) (a database client, a
    /// connection pool...). One value per type.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.registry.add_state(value);
        self
    }

    /// How many orchestration turns compute at once (default: 4 × the CPU count). A turn
    /// waiting for its commit to be durable does not count, so that many turns share
    /// one fsync.
    pub fn orchestrator_concurrency(mut self, n: usize) -> Self {
        self.orchestrator_concurrency = n.max(1);
        self
    }

    /// How many activities run at once (default: 64). Activities wait for a slot in the
    /// order they were called; an attempt's timeout
    /// ([`RetryPolicy::attempt_timeout`](crate::RetryPolicy::attempt_timeout)) counts from
    /// when it gets one.
    pub fn activity_concurrency(mut self, n: usize) -> Self {
        self.activity_concurrency = n.max(1);
        self
    }

    /// How many live orchestrations stay in memory between turns (default: 10,000). An
    /// evicted instance is replayed from its history once when its next event arrives.
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n.max(1);
        self
    }

    /// What happens to an instance that needs an orchestrator or activity this runtime
    /// does not have (default: [`Unregistered::Wait`]). The policy also decides what
    /// [`start`](Self::start) does with a registered orchestrator whose body calls one
    /// that is not registered: a warning under `Wait`, an error under `Fail`.
    pub fn on_unregistered(mut self, policy: Unregistered) -> Self {
        self.unregistered = policy;
        self
    }

    /// The largest payload, in encoded bytes, that instances may store (default:
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`], 2 MiB): an input or output of an orchestrator or
    /// activity, an event, a custom status, a recorded value, a progress checkpoint, a
    /// terminate or suspend reason. Every payload is kept in the store, and an instance's
    /// input is rewritten with each of its turns, so large data is better passed by
    /// reference.
    ///
    /// A larger payload is refused where it is made, and nothing of it is written: the
    /// client call returns [`Error::PayloadTooLarge`]; an activity's output fails the
    /// call (an [`ActivityError`](crate::ActivityError) the orchestrator may handle, which
    /// retry policies do not retry); a payload the orchestrator makes fails the instance.
    /// Either carries [`FailureKind::TooLarge`](crate::record::FailureKind::TooLarge). An
    /// error whose value and message are over it together keeps its kind (it is retried
    /// as before) but loses its value (the typed error is then unavailable) and has its
    /// message cut, saying so.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload = limit;
        self
    }

    /// The clock durable timers, `ctx.now()` and the instances' timestamps read (default:
    /// [`SystemClock`](crate::SystemClock)). In tests, a [`ManualClock`](crate::ManualClock)
    /// lets a workflow that waits for days run at once: its timers fire when the test
    /// moves the clock past them, or, with
    /// [`ManualClock::time_skipping`](crate::ManualClock::time_skipping), as soon as the
    /// runtime has nothing else to do.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Starts the runtime: recovers every unfinished instance and redelivers every
    /// unacknowledged work item, then starts the dispatchers. Must be called inside a
    /// tokio runtime.
    ///
    /// First it checks what the registered orchestrators call
    /// ([`Orchestrator::callees`]): each activity or orchestrator that is not registered
    /// is a forgotten [`activity`](Self::activity) or [`orchestrator`](Self::orchestrator)
    /// call, or code a deploy removed. Under [`Unregistered::Wait`] (the default) each is
    /// logged as a `tracing` warning and listed by [`Runtime::unregistered_callees`], and
    /// the runtime starts: an instance that reaches such a call waits for the code. Under
    /// [`Unregistered::Fail`] the runtime does not start.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateName`] if two handles were registered under one name;
    /// [`Error::UnregisteredCallees`] under [`Unregistered::Fail`] if a registered
    /// orchestrator calls an activity or orchestrator that is not registered (nothing is
    /// read or written then); [`Error::Store`] if recovery cannot read the store.
    pub async fn start(self) -> Result<Runtime, Error> {
        if let Some(name) = self.registry.duplicates.first() {
            return Err(Error::DuplicateName(name.to_string()));
        }
        let unregistered_callees = self.registry.unregistered_callees();
        match self.unregistered {
            Unregistered::Fail if !unregistered_callees.is_empty() => {
                return Err(Error::UnregisteredCallees(unregistered_callees));
            }
            _ => {
                for missing in &unregistered_callees {
                    tracing::warn!(
                        orchestrator = missing.orchestrator,
                        version = missing.version,
                        callee = %missing.callee,
                        "{missing}; an instance that reaches the call waits until a runtime with it starts"
                    );
                }
            }
        }
        let commits = GroupCommit::start(self.store.clone());
        let shared = Arc::new(Shared {
            store: self.store,
            registry: self.registry,
            unregistered: self.unregistered,
            max_payload: self.max_payload,
            clock: self.clock,
            commits,
            next_work_id: AtomicU64::new(0),
            instances: Mutex::new(HashMap::new()),
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(self.cache_capacity).expect("capacity is at least 1"),
            )),
            activities: Mutex::new(Slots::new(self.activity_concurrency)),
            turns: Arc::new(Semaphore::new(self.orchestrator_concurrency)),
            waiters: Mutex::new(HashMap::new()),
            waiting_for_code: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            started: Notify::new(),
            tracker: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            replays: AtomicU64::new(0),
            unregistered_callees,
        });
        shared.recover().await?;
        Ok(Runtime { shared })
    }
}

/// A running engine: orchestrator and activity dispatchers over a store.
///
/// Cheap to clone. Call [`Runtime::shutdown`] to stop it gracefully; work still queued
/// then is redelivered when a runtime starts on the same store again.
#[derive(Clone, Debug)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    /// A builder over `store`, for example a [`FjallStore`](crate::FjallStore).
    pub fn builder(store: impl Store) -> RuntimeBuilder {
        let cpus = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        RuntimeBuilder {
            store: Arc::new(store),
            registry: Registry::default(),
            orchestrator_concurrency: 4 * cpus,
            activity_concurrency: 64,
            cache_capacity: 10_000,
            unregistered: Unregistered::default(),
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
            clock: Arc::new(SystemClock),
        }
    }

    /// A client to start instances and read their status.
    pub fn client(&self) -> Client {
        Client::new(self.shared.clone())
    }

    /// Counters of the commit path: how many commits were acknowledged and how many store
    /// writes (fsyncs) carried them.
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.commits.stats()
    }

    /// The calls the registered orchestrators make to activities and orchestrators this
    /// runtime does not have, as [`RuntimeBuilder::start`] found them (and, under
    /// [`Unregistered::Wait`], logged them). Empty when everything they call is
    /// registered.
    pub fn unregistered_callees(&self) -> &[UnregisteredCallee] {
        &self.shared.unregistered_callees
    }

    /// How many times an instance was rebuilt by replaying its history (a cache miss: the
    /// first turn after a restart or an eviction).
    pub fn replay_count(&self) -> u64 {
        self.shared.replays.load(Ordering::Relaxed)
    }

    /// Stops taking new work, waits for running turns and activities to finish and their
    /// results to be committed, then returns. Anything still queued stays in the store.
    pub async fn shutdown(self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        self.shared.store_all_held_results().await;
        // Activities waiting for a slot give up; their tasks stay in the store, marked as
        // never executed.
        self.shared.activities_waiting_give_up().await;
        self.shared.commits.stop().await;
    }
}

/// Work a runtime has in hand (see [`Clock::work_began`]); done when dropped.
pub(crate) struct Busy(Arc<dyn Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.work_done();
    }
}

/// An event on its way to an instance, with the work item that carries it.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) id: WorkId,
    /// The incarnation it is for: dropped on arrival at any other.
    pub(crate) incarnation: Incarnation,
    /// The generation it is for; `None` for any.
    pub(crate) generation: Option<u32>,
    pub(crate) event: Event,
    /// Set for an activity result handed to its instance in memory: the activity's
    /// progress key. `id` is then the activity's task, and the turn that takes the result
    /// removes the task and the progress in the commit that records the result.
    pub(crate) progress_key: Option<String>,
    /// Set for an activity whose input its code cannot decode (a task queued by other
    /// code): the task, which stays in the store as never executed. The delivery stalls
    /// its instance when turned; `event` is the `ActivityFailed` that says why, never
    /// recorded.
    pub(crate) undecodable: Option<Box<ActivityTask>>,
}

impl Delivery {
    /// Whether it is for run `(incarnation, generation)` of its instance.
    pub(crate) fn is_for(&self, incarnation: Incarnation, generation: u32) -> bool {
        self.incarnation == incarnation && self.generation.is_none_or(|g| g == generation)
    }

    /// For an activity whose input does not decode: the failure that stalls its instance.
    pub(crate) fn undecodable_input(&self) -> Option<&Failure> {
        self.undecodable.as_ref()?;
        match &self.event {
            Event::ActivityFailed { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// Whether the event is a client's request about the instance rather than input to
    /// its orchestrator.
    pub(crate) fn is_control(&self) -> bool {
        matches!(
            self.event,
            Event::TerminateRequested { .. }
                | Event::SuspendRequested { .. }
                | Event::ResumeRequested
        )
    }
}

/// Per-instance queue of events not yet turned.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) messages: Vec<Delivery>,
    /// A turn task is running for this instance.
    pub(crate) busy: bool,
    /// The instance is stalled: its events stay in the store until a restart.
    pub(crate) stalled: bool,
    /// The instance is suspended: only client requests are taken.
    pub(crate) suspended: bool,
    /// Run a turn even without events (a stalled instance gets another chance).
    retry: bool,
}

impl Inbox {
    /// Claims the turn task of this inbox: true if none runs, and the caller is to spawn
    /// one.
    pub(crate) fn claim_turns(&mut self) -> bool {
        !std::mem::replace(&mut self.busy, true)
    }

    /// The messages for the next turn: a client request alone, or the events before the
    /// next request (only requests while suspended or stalled).
    fn next_batch(&mut self) -> Vec<Delivery> {
        let end = match self.messages.iter().position(Delivery::is_control) {
            Some(0) => 1,
            Some(i) => i,
            None => self.messages.len(),
        };
        if self.suspended || self.stalled {
            return match self.messages.iter().position(Delivery::is_control) {
                Some(i) => vec![self.messages.remove(i)],
                None => Vec::new(),
            };
        }
        self.messages.drain(..end).collect()
    }
}

/// A cached live instance between turns.
pub(crate) struct Cached {
    pub(crate) execution: Execution,
    pub(crate) record: InstanceRecord,
}

/// State shared by the runtime, its client and the contexts.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) unregistered: Unregistered,
    /// The largest payload instances may store, in bytes.
    pub(crate) max_payload: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) commits: GroupCommit,
    pub(crate) next_work_id: AtomicU64,
    pub(crate) instances: Mutex<HashMap<String, Inbox>>,
    pub(crate) cache: Mutex<LruCache<String, Cached>>,
    /// The slots of activities that run at once, and the activities waiting for one.
    pub(crate) activities: Mutex<Slots>,
    turns: Arc<Semaphore>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Suspended instances that wait for an activity this runtime does not have: resuming
    /// one stalls it with this failure.
    pub(crate) waiting_for_code: Mutex<HashMap<String, Failure>>,
    /// Instance ids whose creation is being committed, so concurrent starts of one id
    /// create it once.
    pub(crate) starting: Mutex<HashSet<String>>,
    pub(crate) started: Notify,
    pub(crate) tracker: TaskTracker,
    shutting_down: AtomicBool,
    pub(crate) replays: AtomicU64,
    /// What [`RuntimeBuilder::start`] found missing.
    unregistered_callees: Vec<UnregisteredCallee>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The runtime clock's time, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.clock.now())
    }

    /// Whether an instance waits for `activity` rather than calling it: the runtime does
    /// not have it, and waits for missing code.
    pub(crate) fn waits_for_activity(&self, activity: &str) -> bool {
        self.unregistered == Unregistered::Wait && !self.registry.activities.contains_key(activity)
    }

    /// Whether an instance waits for version `version` of `orchestrator` rather than
    /// starting it: the runtime does not have it, and waits for missing code.
    pub(crate) fn waits_for_orchestrator(&self, orchestrator: &str, version: u32) -> bool {
        self.unregistered == Unregistered::Wait
            && self.registry.orchestrator(orchestrator, version).is_none()
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

    pub(crate) fn work_id(&self) -> WorkId {
        self.next_work_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the runtime takes no more work: it is shutting down, or halted because
    /// the store refuses every write.
    pub(crate) fn takes_no_work(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst) || self.commits.halted().is_some()
    }

    /// Changes the inbox of `instance` with `change`, then makes sure a turn task will take
    /// what it holds.
    fn queue(self: &Arc<Self>, instance: String, change: impl FnOnce(&mut Inbox)) {
        let spawn = {
            let mut instances = lock(&self.instances);
            let inbox = instances.entry(instance.clone()).or_default();
            change(inbox);
            inbox.claim_turns()
        };
        if spawn {
            self.spawn_turns(instance);
        }
    }

    /// Queues an event for `instance` and makes sure a turn task will take it.
    pub(crate) fn deliver(self: &Arc<Self>, instance: String, delivery: Delivery) {
        self.queue(instance, |inbox| inbox.messages.push(delivery));
    }

    /// Queues `deliveries` for `instance` ahead of the events already waiting, but after
    /// the client requests at their head (a terminate must not wait behind an instance
    /// that continues as new forever), and makes sure a turn task will take them.
    pub(crate) fn deliver_first(
        self: &Arc<Self>,
        instance: &str,
        deliveries: impl IntoIterator<Item = Delivery>,
    ) {
        self.queue(instance.to_string(), |inbox| {
            let at = inbox.messages.iter().take_while(|d| d.is_control()).count();
            inbox.messages.splice(at..at, deliveries);
        });
    }

    /// Queues every one of `deliveries` before any turn task starts on them, so each
    /// instance's first turn sees all of its events (recovery hands out many at once).
    pub(crate) fn deliver_all(self: &Arc<Self>, deliveries: Vec<(String, Delivery)>) {
        let mut idle = Vec::new();
        {
            let mut instances = lock(&self.instances);
            for (instance, delivery) in deliveries {
                let inbox = instances.entry(instance.clone()).or_default();
                inbox.messages.push(delivery);
                if inbox.claim_turns() {
                    idle.push(instance);
                }
            }
        }
        for instance in idle {
            self.spawn_turns(instance);
        }
    }

    /// Runs a turn for `instance` even without new events (to retry a stalled instance).
    pub(crate) fn poke(self: &Arc<Self>, instance: String) {
        self.queue(instance, |inbox| inbox.retry = true);
    }

    pub(crate) fn spawn_turns(self: &Arc<Self>, instance: String) {
        let busy = self.busy();
        self.spawn_boxed(self.clone().run_turns(instance, busy));
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
    pub(crate) fn spawn_boxed(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(Box::pin(task));
    }

    /// Work in hand, from now until the returned guard drops: a clock that skips time
    /// holds still meanwhile.
    pub(crate) fn busy(&self) -> Busy {
        self.clock.work_began();
        Busy(self.clock.clone())
    }

    /// Turns `instance` until its inbox is empty. One such task per instance at a time, so
    /// an instance's turns never overlap. `_busy` is held until the task ends (an
    /// argument rather than a wrapping `async` block, which would hold this future twice
    /// over and double the task's size).
    async fn run_turns(self: Arc<Self>, instance: String, _busy: Busy) {
        loop {
            let messages = {
                let mut instances = lock(&self.instances);
                let inbox = instances.get_mut(&instance).expect("busy inbox exists");
                let runnable = !self.takes_no_work();
                let batch = if runnable {
                    inbox.next_batch()
                } else {
                    Vec::new()
                };
                let retry = std::mem::take(&mut inbox.retry) && runnable && !inbox.stalled;
                if batch.is_empty() && !retry {
                    inbox.busy = false;
                    if inbox.messages.is_empty() && !inbox.stalled && !inbox.suspended {
                        instances.remove(&instance);
                    }
                    return;
                }
                batch
            };
            let Ok(permit) = self.turns.clone().acquire_owned().await else {
                return;
            };
            let span = tracing::debug_span!("turn", instance, events = messages.len());
            if let Err(e) = self
                .turn(&instance, &messages, permit)
                .instrument(span)
                .await
            {
                // A store error no retry can mend (a poisoned store, a record that does not
                // decode) parks the instance in memory; its events stay in the store, and
                // the next start tries again.
                let permanent = matches!(&e, Error::Store(e) if e.is_permanent());
                if permanent {
                    tracing::error!(instance, error = %e, "turn not committed; the instance waits for a restart");
                } else {
                    tracing::warn!(instance, error = %e, "turn not committed; retrying");
                }
                lock(&self.cache).pop(&instance);
                {
                    let mut instances = lock(&self.instances);
                    let inbox = instances.get_mut(&instance).expect("busy inbox exists");
                    let newer = std::mem::replace(&mut inbox.messages, messages);
                    inbox.messages.extend(newer);
                    if permanent {
                        inbox.stalled = true;
                        inbox.busy = false;
                        return;
                    }
                    inbox.retry = true;
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }

    /// Wakes every client waiting on `instance`.
    pub(crate) fn notify_finished(&self, instance: &str) {
        if let Some(waiters) = lock(&self.waiters).remove(instance) {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }

    /// A receiver told when `instance` next finishes or stalls.
    pub(crate) fn watch(&self, instance: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        let waiting = waiters.entry(instance.to_string()).or_default();
        // Waits that timed out leave closed senders behind.
        waiting.retain(|waiter| !waiter.is_closed());
        waiting.push(tx);
        rx
    }

    /// Forgets everything held in memory about `instance` (after a purge).
    pub(crate) fn forget(&self, instance: &str) {
        lock(&self.cache).pop(instance);
        lock(&self.waiting_for_code).remove(instance);
    }
}
