//! The errors users see: [`Error`] from the runtime and client, [`ActivityError`] inside an
//! orchestrator.

use std::time::Duration;

use durable_store::{Failure, FailureKind, StatusKind, StoreError};
use serde::de::DeserializeOwned;

use crate::entity::EntityId;
use crate::failure;
use crate::payload::{self, PayloadError, PayloadTooLarge};
use crate::runtime::UnregisteredCallee;

mod entity_call;

pub use entity_call::{EntityCallError, LockRuleViolation};

/// `a; b; c`.
fn unregistered_list(missing: &[UnregisteredCallee]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of the runtime and the client.
///
/// A store or payload error is shown as itself (its message, then its causes through
/// [`source`](std::error::Error::source)), so `anyhow`-style reports print the whole
/// chain; match [`Error::Store`] or [`Error::Payload`] to reach it typed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A payload did not encode or decode.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A payload was larger than the runtime's limit; nothing was written.
    #[error(transparent)]
    PayloadTooLarge(#[from] PayloadTooLarge),
    /// The orchestrator is not registered with this runtime.
    #[error(
        "orchestrator `{0}` is not registered with this runtime; add it with `RuntimeBuilder::orchestrator`"
    )]
    UnregisteredOrchestrator(String),
    /// Two different handles were registered under one name.
    #[error(
        "two different orchestrators or activities are registered as `{0}`; give one another name with `#[orchestrator(name = \"...\")]` or `#[activity(name = \"...\")]`"
    )]
    DuplicateName(String),
    /// Registered orchestrators call activities or orchestrators that are not registered,
    /// and the runtime was built with [`Unregistered::Fail`](crate::Unregistered::Fail):
    /// each call, by orchestrator and callee. Nothing was started.
    #[error(
        "the runtime did not start: {}; or build it with `on_unregistered(Unregistered::Wait)` to let the instances that reach these calls wait",
        unregistered_list(.0)
    )]
    UnregisteredCallees(Vec<UnregisteredCallee>),
    /// The instance id is already used by an instance of another orchestrator.
    #[error(
        "instance `{id}` already exists and runs orchestrator `{existing}`, not `{requested}`; choose another instance id"
    )]
    InstanceConflict {
        /// The instance id.
        id: String,
        /// The orchestrator the existing instance runs.
        existing: String,
        /// The orchestrator that was asked for.
        requested: String,
    },
    /// No instance has this id.
    #[error("no instance `{0}` exists in this store")]
    InstanceNotFound(String),
    /// The instance id cannot be used.
    #[error("invalid instance id {id:?}: {reason}")]
    InvalidInstanceId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: InvalidIdReason,
    },
    /// The instance finished with a failure.
    #[error("instance `{id}` failed: {}", failure.message)]
    Failed {
        /// The instance id.
        id: String,
        /// What went wrong.
        failure: Failure,
    },
    /// The instance stopped because its code no longer replays its history.
    #[error(
        "instance `{id}` is stalled: {}; deploy code that replays its history and restart the runtime to resume it",
        failure.message
    )]
    Stalled {
        /// The instance id.
        id: String,
        /// What went wrong.
        failure: Failure,
    },
    /// A client terminated the instance.
    #[error("instance `{id}` was terminated: {reason}")]
    Terminated {
        /// The instance id.
        id: String,
        /// Why, as the client said.
        reason: String,
    },
    /// The request makes no sense in the instance's current state.
    #[error("cannot {action} instance `{id}`: it is {status}; {hint}")]
    InvalidState {
        /// The instance id.
        id: String,
        /// What was asked.
        action: ClientRequest,
        /// The instance's status.
        status: StatusKind,
        /// What to do instead.
        hint: &'static str,
    },
    /// [`Client::purge_where`](crate::Client::purge_where) was given a status whose
    /// instances are never purged: only finished ones (completed, failed or terminated)
    /// are. Nothing was purged.
    #[error(
        "cannot purge instances that are {status}: only finished (completed, failed or terminated) instances are purged; terminate them first, or filter on finished statuses"
    )]
    PurgeUnfinished {
        /// The status that was asked for.
        status: StatusKind,
    },
    /// An argument of an admin request does not parse: an unknown status name, a page
    /// cursor not from a previous page ([`crate::admin::ListFilter`]).
    #[error("invalid {argument} `{value}`: {hint}")]
    InvalidArgument {
        /// Which argument: `status`, `after`, ...
        argument: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        hint: String,
    },
    /// Waiting for the instance took longer than the timeout.
    #[error("instance `{id}` did not finish within {timeout:?}")]
    Timeout {
        /// The instance id.
        id: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The runtime was shut down.
    #[error("the runtime is shut down")]
    ShutDown,
    /// A client opened over a store ([`Client::open`](crate::Client::open): the `durable`
    /// CLI, the dashboard, a script) gave up a send: the store kept failing to reserve the
    /// ids of what it sends for `waited` (a PostgreSQL server that is down or out of
    /// reach). Nothing was sent.
    #[error(
        "nothing was sent: the store kept failing for {}s: {source}; send again once it answers",
        waited.as_secs()
    )]
    StoreUnavailable {
        /// How long the client tried.
        waited: Duration,
        /// The store's last error, which names it (the server, or the directory).
        source: StoreError,
    },
    /// The id is an entity's (`@Name@key`), not an orchestration instance's: an entity
    /// has no orchestration status and never finishes. Every client call on an
    /// orchestration instance (status, wait, events, terminate, suspend, resume, purge,
    /// restart, position) returns it for an entity's id; use the entity calls
    /// (`signal_entity`, `entity_state`, `delete_entity`).
    #[error(
        "`{0}` is an entity, not an orchestration instance; read its state with `Client::entity_state`"
    )]
    IsAnEntity(String),
    /// The entity type is not registered with this runtime.
    #[error(
        "entity `{0}` is not registered with this runtime; add it with `RuntimeBuilder::entity::<{0}>()`"
    )]
    UnregisteredEntity(String),
    /// An entity id named an entity of another type than the operation's.
    #[error(
        "`{id}` is not an entity of type `{expected}`; name it by its key, or by an id `@{expected}@key`"
    )]
    WrongEntityType {
        /// The id given.
        id: EntityId,
        /// The operation's entity type.
        expected: &'static str,
    },
    /// The stored state of an entity does not decode as its type (the type changed
    /// incompatibly since it was written); nothing was changed.
    #[error(
        "the stored state of entity `{entity}` does not decode as its type: {error}; give the \
         fields added since `#[serde(default)]`, or deploy code whose type reads it"
    )]
    UndecodableEntityState {
        /// The entity.
        entity: EntityId,
        /// Why it does not decode.
        #[source]
        error: PayloadError,
    },
    /// A schedule of that id exists already (`Client::create_schedule`); update it
    /// through its handle, or delete it first.
    #[error("schedule `{0}` exists already; change it with `ScheduleHandle::update`")]
    ScheduleExists(String),
    /// There is no schedule of that id (it was never created, or was deleted).
    #[error("there is no schedule `{0}`; create it with `Client::create_schedule`")]
    ScheduleNotFound(String),
    /// A schedule's definition is refused: a cron expression that does not parse, an
    /// unknown time zone, an interval of zero, an id too long for its runs' ids.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
}

