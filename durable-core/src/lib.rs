//! Durable workflows as ordinary async functions.
//!
//! Write an orchestrator with `#[orchestrator]` and its steps with `#[activity]`; run them
//! on a [`Runtime`] over an embedded [`FjallStore`]. Every await of a durable operation is
//! a checkpoint: a process killed at any moment restarts and every workflow resumes from
//! its last checkpoint, its finished steps served from history, not run again.
//!
//! ```
//! use durable_core::{activity, orchestrator, ActivityContext, OrchestrationContext};
//!
//! #[activity]
//! async fn greet(_ctx: ActivityContext, name: String) -> Result<String, String> {
//!     Ok(format!("hello, {name}"))
//! }
//!
//! #[orchestrator]
//! async fn hello(ctx: OrchestrationContext, name: String) -> Result<String, String> {
//!     let greeting = ctx.call(greet, name).await?;
//!     Ok(greeting)
//! }
//! ```

#![warn(missing_docs)]

// Lets the macros' absolute `::durable_core::` paths resolve inside this crate's tests.
extern crate self as durable_core;

mod activity_context;
pub mod admin;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod clock;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod durable_future;
mod entity;
mod error;
mod external_event;
mod failure;
mod handle;
mod instance_id;
mod join;
mod orchestration_context;
mod payload;
mod position;
mod registry;
mod replay;
pub mod replay_test;
mod retry;
mod runtime;
#[cfg(feature = "schedules")]
pub mod schedule;
mod telemetry;

