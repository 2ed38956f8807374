//! The typed handles `#[orchestrator]` and `#[activity]` generate.
//!
//! Each annotated function becomes a unit struct of the same name that implements one of
//! these traits. The handle is what an orchestrator passes to [`OrchestrationContext::call`],
//! what the client starts, and what the runtime builder registers: no string names at
//! call sites, and a wrong input type is a type error.
//!
//! [`OrchestrationContext::call`]: crate::OrchestrationContext::call

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::activity_context::ActivityContext;
use crate::orchestration_context::OrchestrationContext;

/// A boxed, sendable future, as the generated code returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An activity: a unit of work with side effects, run at least once, its result recorded.
///
/// Implemented by `#[activity]`; not meant to be implemented by hand.
pub trait Activity: Copy + Send + Sync + 'static {
    /// The input type.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The error type.
    type Error: Serialize + DeserializeOwned + Display + Send + 'static;
    /// The name the activity is registered and recorded under.
    const NAME: &'static str;
    /// Runs the activity's body.
    fn run(
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<Result<Self::Output, Self::Error>>;
    /// Its flow control, as the attribute sets it (`#[activity(concurrency = 3, rate =
    /// "10/1s", priority = 5)]`); none by default.
    /// [`RuntimeBuilder::activity_limits`](crate::RuntimeBuilder::activity_limits)
    /// overrides it.
    fn limits() -> durable_store::ActivityLimits {
        durable_store::ActivityLimits::new()
    }
}

/// An orchestrator: a replayable workflow.
///
/// Implemented by `#[orchestrator]`; not meant to be implemented by hand.
pub trait Orchestrator: Copy + Send + Sync + 'static {
    /// The input type.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output type.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The error type.
    type Error: Serialize + DeserializeOwned + Display + Send + 'static;
    /// The name the orchestrator is registered and recorded under.
    const NAME: &'static str;
    /// The version of the orchestrator's code registered under [`NAME`](Self::NAME). An
    /// instance keeps the version it started with; register old versions beside new ones
    /// while instances of them are in flight.
    const VERSION: u32 = 1;
    /// The source line of the orchestrator's `fn`; await sites are recorded relative to it.
    const LINE: u32;
    /// Its flow control, as the attribute sets it (`#[orchestrator(max_running = 10)]`);
    /// none by default.
    /// [`RuntimeBuilder::orchestrator_limits`](crate::RuntimeBuilder::orchestrator_limits)
    /// overrides it.
    fn limits() -> durable_store::OrchestratorLimits {
        durable_store::OrchestratorLimits::new()
    }
    /// The activities and orchestrators the body calls, as `#[orchestrator]` finds them:
    /// the handles passed to `ctx.call`, `ctx.call_with_retry`, `ctx.sub_orchestration`
    /// and `ctx.sub_orchestration_with_id` in the body itself (closures, async blocks and
    /// macro arguments included). Calls made in `#[deterministic]` helpers, or through a
    /// handle held in a variable, are not listed. [`RuntimeBuilder::start`] reports the
    /// ones that are not registered.
    ///
    /// [`RuntimeBuilder::start`]: crate::RuntimeBuilder::start
    fn callees() -> Vec<Callee> {
        Vec::new()
    }
    /// Runs the orchestrator's body.
    fn run(
        ctx: OrchestrationContext,
        input: Self::Input,
    ) -> BoxFuture<Result<Self::Output, Self::Error>>;
}

/// An activity, orchestrator or entity that an orchestrator's body calls
/// ([`Orchestrator::callees`]), by the name and version it is registered under.
///
/// (The variants are not called `Activity` and `Orchestrator`, which would make rustc
/// spell the traits of those names in full in its messages.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Callee {
    /// An activity, called with `ctx.call` or `ctx.call_with_retry`.
    CallActivity {
        /// Its [`Activity::NAME`].
        name: &'static str,
    },
    /// An orchestrator, started as a sub-orchestration with `ctx.sub_orchestration` or
    /// `ctx.sub_orchestration_with_id`.
    CallSubOrchestrator {
        /// Its [`Orchestrator::NAME`].
        name: &'static str,
        /// Its [`Orchestrator::VERSION`]: the version a new child starts with.
        version: u32,
    },
    /// An entity type, called or signalled with `ctx.call_entity`, `ctx.signal_entity` or
    /// `ctx.signal_entity_at`.
    CallEntity {
        /// Its [`Entity::NAME`](crate::entity::Entity::NAME).
        name: &'static str,
    },
}

impl Callee {
    /// The callee of activity `A`.
    pub fn activity<A: Activity>() -> Self {
        Callee::CallActivity { name: A::NAME }
    }

    /// The callee of entity type `E`.
    pub fn entity<E: crate::entity::Entity>() -> Self {
        Callee::CallEntity { name: E::NAME }
    }

    /// The callee of orchestrator `O`, at its version.
    pub fn orchestrator<O: Orchestrator>() -> Self {
        Callee::CallSubOrchestrator {
            name: O::NAME,
            version: O::VERSION,
        }
    }
}

impl std::fmt::Display for Callee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Callee::CallActivity { name } => write!(f, "activity `{name}`"),
            Callee::CallEntity { name } => write!(f, "entity `{name}`"),
            Callee::CallSubOrchestrator { name, version: 1 } => write!(f, "orchestrator `{name}`"),
            Callee::CallSubOrchestrator { name, version } => {
                write!(f, "version {version} of orchestrator `{name}`")
            }
        }
    }
}