/// Why an instance id is refused ([`Error::InvalidInstanceId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidIdReason {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_INSTANCE_ID_LEN`](crate::MAX_INSTANCE_ID_LEN) bytes.
    TooLong,
    /// The id contains control characters.
    ControlCharacters,
    /// The id has the form of the ids generated for sub-orchestrations started without
    /// one (see [`GENERATED_ID_PREFIX`](crate::GENERATED_ID_PREFIX)).
    Reserved,
    /// The id has the form `@Name@key` of an entity's id
    /// ([`EntityId`](crate::entity::EntityId)): an orchestration under it would take the
    /// entity's place, and messages to the entity would be refused forever.
    EntityForm,
}

impl std::fmt::Display for InvalidIdReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidIdReason::Empty => "it is empty",
            InvalidIdReason::TooLong => "it is longer than 256 bytes",
            InvalidIdReason::ControlCharacters => "it contains control characters",
            InvalidIdReason::EntityForm => {
                "it has the form `@Name@key` of an entity's id, which is reserved for entities; choose an id that does not start with `@`"
            }
            InvalidIdReason::Reserved => {
                "it has the form `~{parent}~{hex}.{generation}.{step}`, which is reserved for the ids generated for sub-orchestrations started without one; choose an id that does not"
            }
        })
    }
}