pub use activity_context::ActivityContext;
pub use client::entity_query::{EntityCursor, EntityPage, EntityQuery, EntitySummary};
pub use client::instance::{Instance, InstanceStatus};
pub use client::query::{InstanceQuery, InstanceSummary, Page, PageCursor, PurgeFilter};
pub use client::start_options::StartOptions;
pub use client::{Client, SetAsideEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use durable_future::{
    ActivityCall, ContinueAsNew, CriticalSection, DurableFuture, EntityCall, EventWait,
    LockRequest, SubOrchestrationCall, Timer,
};
/// Makes an `async fn` an orchestrator: a replayable workflow, registered and started
/// through the typed handle the macro generates in its place.
///
/// # Examples
///
/// ```
/// use durable_core::{ActivityContext, OrchestrationContext, activity, orchestrator};
///
/// #[activity]
/// async fn reserve(_ctx: ActivityContext, seats: u32) -> Result<u32, String> {
///     Ok(seats)
/// }
///
/// // Registered and recorded as "booking", version 2: instances started under version 1
/// // keep replaying the version-1 code while it stays registered beside this one.
/// #[orchestrator(name = "booking", version = 2)]
/// async fn book(ctx: OrchestrationContext, seats: u32) -> Result<u32, String> {
///     let reserved = ctx.call(reserve, seats).await?;
///     Ok(reserved)
/// }
///
/// // At most 10 instances run at once, across every worker of the store; the others
/// // wait, pending, and start in creation order (see `OrchestratorLimits`).
/// #[orchestrator(max_running = 10)]
/// async fn migrate(ctx: OrchestrationContext, table: u32) -> Result<u32, String> {
///     Ok(ctx.call(reserve, table).await?)
/// }
/// # fn main() {}
/// ```
///
/// # The function and its handle
#[doc(inline)]
pub use durable_macros::orchestrator;
pub use instance_id::{GENERATED_ID_PREFIX, MAX_INSTANCE_ID_LEN};

/// Makes an `async fn` an activity: a step with side effects, run at least once, its
/// result recorded in history.
///
/// # Examples
///
/// ```
/// use durable_core::{ActivityContext, activity};
///
/// // Registered and recorded as "charge-card" rather than `charge`: the name instances in
/// // flight find it by, so it can stay put while the function is renamed.
/// #[activity(name = "charge-card")]
/// async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, String> {
///     Ok(format!("charged {cents} cents"))
/// }
///
/// // Flow control (see `ActivityLimits`): at most 3 run at once and 10 start per second,
/// // across every worker of the store; waiting tasks of higher priority go first. The
/// // rate's period is in `ms`, `s`, `m` or `h` ("100/m" is 100 per minute).
/// #[activity(concurrency = 3, rate = "10/1s", priority = 5)]
/// async fn call_partner(_ctx: ActivityContext, id: u64) -> Result<u64, String> {
///     Ok(id)
/// }
/// # fn main() {}
/// ```
///
/// # The function and its handle
#[doc(inline)]
pub use durable_macros::activity;

/// Marks a helper that receives the orchestration context as replay-safe, checking its
/// body like an orchestrator's. It takes no arguments.
///
/// # Examples
///
/// ```
/// use durable_core::{ActivityContext, OrchestrationContext, activity, deterministic, orchestrator};
///
/// #[activity]
/// async fn charge(_ctx: ActivityContext, order: u64) -> Result<u64, String> {
///     Ok(order)
/// }
///
/// #[deterministic]
/// async fn charge_all(ctx: &OrchestrationContext, orders: Vec<u64>) -> Result<u64, String> {
///     let mut charged = 0;
///     for order in orders {
///         charged += ctx.call(charge, order).await?;
///     }
///     Ok(charged)
/// }
///
/// #[orchestrator]
/// async fn checkout(ctx: OrchestrationContext, orders: Vec<u64>) -> Result<u64, String> {
///     charge_all(&ctx, orders).await
/// }
/// # fn main() {}
/// ```
///
/// # What it checks and generates
#[doc(inline)]
pub use durable_macros::deterministic;
/// Makes the `impl` block of a serde state type an entity: each `pub fn` with `&mut self`
/// an operation that may change the state, each with `&self` a read, each one a typed
/// handle of its name.
///
/// # Examples
///
/// ```
/// use durable_core::{Entity, EntityContext, EntityId, entity};
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Account {
///     balance: i64,
/// }
///
/// #[entity]
/// impl Account {
///     pub fn deposit(&mut self, amount: i64) {
///         self.balance += amount;
///     }
///
///     pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
///         self.take(amount)
///     }
///
///     /// Moves `amount` to another account, by a signal (one-way, sent when this
///     /// operation commits; dropped if it fails).
///     pub fn transfer(
///         &mut self,
///         ctx: &mut EntityContext,
///         (to, amount): (String, i64),
///     ) -> Result<i64, String> {
///         let left = self.take(amount)?;
///         ctx.signal(to, Account::deposit, amount);
///         Ok(left)
///     }
///
///     pub fn balance(&self) -> i64 {
///         self.balance
///     }
///
///     // A helper: operations share logic through private functions, since each
///     // operation's name is its handle (`Account::withdraw`), not a method.
///     fn take(&mut self, amount: i64) -> Result<i64, String> {
///         if amount > self.balance {
///             return Err(format!("insufficient funds: {} < {amount}", self.balance));
///         }
///         self.balance -= amount;
///         Ok(self.balance)
///     }
/// }
///
/// let alice = EntityId::of::<Account>("alice");
/// let done = Account::dispatch(&alice, None, "deposit", b"10")?;
/// let state = done.state.unwrap();
/// assert_eq!(state, br#"{"balance":10}"#);
/// let done = Account::dispatch(&alice, Some(&state), "transfer", br#"["bob",4]"#)?;
/// assert_eq!(done.signals[0].target.to_string(), "@Account@bob");
/// # Ok::<(), durable_core::EntityError>(())
/// ```
///
/// # The impl block and its handles
#[doc(inline)]
pub use durable_macros::entity;
/// The PostgreSQL store (feature `postgres`).
#[cfg(feature = "postgres")]
pub use durable_store::PostgresStore;
pub use durable_store::{
    ActivityLimits, Durability, FjallStore, KeyKind, OrchestratorLimits, Rate, StatusCounts,
    StatusKind, Store, StoreError,
};
pub use entity::{
    Dispatched, Entity, EntityContext, EntityError, EntityId, EntityIdError, IntoEntityId, NoError,
    Operation, OperationInfo, OperationKind, Signal, SignalRefusal, Unencodable,
};
pub use error::{
    ActivityError, ClientRequest, EntityCallError, Error, InvalidIdReason, LockRuleViolation,
    SubOrchestrationError, Timeout,
};
pub use external_event::{AsEventName, EventName};
pub use handle::{Activity, BoxFuture, Callee, Orchestrator};
pub use join::{Either, JoinAll, Select2, WhenAny};
pub use orchestration_context::OrchestrationContext;
pub use payload::{PayloadDirection, PayloadError, PayloadTooLarge, to_json as payload_to_json};
pub use position::{Position, StepAt};
pub use retry::{Backoff, RetryPolicy};
pub use runtime::{
    CommitStats, DEFAULT_LEASE, DEFAULT_MAX_PAYLOAD_BYTES, Runtime, RuntimeBuilder, Unregistered,
    UnregisteredCallee,
};
pub use telemetry::{InvalidTraceparent, TraceContext};

/// The stored records, for tools and tests that read a store directly.
pub mod record {
    pub use durable_store::{
        ActivityTask, Commit, Event, Failure, FailureKind, HistoryAppend, Incarnation,
        InstanceRecord, ParentLink, Site, Status, StatusKind, WorkId, WorkItem,
    };
}

#[doc = include_str!("determinism.md")]
pub mod determinism {}

/// The README's code, compiled as a doctest so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    use crate::entity::{Entity, Operation};
    use crate::handle::{Activity, Callee, Orchestrator};

    pub use crate::entity::Applied;
    pub use crate::handle::BoxFuture;
    pub use durable_store::{ActivityLimits, OrchestratorLimits};

    /// What `#[orchestrator]` wraps a handle its body calls in, to list it in
    /// `Orchestrator::callees` (autoref specialisation: a value that is not a handle of
    /// the kind is skipped, not a second error beside the body's own).
    #[derive(Debug)]
    pub struct Probe<T>(pub T);

    /// Lists an activity handle.
    pub trait ActivityProbe {
        /// The callee, if the probed value is an activity handle.
        fn activity_callee(&self) -> Option<Callee>;
    }

    impl<A: Activity> ActivityProbe for Probe<A> {
        fn activity_callee(&self) -> Option<Callee> {
            Some(Callee::activity::<A>())
        }
    }

    /// Lists an orchestrator handle.
    pub trait OrchestratorProbe {
        /// The callee, if the probed value is an orchestrator handle.
        fn orchestrator_callee(&self) -> Option<Callee>;
    }

    impl<O: Orchestrator> OrchestratorProbe for Probe<O> {
        fn orchestrator_callee(&self) -> Option<Callee> {
            Some(Callee::orchestrator::<O>())
        }
    }

    /// Lists the entity type of an operation handle (`Account::deposit`).
    pub trait EntityProbe {
        /// The callee, if the probed value is an entity operation.
        fn entity_callee(&self) -> Option<Callee>;
    }

    impl<E: Entity, I, O, Er> EntityProbe for Probe<Operation<E, I, O, Er>> {
        fn entity_callee(&self) -> Option<Callee> {
            Some(Callee::entity::<E>())
        }
    }

    /// The fallback of the probes: not a handle of the kind, nothing listed.
    pub trait NotAHandle {
        /// Nothing.
        fn activity_callee(&self) -> Option<Callee> {
            None
        }
        /// Nothing.
        fn orchestrator_callee(&self) -> Option<Callee> {
            None
        }
        /// Nothing.
        fn entity_callee(&self) -> Option<Callee> {
            None
        }
    }

    impl<T> NotAHandle for &Probe<T> {}

    /// Implemented by the companion type `#[deterministic]` gives a free function; an
    /// orchestrator's call that passes the context to a function asks for it.
    #[diagnostic::on_unimplemented(
        message = "a function that receives the orchestration context must be marked `#[deterministic]`",
        label = "passed the context, but not marked `#[deterministic]`",
        note = "add `#[deterministic]` to the function: it then gets the same replay-safety checks as the orchestrator",
        note = "for a one-off value that may differ between runs, use `ctx.side_effect(|| ...)`, which records it"
    )]
    pub trait Deterministic {}

    /// Compiles only if `T` is the companion type of a `#[deterministic]` function.
    pub const fn deterministic<T: ?Sized + Deterministic>() {}

    /// The fallback the check names when the function has no companion type.
    pub mod unmarked {
        /// Not a `#[deterministic]` function.
        #[derive(Debug)]
        pub enum NotMarkedDeterministic {}
    }
}
