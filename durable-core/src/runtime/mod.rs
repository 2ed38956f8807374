//! The runtime: dispatches orchestration turns and activities on tokio, commits each step
//! through group commit, and recovers unfinished work on start.
//!
//! Work items (events for instances, activities to run, timers) live in the store until
//! the commit that consumes them deletes them. A runtime is a worker on the store
//! ([`lease`]): it joins under a lease, claims the instances and work no live worker
//! holds (all of it, when it starts on a store it has alone), and writes every commit
//! under its lease, which the store checks. If it dies, its lease lapses (with the
//! process, on fjall), and the next worker to claim takes over every item it held; if it
//! lives on past its lease (paused, or cut off from the database), it joins again as a
//! new worker, having dropped what it held ([`lease`]). An
//! activity is therefore run at least once; its result is recorded exactly once, in the
//! same atomic commit that deletes its work item. That commit is the turn of its instance
//! that takes the result (handed over in memory when this worker holds the instance), so
//! an activity costs no commit of its own; a result no turn here will take soon (an
//! instance another worker holds, a suspended or stalled instance, a shutdown) is stored
//! as a message instead.

//! # The files
//!
//! [`engine`] holds the state everything shares (the store and group commit, the
//! per-instance inboxes of [`inbox`], the instance cache, the activity slots, the
//! waiters) behind methods. The job files call it, never each other in a loop:
//! [`turns`] (the turn task; it plans with [`turn_plan`], and hands the turns that do
//! not run the orchestrator to [`control`], a client's terminate, suspend or resume, and
//! [`verdicts`]), [`activities`], [`timer_arming`], [`outbox`] (what a commit sends once
//! durable), [`recovery`] (taking over what a claim took), [`lease`] (joining, the claim
//! loop, joining again after a lapse, leaving) and [`group_commit`]. What the worker
//! holds, the lease its commits carry, and what it drops when that lease lapses, are in
//! `engine/holdings.rs`. The engine spawns an instance's turn task
//! through the function this builder hands it ([`turns::turn_task`]), so it names no
//! job file.
//!
//! # One activity, from `client.start` and back
//!
//! 1. `Client::start` (`client/mod.rs`) commits the instance's record and its `Started`
//!    message: [`Engine::send_message`](engine::Engine::send_message) (`engine/send.rs`),
//!    through [`GroupCommit`](group_commit::GroupCommit) (`group_commit.rs`), then
//!    [`Engine::deliver`](engine::Engine::deliver) puts the message in the instance's
//!    inbox (`inbox.rs`) and spawns its turn task.
//! 2. The turn task, [`turns::turn_task`] (`turns.rs`), takes the inbox's messages and
//!    plans a turn, [`turn_plan::plan`] (`turn_plan.rs`): the replay step
//!    (`crate::replay`) runs the orchestrator to its `ctx.call`, whose `ScheduleActivity`
//!    command becomes an activity task in the turn's commit.
//! 3. Once that commit is durable, `turns.rs` hands the task to [`activities::run`]
//!    (`activities.rs`), which runs the activity when a slot is free, with an
//!    [`ActivityContext`](crate::activity_context::ActivityContext), and hands its result
//!    to the instance's inbox: [`Engine::hand_over`](engine::Engine::hand_over)
//!    (`engine/mod.rs`), which spawns the turn task again.
//! 4. That turn (`turns.rs`, `turn_plan.rs`) replays the result into the orchestrator and
//!    commits it with the instance's new status, in the commit that removes the task; if
//!    the instance finished, [`Engine::notify_finished`](engine::Engine::notify_finished)
//!    wakes the client's `wait`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use durable_store::{ActivityLimits, OrchestratorLimits, Store};

use crate::client::Client;
use crate::clock::{Clock, SystemClock};
use crate::entity::Entity;
use crate::error::Error;
use crate::handle::{Activity, Orchestrator};
use crate::registry::Registry;

mod activities;
mod control;
pub(crate) mod dead_letter;
pub(crate) mod engine;
pub(crate) mod entities;
mod entity_messages;
mod group_commit;
mod inbox;
mod lease;
mod outbox;
mod recovery;
pub(crate) mod timer_arming;
pub(crate) mod tool;
mod turn_plan;
mod turns;
pub(crate) mod unregistered;
mod verdicts;

use engine::{Engine, EngineParts};
pub use group_commit::CommitStats;
pub use lease::DEFAULT_LEASE;
pub use unregistered::{Unregistered, UnregisteredCallee};

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
    lease: std::time::Duration,
    max_recoveries: Option<u32>,
}