/// A request of the [`Client`](crate::Client) to an instance, as
/// [`Error::InvalidState`] names the one it refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientRequest {
    /// [`Client::raise_event`](crate::Client::raise_event).
    RaiseEvent,
    /// [`Client::terminate`](crate::Client::terminate).
    Terminate,
    /// [`Client::suspend`](crate::Client::suspend).
    Suspend,
    /// [`Client::resume`](crate::Client::resume).
    Resume,
    /// [`Client::purge`](crate::Client::purge).
    Purge,
    /// [`Client::restart`](crate::Client::restart).
    Restart,
}

impl std::fmt::Display for ClientRequest {
    /// The request as a verb whose object is the instance: `terminate`, `raise an event
    /// to`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientRequest::RaiseEvent => "raise an event to",
            ClientRequest::Terminate => "terminate",
            ClientRequest::Suspend => "suspend",
            ClientRequest::Resume => "resume",
            ClientRequest::Purge => "purge",
            ClientRequest::Restart => "restart",
        })
    }
}

impl Error {
    /// For [`Error::Failed`] where the orchestrator returned `Err`: that error value,
    /// decoded as `E` (the orchestrator's error type). `None` otherwise.
    pub fn orchestrator_error<E: DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::Failed { failure, .. } => returned_error(failure),
            _ => None,
        }
    }
}

/// The error value user code returned, if the failure holds one that decodes as `E`.
fn returned_error<E: DeserializeOwned>(failure: &Failure) -> Option<E> {
    match &failure.kind {
        FailureKind::Returned { payload } => payload::decode(payload).ok(),
        _ => None,
    }
}

/// An activity call that failed, as the orchestrator sees it: it returned `Err`, panicked,
/// or could not run. Match on it to compensate and continue, or let `?` fail the
/// orchestration (it converts into `String`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityError {
    activity: String,
    attempt: u32,
    failure: Failure,
}

impl ActivityError {
    pub(crate) fn new(activity: String, attempt: u32, failure: Failure) -> Self {
        Self {
            activity,
            attempt,
            failure,
        }
    }

    pub(crate) fn timed_out(activity: &str, attempt: u32, timeout: Timeout) -> Self {
        Self::new(
            activity.to_string(),
            attempt,
            failure::timed_out(timeout.after),
        )
    }

    /// Whether the attempt did not finish within its durable timeout.
    pub fn is_timeout(&self) -> bool {
        self.failure.kind == FailureKind::TimedOut
    }

    /// The activity's registered name.
    pub fn activity(&self) -> &str {
        &self.activity
    }

    /// The attempt that failed (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The error's message: the `Display` of the returned error, or the panic message.
    pub fn message(&self) -> &str {
        &self.failure.message
    }

