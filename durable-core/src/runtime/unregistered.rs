//! What a runtime does about code it does not have: the policy ([`Unregistered`]) and
//! the calls a registered orchestrator makes to code that is not registered
//! ([`UnregisteredCallee`]).

use crate::handle::Callee;

/// What the runtime does with work for code it does not have: an orchestrator, an
/// orchestrator version or an activity that is not registered with it, as after a deploy
/// that removed one. Set with
/// [`RuntimeBuilder::on_unregistered`](super::RuntimeBuilder::on_unregistered). Either way the other
/// instances keep running.
///
/// On a store other processes share ([`Store::is_shared`](crate::Store::is_shared):
/// PostgreSQL), an activity task or a sub-orchestration this worker lacks is neither
/// waited for nor failed here: it is scheduled and left for a worker that has the code, as
/// in a fleet in the middle of a rolling deploy; a worker claims only instances of the
/// orchestrator versions it registered, so an instance of a version it lacks waits for a
/// worker that has it rather than stalling. (On a store it holds alone there is no other
/// worker to leave it for: such an instance is stalled or failed as this policy says.)
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

/// A call that a registered orchestrator's body makes to an activity, orchestrator or
/// entity this runtime does not have ([`Orchestrator::callees`](crate::handle::Orchestrator::callees)).
/// [`RuntimeBuilder::start`](super::RuntimeBuilder::start) reports each: under
/// [`Unregistered::Wait`] as a warning (and
/// [`Runtime::unregistered_callees`](super::Runtime::unregistered_callees)), under
/// [`Unregistered::Fail`] as
/// [`Error::UnregisteredCallees`](crate::error::Error::UnregisteredCallees).
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
            Callee::CallEntity { .. } => "entity",
        };
        write!(
            f,
            "orchestrator `{}` calls {}, which is not registered; add it with `RuntimeBuilder::{method}`",
            self.orchestrator, self.callee
        )
    }
}