/// The default of [`RuntimeBuilder::max_payload_bytes`]: 2 MiB, as Temporal's.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 2 << 20;

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

    /// Sets the flow control of `activity` (a registered activity's handle), over what its
    /// attribute says: a concurrency limit and a rate limit that hold across every worker
    /// of a shared store (PostgreSQL; per process on fjall), and a priority among its
    /// waiting tasks. Like a DBOS queue's `concurrency`/`limiter` or Temporal's
    /// `maxTaskQueueActivitiesPerSecond`:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use durable_core::{ActivityLimits, Runtime};
    /// # #[durable_core::activity]
    /// # async fn charge(_ctx: durable_core::ActivityContext, cents: u64) -> Result<u64, String> { Ok(cents) }
    /// # fn build(store: durable_core::FjallStore) -> durable_core::RuntimeBuilder {
    /// Runtime::builder(store)
    ///     .activity(charge)
    ///     .activity_limits(charge, ActivityLimits::new().concurrency(3).rate(10, Duration::from_secs(1)))
    /// # }
    /// ```
    ///
    /// Every task of a limited activity (a concurrency or a rate) starts through a claim
    /// of the store, which counts the tasks of the activity that live workers hold and its
    /// starts in the last period; a task holds its slot, under its worker's lease, until
    /// its result is committed, and a worker that dies frees its slots when its lease
    /// lapses. Workers sharing a store should set the same limits.
    pub fn activity_limits<A: Activity>(mut self, _activity: A, limits: ActivityLimits) -> Self {
        self.registry.set_activity_limits::<A>(limits);
        self
    }

    /// Sets the flow control of `orchestrator` (every version of a registered
    /// orchestrator's name), over what its attribute says: at most
    /// [`max_running`](OrchestratorLimits::max_running) of its instances run at once,
    /// across every worker of a shared store (PostgreSQL; per process on fjall). An
    /// instance started beyond it waits, pending, until a running one finishes; waiting
    /// instances start in creation order. Workers sharing a store should set the same
    /// limits.
    pub fn orchestrator_limits<O: Orchestrator>(
        mut self,
        _orchestrator: O,
        limits: OrchestratorLimits,
    ) -> Self {
        self.registry.set_orchestrator_limits::<O>(limits);
        self
    }

    /// Registers an entity type: a state type whose `impl` block carries `#[entity]`,
    /// named by its type, `.entity::<Account>()`. The runtime then runs the operations
    /// signalled to entities of that type (`@Account@key`); on a store other processes
    /// share, it claims only entities of the types registered here.
    pub fn entity<E: Entity>(mut self) -> Self {
        self.registry.add_entity::<E>();
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

    /// Parks an instance that crashes its worker every time it runs (the process dies in
    /// its turn or its activity) after `n` crashes (at least 1), instead of taking the
    /// fleet down at every restart: its status becomes
    /// [`Status::DeadLettered`](crate::record::Status::DeadLettered), its work kept, until
    /// an operator resumes it (DBOS's `max_recovery_attempts`). Off by default; a
    /// start's [`StartOptions::max_recoveries`](crate::StartOptions::max_recoveries)
    /// overrides it. An instance that merely had work in flight beside the one that
    /// crashes is not parked. How it works: `runtime/dead_letter.rs`.
    pub fn max_recoveries(mut self, n: u32) -> Self {
        self.max_recoveries = Some(n);
        self
    }

    /// The clock durable timers, `ctx.now()` and the instances' timestamps read (default:
    /// [`SystemClock`]). In tests, a [`ManualClock`](crate::ManualClock)
    /// lets a workflow that waits for days run at once: its timers fire when the test
    /// moves the clock past them, or, with
    /// [`ManualClock::time_skipping`](crate::ManualClock::time_skipping), as soon as the
    /// runtime has nothing else to do.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long this runtime's lease on a shared store lasts (default: [`DEFAULT_LEASE`],
    /// 30 s): it is renewed every third of that, and once a worker fails to renew it in
    /// time (its process killed, frozen or cut off), other workers take its instances and
    /// activities over. A runtime that finds its own lease lapsed (it was frozen, or the
    /// database was out of reach, for longer) writes nothing computed under it: it drops
    /// what it held and joins the store again as a new worker, retrying while the
    /// database is out of reach, then claims work as at start. Shorter means faster
    /// takeover, and more renewals. A store one process holds alone (fjall) ignores it:
    /// the lease lasts as long as the process. At least 1 s.
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease.max(std::time::Duration::from_secs(1));
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
        if let Some(name) = self.registry.first_duplicate() {
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
        let lease = lease::lease_for(&*self.store, self.lease);
        let (worker, first_work_id) = lease::join(self.store.clone(), lease).await?;
        let engine = Arc::new(Engine::new(EngineParts {
            worker,
            work_ids: engine::WorkIds::from(first_work_id),
            store: self.store,
            registry: self.registry,
            unregistered: self.unregistered,
            max_payload: self.max_payload,
            clock: self.clock,
            orchestrator_concurrency: self.orchestrator_concurrency,
            activity_concurrency: self.activity_concurrency,
            cache_capacity: self.cache_capacity,
            unregistered_callees,
            turn_task: turns::turn_task,
            tool: false,
        }));
        engine
            .recovery_watch()
            .set_default_limit(self.max_recoveries);
        if let Err(e) = recovery::claim_all(&engine, false).await {
            engine.stop_commits().await;
            lease::leave(&engine).await;
            return Err(e);
        }
        let claims = tokio::spawn(lease::claim_loop(Arc::downgrade(&engine), lease));
        engine.keep_claim_loop(claims);
        Ok(Runtime { engine })
    }
}