    /// Whether another attempt could succeed: false when the same call would fail the same
    /// way (the activity is not registered, its output does not encode, or its output is
    /// over the payload limit). Retry policies skip these. (An input that does not decode
    /// as the activity's type stalls the instance instead, its task kept.)
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.failure.kind,
            FailureKind::Unregistered { .. }
                | FailureKind::Decode { .. }
                | FailureKind::TooLarge { .. }
        )
    }

    /// Whether the activity panicked.
    pub fn is_panic(&self) -> bool {
        self.failure.kind == FailureKind::Panicked
    }

    /// The error value the activity returned, decoded as `E` (its error type). `None` when
    /// it did not return one (it panicked or could not run) or it is not an `E`.
    pub fn error<E: DeserializeOwned>(&self) -> Option<E> {
        returned_error(&self.failure)
    }

    /// The stored failure.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl std::fmt::Display for ActivityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.is_panic() {
            "panicked"
        } else {
            "failed"
        };
        write!(
            f,
            "activity `{}` {what} on attempt {}: {}",
            self.activity, self.attempt, self.failure.message
        )
    }
}

impl std::error::Error for ActivityError {}

impl From<ActivityError> for String {
    fn from(e: ActivityError) -> String {
        e.to_string()
    }
}

/// A sub-orchestration that failed, as its parent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubOrchestrationError {
    orchestrator: String,
    instance: String,
    failure: Failure,
    violation: Option<LockRuleViolation>,
}

impl SubOrchestrationError {
    pub(crate) fn new(orchestrator: String, instance: String, failure: Failure) -> Self {
        Self {
            orchestrator,
            instance,
            failure,
            violation: None,
        }
    }

    /// A sub-orchestration refused by a rule of critical sections (started inside one):
    /// not started, no instance made.
    pub(crate) fn refused(orchestrator: String, violation: LockRuleViolation) -> Self {
        Self {
            orchestrator,
            instance: String::new(),
            failure: failure::rejected(violation.to_string()),
            violation: Some(violation),
        }
    }

    /// The rule of critical sections the start broke (it was started inside a section),
    /// if it was refused for one; it was not started then.
    pub fn lock_rule_violation(&self) -> Option<&LockRuleViolation> {
        self.violation.as_ref()
    }

    /// The child orchestrator's registered name.
    pub fn orchestrator(&self) -> &str {
        &self.orchestrator
    }

    /// The child's instance id (empty if it was refused by a rule of critical sections).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// The child's failure message.
    pub fn message(&self) -> &str {
        &self.failure.message
    }

    /// The error value the child returned, decoded as `E` (its error type).
    pub fn error<E: DeserializeOwned>(&self) -> Option<E> {
        returned_error(&self.failure)
    }

    /// The stored failure.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl std::fmt::Display for SubOrchestrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(violation) = &self.violation {
            return write!(
                f,
                "sub-orchestration `{}` refused: {violation}",
                self.orchestrator
            );
        }
        write!(
            f,
            "sub-orchestration `{}` (instance `{}`) failed: {}",
            self.orchestrator, self.instance, self.failure.message
        )
    }
}

impl std::error::Error for SubOrchestrationError {}

impl From<SubOrchestrationError> for String {
    fn from(e: SubOrchestrationError) -> String {
        e.to_string()
    }
}

/// A durable operation that did not finish before its durable timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    /// The timeout that elapsed.
    pub after: Duration,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl std::error::Error for Timeout {}

impl From<Timeout> for String {
    fn from(e: Timeout) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A store or payload error is shown as itself, its causes kept: a report that walks
    /// the `source()` chain prints each cause once.
    #[test]
    fn wrapped_errors_keep_their_message_and_causes() {
        let payload = payload::decode::<bool>(b"\"yes\"").unwrap_err();
        let error = Error::from(payload.clone());
        assert_eq!(error.to_string(), payload.to_string());
        assert!(error.source().is_none() && payload.source().is_none());
        let store = StoreError::Decode {
            what: "instance `a`".into(),
            detail: "unexpected end".into(),
            source: Some(std::sync::Arc::new(std::io::Error::other("unexpected end"))),
        };
        let error = Error::from(store.clone());
        assert_eq!(error.to_string(), store.to_string());
        assert_eq!(
            error.source().map(ToString::to_string),
            Some("unexpected end".to_owned()),
            "the store error's cause is reachable through the wrapping error"
        );
        assert!(matches!(error, Error::Store(StoreError::Decode { .. })));
    }
}