/// A running engine: orchestrator and activity dispatchers over a store.
///
/// Cheap to clone. Call [`Runtime::shutdown`] to stop it gracefully; work still queued
/// then is redelivered when a runtime starts on the same store again.
#[derive(Clone, Debug)]
pub struct Runtime {
    engine: Arc<Engine>,
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
            lease: DEFAULT_LEASE,
            max_recoveries: None,
        }
    }

    /// A client to start instances and read their status.
    pub fn client(&self) -> Client {
        Client::new(self.engine.clone())
    }

    /// Counters of the commit path: how many commits were acknowledged and how many store
    /// writes (fsyncs) carried them.
    pub fn commit_stats(&self) -> CommitStats {
        self.engine.commit_stats()
    }

    /// The calls the registered orchestrators make to activities and orchestrators this
    /// runtime does not have, as [`RuntimeBuilder::start`] found them (and, under
    /// [`Unregistered::Wait`], logged them). Empty when everything they call is
    /// registered.
    pub fn unregistered_callees(&self) -> &[UnregisteredCallee] {
        self.engine.unregistered_callees()
    }

    /// Why the runtime halted, if it did: the store refuses its writes for good
    /// ([`StoreError::Poisoned`](crate::StoreError::Poisoned): a failed fsync, or a
    /// PostgreSQL `COMMIT` whose connection was lost, so that whether it was applied is
    /// unknown). A halted runtime takes no more work and writes nothing; restart the
    /// process (a new runtime reopens the store and joins as a new worker) to go on.
    /// `None` while it runs.
    ///
    /// A worker whose lease on a shared store lapsed (its process paused, or cut off from
    /// the database, for longer than the lease:
    /// [`StoreError::LeaseExpired`](crate::StoreError::LeaseExpired)) does not halt: it
    /// drops what it held, which other workers may have taken over, joins the store again
    /// as a new worker, and goes on (see [`RuntimeBuilder::lease`]).
    pub fn halted(&self) -> Option<durable_store::StoreError> {
        self.engine.halted().cloned()
    }

    /// How many times this runtime's lease on a shared store lapsed and it joined the
    /// store again as a new worker (see [`halted`](Self::halted)): 0 while its renewals
    /// keep up. A lapse costs the work it held, which is taken over (here or by another
    /// worker) from the store.
    pub fn rejoin_count(&self) -> u64 {
        self.engine.rejoin_count()
    }

    /// How many times an instance was rebuilt by replaying its history (a cache miss: the
    /// first turn after a restart or an eviction).
    pub fn replay_count(&self) -> u64 {
        self.engine.replay_count()
    }

    /// Stops taking new work, waits for running turns and activities to finish and their
    /// results to be committed, then returns. Anything still queued stays in the store.
    pub async fn shutdown(self) {
        self.engine.stop_tasks().await;
        activities::store_all_held_results(&self.engine).await;
        // Activities waiting for a slot give up; their tasks stay in the store, marked as
        // never executed.
        activities::give_up_waiting(&self.engine).await;
        self.engine.stop_commits().await;
        // Leaving wakes the claim loop, which then sees the runtime stopped.
        lease::leave(&self.engine).await;
        self.engine.stop_claim_loop().await;
    }
}
